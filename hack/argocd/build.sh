#!/usr/bin/env bash
# Builds argocd-health from this folder's Go module (Argo CD's health check code (github.com/argoproj/argo-cd/v3)) into a cache outside the repo,
# ~/.cache/sluice/argocd/<hash>/, like hack/cluster/build.sh: nothing but Go modules is downloaded,
# the folder's name is a hash of everything that decides the binary, one build runs at a time.
#
# Prints the binary's path on its last line.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
stamp="$(cat "$here/go.mod" "$here/go.sum" "$here"/*.go "$here/build.sh" | sha256sum | cut -c1-12)"
cache="${SLUICE_CACHE:-$HOME/.cache/sluice}/argocd"
out="$cache/$stamp/argocd-health"
if [[ -x "$out" ]]; then echo "$out"; exit 0; fi

mkdir -p "$cache"
exec 9>"$cache/build.lock"
flock 9
if [[ -x "$out" ]]; then echo "$out"; exit 0; fi
export GOTOOLCHAIN=local GOFLAGS=-mod=readonly
start=$SECONDS
printf '[build] %s\n' "argocd-health" >&2
mkdir -p "$cache/$stamp"
(cd "$here" && nice -n "${SLUICE_BUILD_NICE:-15}" go build -o "$out.tmp" -trimpath -ldflags "-s -w" .)
mv "$out.tmp" "$out"
printf '[build] %s built in %ss\n' "argocd-health" "$((SECONDS - start))" >&2
# Builds of earlier pins are of no further use.
find "$cache" -mindepth 1 -maxdepth 1 -type d ! -path "$cache/$stamp" -exec rm -rf {} +
echo "$out"

#!/usr/bin/env bash
# Builds a small Go helper from its own folder's module (hack/kstatus, hack/argocd) into a cache
# outside the repo, ~/.cache/sluice/<name>/<hash>/, like hack/cluster/build.sh: nothing but Go
# modules is downloaded, the folder's name is a hash of everything that decides the binary, and
# one build runs at a time.
#   hack/gohelper.sh <folder> <cache name> <binary name>
# Prints the binary's path on its last line.
set -euo pipefail
folder="$1" name="$2" binary="$3"
stamp="$(cat "$folder/go.mod" "$folder/go.sum" "$folder"/*.go "$folder/build.sh" "${BASH_SOURCE[0]}" \
  | sha256sum | cut -c1-12)"
cache="${SLUICE_CACHE:-$HOME/.cache/sluice}/$name"
out="$cache/$stamp/$binary"
if [[ -x "$out" ]]; then echo "$out"; exit 0; fi

mkdir -p "$cache"
exec 9>"$cache/build.lock"
flock 9
if [[ -x "$out" ]]; then echo "$out"; exit 0; fi
export GOTOOLCHAIN=local GOFLAGS=-mod=readonly
start=$SECONDS
printf '[build] %s\n' "$binary" >&2
mkdir -p "$cache/$stamp"
(cd "$folder" && nice -n "${SLUICE_BUILD_NICE:-15}" go build -o "$out.tmp" -trimpath -ldflags "-s -w" .)
mv "$out.tmp" "$out"
printf '[build] %s built in %ss\n' "$binary" "$((SECONDS - start))" >&2
# Builds of earlier pins are of no further use.
find "$cache" -mindepth 1 -maxdepth 1 -type d ! -path "$cache/$stamp" -exec rm -rf {} +
echo "$out"

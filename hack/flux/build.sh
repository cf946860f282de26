#!/usr/bin/env bash
# Builds Flux's source-controller and kustomize-controller from the Go module proxy into a cache
# outside the repo, as hack/cluster/build.sh does for the control plane. Each is pinned by a small
# wrapper module (source/, kustomize/): the controller's own go.mod, less its `./api` replace
# (the module zip has no api/ folder; the api module comes from the proxy at the same version).
# source/ also pins github.com/fluxcd/pkg/artifact to v0.18.0: v0.18.3, which source-controller
# v1.9.6 names, is not served by the proxy here, and v0.18.0 builds and serves artifacts alike.
#
# Prints the binary folder on its last line.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

stamp="$(cat "$here/versions.env" "$here"/*/go.mod "$here"/*/go.sum "$here/build.sh" | sha256sum | cut -c1-12)"
cache="${SLUICE_CACHE:-$HOME/.cache/sluice}"
bin="$cache/flux-bin/${FLUX_SOURCE_VERSION}-${FLUX_KUSTOMIZE_VERSION}-${stamp}"
all=(source-controller kustomize-controller)

complete() { for b in "${all[@]}"; do [[ -x "$bin/$b" ]] || return 1; done; }
if complete; then echo "$bin"; exit 0; fi

# One build at a time: callers that arrive meanwhile wait, then find the binaries built.
mkdir -p "$cache"
exec 9>"$cache/flux-build.lock"
flock 9
if complete; then echo "$bin"; exit 0; fi

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly
mkdir -p "$bin"
log() { printf '[flux-build] %s\n' "$*" >&2; }

build() { # build <module dir> <output> <package>
  local dir=$1 out=$2 pkg=$3
  [[ -x "$bin/$out" ]] && return 0
  log "$out ($pkg)"
  local start=$SECONDS
  (cd "$here/$dir" && go build -o "$bin/$out.tmp" -trimpath -ldflags "-s -w" "$pkg")
  mv "$bin/$out.tmp" "$bin/$out"
  log "$out built in $((SECONDS - start))s"
}

build source source-controller github.com/fluxcd/source-controller
build kustomize kustomize-controller github.com/fluxcd/kustomize-controller
# Builds of other pins are of no further use.
find "$cache/flux-bin" -mindepth 1 -maxdepth 1 -type d ! -path "$bin" -exec rm -rf {} +
echo "$bin"

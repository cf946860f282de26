#!/usr/bin/env bash
# Builds the local control plane from the Go module proxy into a cache outside the repo:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kubelet (k8s.io/kubernetes),
# etcd, kwok, kwokctl and helm. Nothing is downloaded but Go modules. A cache that matches
# the pinned versions and wrapper modules is reused as it is.
#
# Prints the binary folder on its last line.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

# The folder name is a hash of everything that decides the binaries, so a pin change rebuilds.
stamp="$(cat "$here/versions.env" "$here"/*/go.mod "$here"/*/go.sum "$here/build.sh" | sha256sum | cut -c1-12)"
cache="${SLUICE_CACHE:-$HOME/.cache/sluice}"
bin="$cache/bin/${KUBE_VERSION}-${stamp}"
all=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet etcd kwok kwokctl helm)

complete() { for b in "${all[@]}"; do [[ -x "$bin/$b" ]] || return 1; done; }
if complete; then echo "$bin"; exit 0; fi

# One build at a time: callers that arrive meanwhile wait, then find the binaries built.
mkdir -p "$cache"
exec 9>"$cache/build.lock"
flock 9
if complete; then echo "$bin"; exit 0; fi

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly
mkdir -p "$bin"
log() { printf '[build] %s\n' "$*" >&2; }

build() { # build <module dir> <output> <package> [ldflags]
  local dir=$1 out=$2 pkg=$3 ldflags=${4:-}
  [[ -x "$bin/$out" ]] && return 0
  log "$out ($pkg)"
  local start=$SECONDS
  (cd "$here/$dir" && go build -o "$bin/$out.tmp" -trimpath -tags selinux,notest -ldflags "-s -w $ldflags" "$pkg")
  mv "$bin/$out.tmp" "$bin/$out"
  log "$out built in $((SECONDS - start))s"
}

kv=${KUBE_VERSION#v}; major=${kv%%.*}; minor=${kv#*.}; minor=${minor%%.*}
kube_ld=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ld+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
  kube_ld+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
kwok_ld="-X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$kv"
helm_ld="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"

build etcd etcd go.etcd.io/etcd/server/v3 "-X go.etcd.io/etcd/api/v3/version.GitSHA=${ETCD_VERSION}"
build kwok kwok sigs.k8s.io/kwok/cmd/kwok "$kwok_ld"
build kwok kwokctl sigs.k8s.io/kwok/cmd/kwokctl "$kwok_ld"
build kube kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$kube_ld"
build kube kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$kube_ld"
build kube kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler "$kube_ld"
build kube kubectl k8s.io/kubernetes/cmd/kubectl "$kube_ld"
build kube kubelet k8s.io/kubernetes/cmd/kubelet "$kube_ld"  # the real node (hack/node/)
build helm helm helm.sh/helm/v3/cmd/helm "$helm_ld"
# Builds of other pins are of no further use.
find "$cache/bin" -mindepth 1 -maxdepth 1 -type d ! -path "$bin" -exec rm -rf {} +
echo "$bin"

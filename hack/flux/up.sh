#!/usr/bin/env bash
# Runs Flux next to the local cluster: installs the CRDs of source-controller and
# kustomize-controller from their own modules (config/crd/bases), then starts, as host processes
# on 127.0.0.1 with the admin kubeconfig, a Git server (git http-backend, hack/flux/git_server.py)
# over the bare repositories in .local/flux/git/, source-controller (artifacts in
# .local/flux/storage/, served on loopback) and kustomize-controller. No leader election, no
# impersonation (no default service account), no flux-system namespace or RBAC: they are the
# admin here. Idempotent: what runs is left running. PIDs and ports go to .local/flux/.
#
# Prints the state folder's env file on its last line (GIT_URL, ports).
set -euo pipefail
# shellcheck source=hack/detach.sh
source "$(dirname "${BASH_SOURCE[0]}")/../detach.sh"  # daemons started here keep no inherited fd
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
state="$root/.local/flux"
kubeconfig="${KUBECONFIG:-$root/.local/kubeconfig}"
python="${PYTHON:-$root/.venv/bin/python}"
mkdir -p "$state/git" "$state/storage"
log() { printf '[flux-up] %s\n' "$*" >&2; }
start=$SECONDS

flux_bin="$("$here/build.sh" | tail -n 1)"
kube_bin="$("$root/hack/cluster/build.sh" | tail -n 1)"
export PATH="$flux_bin:$kube_bin:$PATH" KUBECONFIG="$kubeconfig"

# The CRDs, from the same modules the binaries were built from.
for mod in source:github.com/fluxcd/source-controller kustomize:github.com/fluxcd/kustomize-controller; do
  dir="$(cd "$here/${mod%%:*}" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly go list -m -f '{{.Dir}}' "${mod#*:}")"
  kubectl apply --server-side --force-conflicts -f "$dir/config/crd/bases/" >/dev/null
  # kubectl wait fails at once ("conditions accessor error") on a CRD the API server has not given
  # conditions yet: a CRD created a moment ago. Ask again.
  for attempt in $(seq 1 30); do
    kubectl wait --for condition=established --timeout=60s -f "$dir/config/crd/bases/" >/dev/null 2>&1 && break
    ((attempt < 30)) || { kubectl wait --for condition=established --timeout=5s -f "$dir/config/crd/bases/"; exit 1; }
    sleep 1
  done
done

running() { [[ -f "$state/$1.pid" ]] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null; }
free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Ports are chosen once and kept, so a restarted controller serves the same artifact URLs.
if [[ ! -f "$state/flux.env" ]]; then
  {
    echo "GIT_PORT=$(free_port)"
    echo "STORAGE_PORT=$(free_port)"
    for c in SOURCE KUSTOMIZE; do echo "${c}_METRICS_PORT=$(free_port)"; echo "${c}_HEALTH_PORT=$(free_port)"; done
  } >"$state/flux.env"
fi
# shellcheck source=/dev/null
source "$state/flux.env"
grep -q '^GIT_URL=' "$state/flux.env" || echo "GIT_URL=http://127.0.0.1:$GIT_PORT" >>"$state/flux.env"

launch() { # launch <name> <command...>
  local name=$1; shift
  running "$name" && return 0
  nohup "$@" >>"$state/$name.log" 2>&1 &
  echo $! >"$state/$name.pid"
  log "started $name (pid $!)"
}

launch git-server "$python" "$here/git_server.py" --root "$state/git" --port "$GIT_PORT"
launch source-controller source-controller \
  --enable-leader-election=false \
  --metrics-addr="127.0.0.1:$SOURCE_METRICS_PORT" --health-addr="127.0.0.1:$SOURCE_HEALTH_PORT" \
  --storage-path="$state/storage" \
  --storage-addr="127.0.0.1:$STORAGE_PORT" --storage-adv-addr="127.0.0.1:$STORAGE_PORT" \
  --log-level=info
launch kustomize-controller kustomize-controller \
  --enable-leader-election=false \
  --metrics-addr="127.0.0.1:$KUSTOMIZE_METRICS_PORT" --health-addr="127.0.0.1:$KUSTOMIZE_HEALTH_PORT" \
  --no-remote-bases=true --log-level=info

ready() { curl -fs "http://127.0.0.1:$1/readyz" >/dev/null 2>&1; }
for _ in $(seq 1 120); do
  ready "$SOURCE_HEALTH_PORT" && ready "$KUSTOMIZE_HEALTH_PORT" && break
  sleep 0.5
done
for c in source-controller:$SOURCE_HEALTH_PORT kustomize-controller:$KUSTOMIZE_HEALTH_PORT; do
  ready "${c#*:}" || { tail -n 30 "$state/${c%%:*}.log" >&2; log "${c%%:*} is not ready"; exit 1; }
done
log "ready in $((SECONDS - start))s: Git at http://127.0.0.1:$GIT_PORT/<repo>, logs in $state/"
echo "$state/flux.env"

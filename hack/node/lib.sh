# Shared by hack/node/*.sh (sourced): names, addresses and places of the real node.
# shellcheck shell=bash disable=SC2034,SC2154  # sourced: its names are used by the scripts, $here is theirs
root="$(cd "$here/../.." && pwd)"
cache="${SLUICE_CACHE:-$HOME/.cache/sluice}"
kubeconfig="$root/.local/kubeconfig"
# What one run of the node writes (configs, sockets, PIDs, logs, the kubelet's root); down.sh
# removes it. The node's containerd keeps its images in the cache, to start warm.
state="$root/.local/node"
containerd_root="$cache/node/containerd"

node_name=sluice-real-0
# The node's network namespace holds the bridge sluice0: the node's address, and the gateway of
# the pods' 10.250.1.0/24. Nothing outside the namespace has an address in it.
netns="$state/netns"
node_ip=10.250.1.1
pod_subnet=10.250.1.0/24

app_version="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$root/charts/sluice/Chart.yaml")"
image="localhost/sluice:$app_version"
pause_image=registry.k8s.io/pause:3.10.2
# What hook Jobs in the tests run: Debian with psql and pg_dump (hack/node/image.sh).
tools_image=localhost/sluice-tools:dev

prom_port="${PROMETHEUS_PORT:-9090}"
# A PostgreSQL the e2e fixtures start on the host's 127.0.0.1; pods reach it at $node_ip:$pg_port.
pg_port="${POSTGRES_PORT:-55432}"
# The API server's port, from the kubeconfig make cluster-up wrote.
api_port() { sed -n 's|^ *server: https://127.0.0.1:\([0-9]*\).*|\1|p' "$kubeconfig" | head -n 1; }

running() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

#!/usr/bin/env bash
# The same e2e suite on a kind cluster, for machines with Docker (not this project's CI, which
# has none). Pods really run there, so the Releases use a tiny real image; the simulator and
# Prometheus run on this machine against the kind cluster's API, as they do locally.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source hack/cluster/versions.env
command -v kind >/dev/null || { echo "kind is needed (and Docker)"; exit 1; }
kubeconfig="$root/.local/kind-kubeconfig"
mkdir -p .local
kind get clusters | grep -qx sluice-e2e || kind create cluster --name sluice-e2e --kubeconfig "$kubeconfig" --wait 120s
export KUBECONFIG="$kubeconfig" PATH="$(hack/cluster/build.sh | tail -n 1):$PATH"
make venv
gw="$(go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
kubectl apply --server-side -f "$gw/config/crd/standard/"
.venv/bin/python hack/traffic/simulator.py --kubeconfig "$kubeconfig" --port "${SIMULATOR_PORT:-9102}" &
sim=$!
mkdir -p .local/kind-prometheus
printf 'global: {scrape_interval: 2s}\nscrape_configs:\n  - job_name: traffic-simulator\n    static_configs: [{targets: ["127.0.0.1:%s"]}]\n' \
  "${SIMULATOR_PORT:-9102}" > .local/kind-prometheus.yml
prometheus --config.file=.local/kind-prometheus.yml --storage.tsdb.path=.local/kind-prometheus \
  --web.listen-address="127.0.0.1:${PROMETHEUS_PORT:-9090}" >/dev/null 2>&1 &
prom=$!
trap 'kill $sim $prom 2>/dev/null || true' EXIT
export E2E_IMAGE="${E2E_IMAGE:-registry.k8s.io/pause:3.10}"
.venv/bin/pytest -q tests/e2e "$@"

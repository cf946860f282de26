#!/usr/bin/env bash
# Starts the local cluster (kwokctl --runtime binary on binaries built by build.sh), the Gateway
# API CRDs, the traffic simulator and Prometheus, all on 127.0.0.1. Idempotent: what already
# runs is left running. Writes the kubeconfig to .local/kubeconfig.
set -euo pipefail
# shellcheck source=hack/detach.sh
source "$(dirname "${BASH_SOURCE[0]}")/../detach.sh"  # daemons started here keep no inherited fd
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
source "$here/versions.env"
"$root/hack/deps.sh" cluster
local_dir="$root/.local"
mkdir -p "$local_dir"
export KWOK_WORKDIR="$local_dir/kwok"
kubeconfig="$local_dir/kubeconfig"
cluster=sluice
prom_port="${PROMETHEUS_PORT:-9090}"
sim_port="${SIMULATOR_PORT:-9102}"
python="${PYTHON:-$root/.venv/bin/python}"
start=$SECONDS
log() { printf '[cluster-up] %s\n' "$*"; }

bin="$("$here/build.sh" | tail -n 1)"
export PATH="$bin:$PATH"

healthy() { kubectl --kubeconfig "$kubeconfig" get --raw /readyz >/dev/null 2>&1; }

if ! healthy; then
  kwokctl delete cluster --name "$cluster" >/dev/null 2>&1 || true
  # kwok's default node and pod stages, read from the pinned module, plus Sluice's own.
  kwok_dir="$(cd "$here/kwok" && GOFLAGS=-mod=readonly go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
  conf="$local_dir/kwok.yaml"
  {
    cat <<YAML
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  runtime: binary
  bindAddress: 127.0.0.1
  disableQPSLimits: true
  kubeApiserverBinary: $bin/kube-apiserver
  kubeControllerManagerBinary: $bin/kube-controller-manager
  kubeSchedulerBinary: $bin/kube-scheduler
  etcdBinary: $bin/etcd
  kwokControllerBinary: $bin/kwok
  kubectlBinary: $bin/kubectl
  # Pods on the real node (hack/node/) reach the API server at the node's address.
  kubeApiserverCertSANs: [10.250.1.1]
# kwok plays only its own nodes, never the real node's.
componentsPatches:
- name: kwok-controller
  extraArgs:
  - {key: manage-all-nodes, value: "false"}
  - {key: manage-nodes-with-annotation-selector, value: "kwok.x-k8s.io/node=fake"}
YAML
    for f in "$kwok_dir/kustomize/stage/node/fast/node-initialize.yaml" \
             "$kwok_dir/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" \
             "$kwok_dir/kustomize/stage/pod/fast/pod-ready.yaml" \
             "$kwok_dir/kustomize/stage/pod/fast/pod-complete.yaml" \
             "$kwok_dir/kustomize/stage/pod/fast/pod-delete.yaml" \
             "$here/stages.yaml"; do
      echo "---"; cat "$f"
    done
  } > "$conf"
  # kwok's pod-ready must leave the never-ready pods to Sluice's stage.
  python3 - "$conf" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
marker = "  name: pod-ready\n"
head, sep, tail = text.partition(marker)
selector = "    matchExpressions:\n"
before, sep2, after = tail.partition(selector)
extra = ("    - key: '.metadata.annotations[\"sim.sluice.dev/never-ready\"]'\n"
         "      operator: 'NotIn'\n      values: ['true']\n")
open(path, "w").write(head + sep + before + sep2 + extra + after)
PY
  log "creating cluster '$cluster' (kube $KUBE_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION)"
  kwokctl create cluster --name "$cluster" --config "$conf" --kubeconfig "$kubeconfig" --wait 2m >"$local_dir/kwokctl.log" 2>&1 \
    || { cat "$local_dir/kwokctl.log"; exit 1; }
  kubectl --kubeconfig "$kubeconfig" config use-context "kwok-$cluster" >/dev/null
  kwokctl --name "$cluster" scale node --replicas 2 >/dev/null 2>&1
fi

# Gateway API CRDs, from the Go module proxy (the module ships them).
if ! kubectl --kubeconfig "$kubeconfig" get crd httproutes.gateway.networking.k8s.io >/dev/null 2>&1; then
  gw_dir="$(GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" | "$python" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  kubectl --kubeconfig "$kubeconfig" apply --server-side -f "$gw_dir/config/crd/standard/" >/dev/null
  log "installed Gateway API $GATEWAY_API_VERSION CRDs"
fi

running() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

if ! running "$local_dir/simulator.pid"; then
  nohup "$python" "$root/hack/traffic/simulator.py" --kubeconfig "$kubeconfig" --port "$sim_port" \
    >"$local_dir/simulator.log" 2>&1 &
  echo $! >"$local_dir/simulator.pid"
fi

if ! running "$local_dir/prometheus.pid"; then
  mkdir -p "$local_dir/prometheus"
  cat >"$local_dir/prometheus.yml" <<YAML
global: {scrape_interval: 2s, evaluation_interval: 2s}
scrape_configs:
  - job_name: traffic-simulator
    static_configs: [{targets: ["127.0.0.1:$sim_port"]}]
YAML
  nohup prometheus --config.file="$local_dir/prometheus.yml" --storage.tsdb.path="$local_dir/prometheus" \
    --web.listen-address="127.0.0.1:$prom_port" --web.enable-lifecycle --storage.tsdb.retention.time=6h \
    >"$local_dir/prometheus.log" 2>&1 &
  echo $! >"$local_dir/prometheus.pid"
fi
for _ in $(seq 1 60); do
  curl -fs "http://127.0.0.1:$prom_port/-/ready" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -fs "http://127.0.0.1:$prom_port/-/ready" >/dev/null || { cat "$local_dir/prometheus.log"; exit 1; }

log "ready in $((SECONDS - start))s"
cat <<TXT
  export KUBECONFIG=$kubeconfig
  kubectl get nodes                      # kwok plays the nodes; pods become Ready without running
  Prometheus:  http://127.0.0.1:$prom_port   traffic simulator: http://127.0.0.1:$sim_port/metrics
  make cluster-down                      # stops all of it
TXT

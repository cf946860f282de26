"""`make demo`: the operator on the local cluster, a healthy canary to 1.1.0, then a bad 1.2.0
rolled back by itself, each change printed as it happens. Leaves everything running for you
to explore; `make cluster-down` stops it all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LOCAL = ROOT / ".local"
NAMESPACE = "demo"
PROMETHEUS = f"http://127.0.0.1:{os.environ.get('PROMETHEUS_PORT', '9090')}"

POLICY = f"""
apiVersion: sluice.dev/v1alpha1
kind: RolloutPolicy
metadata: {{name: demo-canary}}
spec:
  strategy:
    canary:
      steps:
        - setWeight: 20
        - analysis: {{}}
        - setWeight: 50
        - pause: {{duration: 10s}}
        - analysis: {{}}
        - setWeight: 100
  analysis:
    interval: 5s
    count: 2
    prometheus: {{address: "{PROMETHEUS}"}}
    metrics:
      - name: error-rate
        query: |
          (sum(rate(http_requests_total{{namespace="{{{{namespace}}}}",app="{{{{release}}}}",version="{{{{version}}}}",code=~"5.."}}[15s])) or vector(0))
          / sum(rate(http_requests_total{{namespace="{{{{namespace}}}}",app="{{{{release}}}}",version="{{{{version}}}}"}}[15s]))
        successCondition: "result < 0.05"
        minSamples:
          query: sum(increase(http_requests_total{{namespace="{{{{namespace}}}}",app="{{{{release}}}}",version="{{{{version}}}}"}}[15s]))
          atLeast: 20
  progressDeadline: 2m
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: checkout}}
spec:
  parentRefs: [{{name: shop-gateway}}]
  rules:
    - backendRefs: [{{name: checkout, port: 80}}]
"""


def release(version: str, error_rate: float) -> str:
    return f"""
apiVersion: sluice.dev/v1alpha1
kind: Release
metadata: {{name: checkout}}
spec:
  version: "{version}"
  replicas: 4
  policyRef: {{name: demo-canary}}
  trafficRouting: {{gatewayAPI: {{httpRoute: checkout}}}}
  template:
    metadata:
      annotations: {{sim.sluice.dev/error-rate: "{error_rate}"}}
    spec:
      containers: [{{name: checkout, image: "example.com/checkout:{version}"}}]
"""


def kubectl(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def start_operator() -> None:
    pidfile = LOCAL / "operator.pid"
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text()), 0)
            print(f"operator already running (pid {pidfile.read_text().strip()})")
            return
        except (ProcessLookupError, ValueError):
            pass
    log = (LOCAL / "operator.log").open("ab")
    process = subprocess.Popen([sys.executable, "-m", "sluice.cli.main", "operator"], stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    pidfile.write_text(str(process.pid))
    print(f"operator started (pid {process.pid}, log .local/operator.log)")


def status() -> dict[str, Any]:
    body = json.loads(kubectl("get", "release", "checkout", "-n", NAMESPACE, "-o", "json"))
    return body.get("status") or {}


def follow(until: set[str], generation_of: str, limit: float = 240) -> dict[str, Any]:
    """Print each new status message until the phase is one of `until` for this version."""
    last = ""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        now = status()
        line = f"  [{now.get('phase', '-'):<11}] weight {now.get('canaryWeight', 0):>3}%  {now.get('message', '')}"
        if line != last:
            print(line, flush=True)
            last = line
        version_done = now.get("stableVersion") == generation_of or now.get("candidateVersion") == generation_of
        if now.get("phase") in until and version_done:
            return now
        time.sleep(1)
    sys.exit(f"the demo did not finish within {limit:.0f}s; see .local/operator.log")


def main() -> None:
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    start_operator()
    subprocess.run(["kubectl", "create", "namespace", NAMESPACE], capture_output=True)
    kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=POLICY)

    print("\n1. checkout 1.0.0, the first version: nothing to compare with, it becomes stable directly")
    kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=release("1.0.0", 0.0))
    follow({"Succeeded"}, "1.0.0")

    print("\n2. checkout 1.1.0, healthy: 20% -> analysis -> 50% -> 10s -> analysis -> 100%")
    kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=release("1.1.0", 0.0))
    follow({"Succeeded"}, "1.1.0")

    print("\n3. checkout 1.2.0, a bad build answering 30% of requests with 5xx: rolled back by itself")
    kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=release("1.2.0", 0.3))
    follow({"RolledBack"}, "1.2.0")

    print("\nWhere things stand:")
    subprocess.run([sys.executable, "-m", "sluice.cli.main", "get", "rel", "checkout", "-n", NAMESPACE])
    print(f"""
Try next (export KUBECONFIG={LOCAL / 'kubeconfig'}):
  kubectl get rel -n {NAMESPACE}                      # Version, Phase, Weight, Step
  kubectl describe rel checkout -n {NAMESPACE}        # conditions and events
  kubectl get httproute checkout -n {NAMESPACE} -o yaml
  sluice retry checkout -n {NAMESPACE}                # try 1.2.0 again, no spec change
  make cluster-down                                   # stops the operator, Prometheus and the cluster
""")


if __name__ == "__main__":
    main()

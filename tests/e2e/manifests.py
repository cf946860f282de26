"""Manifests for e2e stories: a fast policy and Releases of chosen health."""

from __future__ import annotations

import os
from typing import Any

# kwok runs no containers, so any image name does; on kind (hack/kind-e2e.sh) pods really run.
IMAGE = os.environ.get("E2E_IMAGE", "example.com/{name}:{version}")

ERROR_RATE = (
    '(sum(rate(http_requests_total{namespace="{{namespace}}",app="{{release}}",version="{{version}}",'
    'code=~"5.."}[10s])) or vector(0)) / '
    'sum(rate(http_requests_total{namespace="{{namespace}}",app="{{release}}",version="{{version}}"}[10s]))'
)
SAMPLES = 'sum(increase(http_requests_total{namespace="{{namespace}}",app="{{release}}",version="{{version}}"}[10s]))'


def policy(name: str, steps: list[dict[str, Any]], prometheus: str, **spec: Any) -> dict[str, Any]:
    analysis = {
        "interval": "3s",
        "count": 2,
        "prometheus": {"address": prometheus, "timeout": "2s"},
        "metrics": [{
            "name": "error-rate",
            "query": ERROR_RATE,
            "successCondition": "result < 0.05",
            "minSamples": {"query": SAMPLES, "atLeast": 10},
        }],
    }
    analysis.update(spec.pop("analysis", {}))
    return {"apiVersion": "sluice.dev/v1alpha1", "kind": "RolloutPolicy", "metadata": {"name": name},
            "spec": {"strategy": {"canary": {"steps": steps}}, "analysis": analysis,
                     "progressDeadline": "60s", **spec}}


def release(name: str, version: str, policy: str | None = "fast", replicas: int = 4, error_rate: float = 0.0,
            never_ready: bool = False, route: str | None = None) -> dict[str, Any]:
    annotations = {"sim.sluice.dev/error-rate": str(error_rate)}
    container: dict[str, Any] = {"name": "app", "image": IMAGE.format(name=name, version=version)}
    if never_ready:
        annotations["sim.sluice.dev/never-ready"] = "true"  # kwok's stage
        container["readinessProbe"] = {"tcpSocket": {"port": 1}, "periodSeconds": 2}  # a real kubelet
    spec: dict[str, Any] = {
        "version": version,
        "replicas": replicas,
        "template": {"metadata": {"annotations": annotations}, "spec": {"containers": [container]}},
    }
    if policy:
        spec["policyRef"] = {"name": policy}
    if route:
        spec["trafficRouting"] = {"gatewayAPI": {"httpRoute": route}}
    return {"apiVersion": "sluice.dev/v1alpha1", "kind": "Release", "metadata": {"name": name}, "spec": spec}


def http_route(name: str, service: str) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": name},
        "spec": {"parentRefs": [{"name": "shop-gateway"}],
                 "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                            "backendRefs": [{"name": service, "port": 80}]}]},
    }

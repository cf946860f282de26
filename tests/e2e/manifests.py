"""Manifests for e2e stories: a fast policy and Releases of chosen health."""

from __future__ import annotations

from typing import Any

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
    if never_ready:
        annotations["sim.sluice.dev/never-ready"] = "true"
    spec: dict[str, Any] = {
        "version": version,
        "replicas": replicas,
        "template": {"metadata": {"annotations": annotations},
                     "spec": {"containers": [{"name": "app", "image": f"example.com/{name}:{version}"}]}},
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

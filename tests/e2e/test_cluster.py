"""The ground everything stands on: a real API server, controllers, GC, CEL, and Prometheus."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import Kubectl, wait_for

pytestmark = pytest.mark.e2e


def test_a_deployment_gets_ready_pods(kubectl: Kubectl) -> None:
    kubectl.apply({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "example.com/web:1"}]}}},
    })
    wait_for("3 available replicas",
             lambda: (kubectl.get("deployment", "web") or {}).get("status", {}).get("availableReplicas") == 3)


def test_the_api_server_enforces_cel_validation(kubectl: Kubectl) -> None:
    schema = {
        "type": "object",
        "properties": {"spec": {
            "type": "object",
            "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}},
            "x-kubernetes-validations": [{"rule": "self.min <= self.max", "message": "min must not exceed max"}],
        }},
    }
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.smoke.sluice.dev"},
        "spec": {
            "group": "smoke.sluice.dev", "scope": "Namespaced", "names": {"kind": "Widget", "plural": "widgets"},
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}],
        },
    }
    Kubectl(kubectl.env).apply(crd)
    Kubectl(kubectl.env).run("wait", "--for", "condition=established", "crd/widgets.smoke.sluice.dev")
    widget = {"apiVersion": "smoke.sluice.dev/v1", "kind": "Widget", "metadata": {"name": "w"}}
    refused = kubectl.apply({**widget, "spec": {"min": 5, "max": 1}}, check=False)
    assert refused.returncode != 0 and "min must not exceed max" in refused.stderr
    kubectl.apply({**widget, "spec": {"min": 1, "max": 5}})


def test_the_garbage_collector_removes_dependents(kubectl: Kubectl) -> None:
    kubectl.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}})
    uid = kubectl.get("configmap", "owner")["metadata"]["uid"]  # type: ignore[index]
    kubectl.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "dependent", "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                                                  "uid": uid}]}})
    kubectl.run("delete", "configmap", "owner")
    wait_for("the dependent to be collected", lambda: kubectl.get("configmap", "dependent") is None, 60)


def test_prometheus_has_the_simulators_series_per_version(kubectl: Kubectl, prometheus_url: str) -> None:
    kubectl.apply([
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "shop"},
         "spec": {"replicas": 2, "selector": {"matchLabels": {"app.kubernetes.io/name": "shop"}},
                  "template": {"metadata": {"labels": {"app.kubernetes.io/name": "shop",
                                                       "app.kubernetes.io/version": "2.0.0",
                                                       "sluice.dev/track": "stable"},
                                            "annotations": {"sim.sluice.dev/error-rate": "0.25"}},
                               "spec": {"containers": [{"name": "shop", "image": "example.com/shop:2"}]}}}},
    ])
    query = (f'sum by (version, code) (http_requests_total{{namespace="{kubectl.namespace}",app="shop",'
             'version="2.0.0"})')

    def series() -> list[dict[str, object]]:
        body = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": query}, timeout=5).json()
        return body["data"]["result"] if len({r["metric"]["code"] for r in body["data"]["result"]}) == 2 else []
    found = wait_for("request series with 200s and 500s for version 2.0.0", series, 60)
    assert {r["metric"]["version"] for r in found} == {"2.0.0"}

"""Adoption: Sluice never writes an object it does not control, unless that object's own writer
grants it with the annotation sluice.dev/adopt: <release> (see sluice.reconcile.claim)."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import Kubectl, Operator, wait_for
from tests.e2e.manifests import release
from tests.e2e.test_canary import phase
from tests.e2e.test_safety import stalled

pytestmark = pytest.mark.e2e

LEGACY = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "shop", "labels": {"team": "shop"}},
          "spec": {"selector": {"app": "legacy"}, "ports": [{"name": "web", "port": 8080, "targetPort": 8080}]}}


def test_a_service_made_by_hand_is_left_alone_until_its_writer_lets_sluice_adopt_it(
        kubectl: Kubectl, operator: Operator) -> None:
    """Given a Service `shop` that someone made by hand, when Release shop is applied, then it is
    Stalled with a message naming the Service, and the Service is untouched; when the Service's
    writer annotates it sluice.dev/adopt=shop, then Sluice takes it over and the rollout goes on."""
    kubectl.apply(LEGACY)
    before = kubectl.get("service", "shop")
    assert before is not None
    kubectl.apply(release("shop", "1.0.0", policy=None, replicas=2))

    found = wait_for("Release shop Stalled by the Service in its way", stalled(kubectl, "shop"), 30)
    assert found["reason"] == "NameConflict", found
    assert found["message"].startswith("Service shop already exists and is not managed by Sluice;"), found["message"]
    assert "kubectl annotate service shop sluice.dev/adopt=shop" in found["message"], found["message"]
    untouched = kubectl.get("service", "shop")
    assert untouched is not None and untouched["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert "ownerReferences" not in untouched["metadata"] and untouched["spec"]["selector"] == {"app": "legacy"}
    assert kubectl.get("deployment", "shop") is None, "nothing at all was written while the name was taken"

    kubectl.run("annotate", "service", "shop", "sluice.dev/adopt=shop")
    status = wait_for("1.0.0 stable once the Service is adopted", phase(kubectl, "shop", "Succeeded"), 90)
    assert status["stableVersion"] == "1.0.0"
    uid = kubectl.get("releases.sluice.dev", "shop")["metadata"]["uid"]  # type: ignore[index]
    adopted = kubectl.get("service", "shop")
    assert adopted is not None
    assert [(r["kind"], r["name"], r["uid"], r.get("controller")) for r in adopted["metadata"]["ownerReferences"]] == \
        [("Release", "shop", uid, True)]
    assert adopted["spec"]["selector"] == {"app.kubernetes.io/name": "shop", "sluice.dev/track": "stable"}
    assert [p["port"] for p in adopted["spec"]["ports"]] == [80], json.dumps(adopted["spec"]["ports"])
    events = [e["message"] for e in kubectl.events("shop") if e["reason"] == "Adopted"]
    assert events == ["adopting Service shop: its sluice.dev/adopt annotation names this Release, which now "
                      "controls it"], events

    kubectl.apply(release("shop", "1.1.0", policy=None, replicas=2))
    status = wait_for("1.1.0 rolled out through the adopted Service", phase(kubectl, "shop", "Succeeded"), 90)
    assert status["stableVersion"] == "1.1.0"
    endpoints = json.loads(kubectl.run("get", "endpointslices", "-l", "kubernetes.io/service-name=shop",
                                       "-o", "json").stdout)["items"]
    ready = [e for piece in endpoints for e in piece.get("endpoints") or [] if (e.get("conditions") or {}).get("ready")]
    assert len(ready) == 2, endpoints

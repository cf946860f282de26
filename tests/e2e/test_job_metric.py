"""A blue-green preview judged by a real smoke test: given a policy whose prePromotionAnalysis is a
job metric, when a new version is applied, then a Job really runs on the real node against
<name>-preview, and its exit code decides the switch. No preview traffic, no Prometheus.

The application's pods are kwok's (they run nothing), so the smoke test decides from the version
it is told to test (a 2.0.0-bad build "answers 500"); on a real cluster it would call
http://$SLUICE_SERVICE. What is real here is everything Sluice does: the Job, its pod on a real
kubelet, the exit code, the end of its log in the measurement, and the switch or the rollback."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Kubectl, Operator, RealNode, wait_for
from tests.e2e.manifests import release
from tests.e2e.test_canary import phase

pytestmark = pytest.mark.e2e

SMOKE = ('echo "smoke testing http://$SLUICE_SERVICE for $SLUICE_VERSION ($SLUICE_TRACK)"; '
         'case "$SLUICE_VERSION" in *bad*) echo "GET /checkout: 500 Internal Server Error" >&2; exit 1;; esac; '
         'echo "GET /checkout: 200 OK"')


def smoke_policy(node: RealNode) -> dict[str, Any]:
    return {
        "apiVersion": "sluice.dev/v1alpha1", "kind": "RolloutPolicy", "metadata": {"name": "smoke-tested"},
        "spec": {
            "strategy": {"blueGreen": {"prePromotionAnalysis": True, "scaleDownDelay": "2s"}},
            "analysis": {"interval": "3s", "count": 1, "metrics": [{
                "name": "smoke",
                "job": {"timeout": "1m", "template": {"spec": {
                    **node.placement,
                    "containers": [{"name": "smoke", "image": node.tools_image, "imagePullPolicy": "Never",
                                    "command": ["sh", "-ec", SMOKE]}]}}},
            }]},
            "progressDeadline": "90s",
        },
    }


def ship_first_version(kubectl: Kubectl, node: RealNode) -> None:
    wait_for("the default ServiceAccount", lambda: kubectl.get("serviceaccount", "default"), 30)
    kubectl.apply(smoke_policy(node))
    kubectl.apply(release("shop", "1.0.0", policy="smoke-tested"))
    wait_for("shop 1.0.0 to be stable", phase(kubectl, "shop", "Succeeded"), 90)


def active_track(kubectl: Kubectl) -> str:
    service = kubectl.get("service", "shop") or {}
    return str(service.get("spec", {}).get("selector", {}).get("sluice.dev/track", "-"))


def test_a_passing_smoke_test_switches_the_preview_live(
        kubectl: Kubectl, operator: Operator, real_node: RealNode) -> None:
    ship_first_version(kubectl, real_node)

    kubectl.apply(release("shop", "2.0.0", policy="smoke-tested"))
    def promoted() -> Any:
        status = kubectl.status("shop")
        return status if status.get("stableVersion") == "2.0.0" and status.get("phase") == "Succeeded" else None
    status = wait_for("shop 2.0.0 to pass its smoke test and switch", promoted, 150, every=0.5)

    smoke = [m for m in status["analysis"] if m["metric"] == "smoke" and m["version"] == "2.0.0"]
    assert [m["verdict"] for m in smoke] == ["Successful"], smoke
    assert smoke[0]["message"].startswith("Job shop-smoke-") and smoke[0]["message"].endswith(" succeeded")
    walked = [e["message"] for e in kubectl.events("shop") if e["reason"] == "StepCompleted"]
    assert any("(prePromotionAnalysis) complete" in m for m in walked), f"the smoke test judged the preview: {walked}"
    job = kubectl.get("job", smoke[0]["message"].split()[1])
    assert job is not None and job["metadata"]["ownerReferences"][0]["name"] == "shop"


def test_a_failing_smoke_test_keeps_users_on_the_old_version(
        kubectl: Kubectl, operator: Operator, real_node: RealNode) -> None:
    ship_first_version(kubectl, real_node)

    kubectl.apply(release("shop", "2.0.0-bad", policy="smoke-tested"))
    tracks: list[str] = []

    def rolled_back() -> Any:
        tracks.append(active_track(kubectl))
        return phase(kubectl, "shop", "RolledBack")()
    status = wait_for("shop 2.0.0-bad to fail its smoke test", rolled_back, 150, every=0.5)

    assert set(tracks) == {"stable"}, f"users never left 1.0.0: {tracks}"
    smoke = [m for m in status["analysis"] if m["metric"] == "smoke" and m["version"] == "2.0.0-bad"]
    assert [m["verdict"] for m in smoke] == ["Failed"], smoke
    assert "500 Internal Server Error" in smoke[0]["message"], "the end of the smoke test's log"
    assert "smoke testing http://shop-preview for 2.0.0-bad (canary)" in smoke[0]["message"]
    assert "rolled back 2.0.0-bad" in status["message"] and status["stableVersion"] == "1.0.0"

"""Bake stories on the real cluster and Prometheus: given a policy that bakes, when the new version
has taken all traffic, then it is watched for the bake's duration with the old version warm, and
rolled back onto it when its error rate rises, or promoted once the bake has passed."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.e2e.conftest import Kubectl, Operator, wait_for
from tests.e2e.manifests import http_route, policy, release
from tests.e2e.test_canary import deploy_first, phase, route_weights, sluice

pytestmark = pytest.mark.e2e


def baking_policy(prometheus: str, duration: str) -> dict[str, Any]:
    body = policy("fast", [{"setWeight": 50}, {"analysis": {}}], prometheus)
    body["spec"]["bake"] = {"duration": duration}
    return body


def baking(kubectl: Kubectl, name: str) -> Any:
    def check() -> Any:
        status = kubectl.status(name)
        run = status.get("analysisRun") or {}
        return status if status.get("currentStep") == 2 and run.get("step") == 2 and status.get("phase") == \
            "Progressing" else None
    return check


def at(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


class Warmth:
    """Samples the stable Deployment: its version and Ready pods, from the bake to its end."""

    def __init__(self, kubectl: Kubectl, name: str) -> None:
        self.kubectl, self.name = kubectl, name
        self.samples: list[tuple[str, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            body = self.kubectl.get("deployment", self.name) or {}
            version = body.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/version", "?")
            self.samples.append((version, (body.get("status") or {}).get("readyReplicas", 0)))
            time.sleep(0.3)

    def __enter__(self) -> Warmth:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(10)


def test_a_bake_rolls_back_to_the_warm_stable_when_the_error_rate_rises_after_100_percent(
        kubectl: Kubectl, operator: Operator, prometheus_url: str) -> None:
    kubectl.apply(baking_policy(prometheus_url, "5m"))
    deploy_first(kubectl, "oven")
    kubectl.apply(release("oven", "1.1.0"))
    status = wait_for("the bake to begin", baking(kubectl, "oven"), 150)
    assert status["canaryWeight"] == 100 and "baking 1.1.0 at 100%" in status["message"], status["message"]
    service = kubectl.get("service", "oven")
    assert service["spec"]["selector"].get("sluice.dev/track") == "canary", "<name> selects the candidate alone"  # type: ignore[index]
    wait_for("1.0.0 warm beside it", lambda: (kubectl.get("deployment", "oven") or {}).get("status", {}).get(
        "readyReplicas") == 4, 60)
    with Warmth(kubectl, "oven") as warmth:
        time.sleep(8)  # the bake measures a healthy candidate for a while
        assert kubectl.status("oven")["phase"] == "Progressing"
        # Given all traffic, 1.1.0 starts failing half its requests (the simulator reads pod annotations).
        kubectl.run("annotate", "pods", "-l", "app.kubernetes.io/name=oven,sluice.dev/track=canary",
                    "sim.sluice.dev/error-rate=0.5", "--overwrite")
        status = wait_for("the bake to roll back", phase(kubectl, "oven", "RolledBack"), 90)
    assert "rolled back 1.1.0: bake (" in status["message"] and "metric error-rate failed" in status["message"]
    assert kubectl.get("service", "oven")["spec"]["selector"].get("sluice.dev/track") == "stable"  # type: ignore[index]
    # The previous version was warm throughout: four Ready 1.0.0 pods, no pod had to start for the rollback.
    assert warmth.samples and all(sample == ("1.0.0", 4) for sample in warmth.samples), warmth.samples
    wait_for("the candidate scaled to zero",
             lambda: kubectl.get("deployment", "oven-canary")["status"].get("replicas", 0) == 0, 60)  # type: ignore[index]
    assert status["stableVersion"] == "1.0.0" and status["history"][-1]["outcome"] == "RolledBack"
    reasons = [e["reason"] for e in kubectl.events("oven")]
    assert "BakeStarted" in reasons and "RolledBack" in reasons


def test_a_bake_that_passes_promotes_only_after_its_duration(
        kubectl: Kubectl, operator: Operator, prometheus_url: str) -> None:
    kubectl.apply([baking_policy(prometheus_url, "20s"), http_route("loaf", "loaf")])
    deploy_first(kubectl, "loaf", route="loaf")
    kubectl.apply(release("loaf", "1.1.0", route="loaf"))
    status = wait_for("the bake to begin", baking(kubectl, "loaf"), 150)
    began = at(status["analysisRun"]["startedAt"])
    assert route_weights(kubectl, "loaf") == {"loaf": 0, "loaf-canary": 100}
    shown = sluice(kubectl, "get", "rel", "loaf")
    assert shown.returncode == 0 and "> 3. bake 20s" in shown.stdout, shown.stdout + shown.stderr
    stable = kubectl.get("deployment", "loaf")
    assert stable["metadata"]["labels"]["app.kubernetes.io/version"] == "1.0.0"  # type: ignore[index]
    assert stable["status"].get("readyReplicas") == 4, "the previous version is kept warm"  # type: ignore[index]
    status = wait_for("1.1.0 to be promoted", phase(kubectl, "loaf", "Succeeded"), 120)
    finished = at(status["history"][-1]["finishedAt"])
    assert (finished - began).total_seconds() >= 20, f"promoted {finished - began} after the bake began"
    assert status["stableVersion"] == "1.1.0"
    measured = [m for m in status["analysis"] if m.get("version") == "1.1.0" and m.get("step") == 2]
    verdicts = [m["verdict"] for m in measured]
    assert verdicts.count("Successful") >= 5 and "Failed" not in verdicts, measured
    messages = [e["message"] for e in kubectl.events("loaf")]
    assert "step 3/3 (bake 20s) complete" in messages, messages
    assert route_weights(kubectl, "loaf") == {"loaf": 100, "loaf-canary": 0}


def test_sluice_promote_ends_a_bake_early_with_an_event(
        kubectl: Kubectl, operator: Operator, prometheus_url: str) -> None:
    kubectl.apply(baking_policy(prometheus_url, "1h"))
    deploy_first(kubectl, "bun")
    kubectl.apply(release("bun", "1.1.0"))
    wait_for("the bake to begin", baking(kubectl, "bun"), 150)
    done = sluice(kubectl, "promote", "bun")
    assert done.returncode == 0, done.stderr
    status = wait_for("1.1.0 to be promoted", phase(kubectl, "bun", "Succeeded"), 90)
    assert status["stableVersion"] == "1.1.0"
    applied = [e["message"] for e in kubectl.events("bun") if e["reason"] == "RequestApplied"]
    assert any(m.startswith("step 3 (bake 1h) promoted by") for m in applied), applied

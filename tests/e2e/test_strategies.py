"""Blue-green and rolling stories, and manual gates, on the real cluster and Prometheus."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from tests.e2e.conftest import Kubectl, Operator, wait_for
from tests.e2e.manifests import policy, release
from tests.e2e.test_canary import deploy_first, phase, sluice

pytestmark = pytest.mark.e2e


def blue_green(prometheus: str, **options: Any) -> dict[str, Any]:
    body = policy("fast", [{"setWeight": 1}], prometheus)
    body["spec"]["strategy"] = {"blueGreen": {"scaleDownDelay": "5s", **options}}
    return body


class Endpoints:
    """Samples the Ready endpoints of a Service, by the version of the pods behind them."""

    def __init__(self, kubectl: Kubectl, service: str) -> None:
        self.kubectl, self.service = kubectl, service
        self.samples: list[tuple[float, dict[str, int]]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _versions(self) -> dict[str, int]:
        pods = json.loads(self.kubectl.run("get", "pods", "-o", "json").stdout)["items"]
        version = {p["metadata"]["name"]: p["metadata"]["labels"].get("app.kubernetes.io/version") for p in pods}
        slices = json.loads(self.kubectl.run("get", "endpointslices", "-l",
                                             f"kubernetes.io/service-name={self.service}", "-o", "json").stdout)
        counts: dict[str, int] = {}
        for piece in slices["items"]:
            for endpoint in piece.get("endpoints") or []:
                if endpoint.get("conditions", {}).get("ready"):
                    v = version.get((endpoint.get("targetRef") or {}).get("name"), "gone")
                    counts[v] = counts.get(v, 0) + 1
        return counts

    def _run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.monotonic(), self._versions()))
            time.sleep(0.2)

    def __enter__(self) -> Endpoints:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(10)

    def switches(self) -> list[str]:
        """The sequence of version sets the Service served, each listed once when it changed."""
        seen: list[str] = []
        for _, counts in self.samples:
            key = "+".join(sorted(counts)) or "NOTHING"
            if not seen or seen[-1] != key:
                seen.append(key)
        return seen


def test_blue_green_cuts_over_with_no_window_without_ready_endpoints(
        kubectl: Kubectl, operator: Operator, prometheus_url: str) -> None:
    kubectl.apply(blue_green(prometheus_url, prePromotionAnalysis=True))
    deploy_first(kubectl, "shop")
    with Endpoints(kubectl, "shop") as endpoints:
        kubectl.apply(release("shop", "2.0.0"))
        wait_for("the preview Service", lambda: kubectl.get("service", "shop-preview"), 30)
        kubectl.run("annotate", "service", "shop-preview", "sim.sluice.dev/rps=40", "--overwrite")
        status = wait_for("2.0.0 to be promoted", phase(kubectl, "shop", "Succeeded"), 150)
        time.sleep(1)
    assert status["stableVersion"] == "2.0.0"
    assert endpoints.samples and all(sum(counts.values()) > 0 for _, counts in endpoints.samples), \
        "the active Service selected no Ready pod at some moment"
    assert endpoints.switches()[0] == "1.0.0" and endpoints.switches()[-1] == "2.0.0"
    assert "1.0.0+2.0.0" not in endpoints.switches(), "the switch is one write: never both versions"
    judged = [m["verdict"] for m in status["analysis"] if m.get("version") == "2.0.0" and m["verdict"] != "Waiting"]
    assert judged == ["Successful", "Successful"], "the preview was judged before the switch"


def test_blue_green_failing_post_promotion_analysis_switches_back(
        kubectl: Kubectl, operator: Operator, prometheus_url: str) -> None:
    kubectl.apply(blue_green(prometheus_url, postPromotionAnalysis=True, scaleDownDelay="60s"))
    deploy_first(kubectl, "pay")
    with Endpoints(kubectl, "pay") as endpoints:
        kubectl.apply(release("pay", "2.0.0", error_rate=0.5))
        status = wait_for("the switch back", phase(kubectl, "pay", "RolledBack"), 120)
        time.sleep(2)
    assert endpoints.switches() == ["1.0.0", "2.0.0", "1.0.0"], endpoints.switches()
    assert all(sum(counts.values()) > 0 for _, counts in endpoints.samples)
    on_new = [t for t, counts in endpoints.samples if "2.0.0" in counts]
    print(f"2.0.0 served for {on_new[-1] - on_new[0]:.1f}s before the switch back (interval 3s)")
    failed = [m for m in status["analysis"] if m["verdict"] == "Failed"]
    assert len(failed) == 1 and "rolled back 2.0.0" in status["message"]
    assert kubectl.get("deployment", "pay")["metadata"]["labels"]["app.kubernetes.io/version"] == "1.0.0"  # type: ignore[index]


def test_rolling_with_failing_post_analysis_returns_to_the_previous_template(
        kubectl: Kubectl, operator: Operator, prometheus_url: str) -> None:
    body = policy("fast", [{"setWeight": 1}], prometheus_url)
    body["spec"]["strategy"] = {"rolling": {"maxSurge": 1, "maxUnavailable": 0, "postAnalysis": True}}
    kubectl.apply(body)
    deploy_first(kubectl, "api")
    kubectl.apply(release("api", "2.0.0", error_rate=0.5))
    status = wait_for("the rollback", phase(kubectl, "api", "RolledBack"), 120)
    assert "metric error-rate failed" in status["message"]

    def back() -> Any:
        d = kubectl.get("deployment", "api") or {}
        labels = d["spec"]["template"]["metadata"]["labels"]
        return labels["app.kubernetes.io/version"] == "1.0.0" and d["status"].get("updatedReplicas") == 4 and d
    deployment = wait_for("the Deployment back on 1.0.0", back, 60)
    assert deployment["spec"]["template"]["metadata"]["annotations"]["sim.sluice.dev/error-rate"] == "0.0"
    assert kubectl.get("deployment", "api-canary") is None, "rolling never makes a second Deployment"
    assert status["history"][-1]["outcome"] == "RolledBack"


def test_pause_resume_and_abort_in_the_middle_of_a_step(
        kubectl: Kubectl, operator: Operator, prometheus_url: str) -> None:
    kubectl.apply(policy("fast", [{"setWeight": 25}, {"pause": {"duration": "6s"}}, {"setWeight": 50},
                                  {"pause": {"duration": "60s"}}, {"setWeight": 100}], prometheus_url))
    deploy_first(kubectl, "ctl")
    kubectl.apply(release("ctl", "2.0.0"))
    wait_for("the first pause", lambda: kubectl.status("ctl").get("currentStep") == 1, 60)
    assert sluice(kubectl, "pause", "ctl").returncode == 0
    status = wait_for("the pause", phase(kubectl, "ctl", "Paused"), 20)
    assert "paused by a user" in status["message"]
    time.sleep(8)
    assert kubectl.status("ctl")["currentStep"] == 1, "a paused rollout does not move"
    refused = sluice(kubectl, "pause", "ctl")
    assert refused.returncode == 1 and "only a progressing rollout can be paused" in refused.stderr
    assert sluice(kubectl, "resume", "ctl").returncode == 0
    wait_for("the second pause step", lambda: kubectl.status("ctl").get("currentStep") == 3, 60)
    assert sluice(kubectl, "abort", "ctl").returncode == 0
    status = wait_for("the abort", phase(kubectl, "ctl", "RolledBack"), 30)
    assert "aborted by" in status["message"]
    wait_for("the canary at zero", lambda: kubectl.get("deployment", "ctl-canary")["status"].get("replicas", 0) == 0,
             30)  # type: ignore[index]

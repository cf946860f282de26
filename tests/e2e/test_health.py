"""What GitOps tools make of a Release, phase by phase, on real objects.

Given Releases driven into each phase on the real cluster, when kstatus (sigs.k8s.io/cli-utils,
what Flux's `wait` and kpt use; hack/kstatus) and Argo CD's health code running the shipped
health.lua (hack/argocd) read them as the API server returns them, then a rollout under way is
InProgress/Progressing, one waiting for a person InProgress/Suspended, a promoted one
Current/Healthy, and a rolled-back, failed or stalled one Failed/Degraded.

The objects are kept in .local/e2e/health/<phase>.json for a look.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import LOGS, ROOT, Kubectl, Operator, wait_for
from tests.e2e.manifests import ERROR_RATE, SAMPLES, http_route, policy, release
from tests.e2e.test_canary import deploy_first, phase, route_weights, sluice

pytestmark = pytest.mark.e2e

ARGOCD_CM = ROOT / "integrations" / "argocd" / "argocd-cm.yaml"
APPLICATION = ROOT / "integrations" / "argocd" / "application.yaml"
CAPTURED = LOGS / "health"


def _build(script: str) -> str:
    done = subprocess.run([str(ROOT / script)], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def kstatus() -> str:
    return _build("hack/kstatus/build.sh")


@pytest.fixture(scope="module")
def argocd() -> str:
    return _build("hack/argocd/build.sh")


class Judges:
    """Both helpers, on one object at a time: (kstatus status, message), (Argo CD health, message)."""

    def __init__(self, kstatus: str, argocd: str, config: Path = ARGOCD_CM) -> None:
        self.kstatus, self.argocd, self.config = kstatus, argocd, config

    def __call__(self, obj: dict[str, Any]) -> tuple[tuple[str, str], tuple[str, str]]:
        text = json.dumps(obj)
        computed = subprocess.run([self.kstatus, "-json"], input=text, capture_output=True, text=True, timeout=60)
        assert computed.returncode == 0, computed.stderr
        health = subprocess.run([self.argocd, "-config", str(self.config), "-json"], input=text,
                                capture_output=True, text=True, timeout=60)
        assert health.returncode == 0, health.stderr
        k, a = json.loads(computed.stdout), json.loads(health.stdout)
        return (k["status"], k["message"]), (a["status"], a["message"])

    def drifted(self, application: Path, git: dict[str, Any], live: dict[str, Any], tmp: Path) -> bool:
        """Whether Argo CD's diff, with the Application's ignoreDifferences, calls `live` out of sync."""
        (tmp / "git.json").write_text(json.dumps(git))
        (tmp / "live.json").write_text(json.dumps(live))
        done = subprocess.run([self.argocd, "-config", str(self.config), "-app", str(application),
                               "-git", str(tmp / "git.json"), "-live", str(tmp / "live.json")],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return bool(json.loads(done.stdout)["modified"])


@pytest.fixture
def judge(kstatus: str, argocd: str) -> Judges:
    return Judges(kstatus, argocd)


def capture(kubectl: Kubectl, name: str, label: str) -> dict[str, Any]:
    """The Release as the API server returns it, kept for a look."""
    body = kubectl.get("releases.sluice.dev", name)
    assert body is not None
    CAPTURED.mkdir(parents=True, exist_ok=True)
    (CAPTURED / f"{label}.json").write_text(json.dumps(body, indent=2))
    return body


def settled(kubectl: Kubectl, name: str, *phases: str, step: int | None = None) -> Any:
    """The Release in one of `phases` (at `step`), observed at its latest generation."""
    check = phase(kubectl, name, *phases)
    return lambda: (s := check()) and (step is None or s.get("currentStep") == step) and s


def git_route() -> dict[str, Any]:
    """The HTTPRoute as Git holds it, as application.yaml asks: both backendRefs, the canary at 0."""
    route = http_route("shop", "shop")
    route["spec"]["rules"][0]["backendRefs"] = [{"name": "shop", "port": 80, "weight": 100},
                                                {"name": "shop-canary", "port": 80, "weight": 0}]
    return route


def test_a_canary_is_progressing_then_waits_for_a_person_then_is_healthy(
        kubectl: Kubectl, operator: Operator, prometheus_url: str, judge: Judges, tmp_path: Path) -> None:
    steps = [{"setWeight": 25}, {"pause": {"duration": "1h"}}, {"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]
    kubectl.apply([policy("fast", steps, prometheus_url), git_route()])
    deploy_first(kubectl, "shop", route="shop")
    succeeded = capture(kubectl, "shop", "Succeeded-first")
    assert judge(succeeded)[0][0] == "Current" and judge(succeeded)[1][0] == "Healthy"

    kubectl.apply(release("shop", "1.1.0", route="shop"))
    wait_for("the timed pause (Progressing)", settled(kubectl, "shop", "Progressing", step=1), 60)
    progressing = capture(kubectl, "shop", "Progressing")
    (k_status, k_message), (a_status, a_message) = judge(progressing)
    assert (k_status, a_status) == ("InProgress", "Progressing")
    assert k_message == a_message == progressing["status"]["message"]
    assert "step 2/5" in k_message

    # Argo CD sees the weights Sluice wrote as drift, unless the Application ignores them as shipped.
    live_route = kubectl.get("httproute", "shop")
    assert live_route is not None and route_weights(kubectl, "shop") == {"shop": 75, "shop-canary": 25}
    shipped = tmp_path / "application.yaml"
    shipped.write_text(APPLICATION.read_text().replace("checkout", "shop"))
    bare, application = tmp_path / "bare.yaml", yaml.safe_load(shipped.read_text())
    del application["spec"]["ignoreDifferences"]
    bare.write_text(yaml.safe_dump(application))
    assert judge.drifted(bare, git_route(), live_route, tmp_path), "without ignoreDifferences the weights differ"
    assert not judge.drifted(shipped, git_route(), live_route, tmp_path), "the shipped Application ignores them"
    assert judge.drifted(shipped, {**git_route(), "spec": {**git_route()["spec"], "hostnames": ["shop.example"]}},
                         live_route, tmp_path), "any other difference is still drift"

    # A spec the operator has not observed yet is in progress, whatever its conditions say.
    unobserved = json.loads(json.dumps(progressing))
    unobserved["metadata"]["generation"] += 1
    (k_status, k_message), (a_status, _) = judge(unobserved)
    assert (k_status, a_status) == ("InProgress", "Progressing") and "observed generation" in k_message

    assert sluice(kubectl, "promote", "shop").returncode == 0
    wait_for("the promote gate", settled(kubectl, "shop", "Paused", step=3), 60)
    waiting = capture(kubectl, "shop", "Paused-WaitingForPromote")
    conditions = {c["type"]: c for c in waiting["status"]["conditions"]}
    assert (conditions["Reconciling"]["status"], conditions["Reconciling"]["reason"]) == ("True", "WaitingForPromote")
    assert conditions["Ready"]["status"] == "False" and conditions["Stalled"]["status"] == "False"
    generation = waiting["metadata"]["generation"]
    assert waiting["status"]["observedGeneration"] == generation
    assert all(c["observedGeneration"] == generation for c in conditions.values())
    (k_status, _), (a_status, a_message) = judge(waiting)
    assert (k_status, a_status) == ("InProgress", "Suspended")
    assert "waiting for `sluice promote`" in a_message
    # kubectl wait does not return while a person is awaited: the desired version is not serving.
    waited = kubectl.run("wait", "--for=condition=Ready", "release/shop", "--timeout=5s", check=False)
    assert waited.returncode != 0 and "timed out" in waited.stderr, (waited.stdout, waited.stderr)
    # Who wants a waiting rollout to count as healthy edits one line of the shipped script.
    relaxed = tmp_path / "argocd-cm.yaml"
    relaxed.write_text(ARGOCD_CM.read_text().replace('local WAITING = "Suspended"', 'local WAITING = "Healthy"'))
    assert Judges(judge.kstatus, judge.argocd, relaxed)(waiting)[1][0] == "Healthy"

    assert sluice(kubectl, "promote", "shop").returncode == 0
    wait_for("promotion", settled(kubectl, "shop", "Succeeded"), 90)
    wait_for("Ready", lambda: kubectl.run("wait", "--for=condition=Ready", "release/shop", "--timeout=30s",
                                          check=False).returncode == 0, 60)
    promoted = capture(kubectl, "shop", "Succeeded")
    assert promoted["status"]["stableVersion"] == "1.1.0"
    assert [v[0] for v in judge(promoted)] == ["Current", "Healthy"]


def test_an_inconclusive_analysis_waits_for_a_person(
        kubectl: Kubectl, operator: Operator, prometheus_url: str, judge: Judges) -> None:
    silent = {"metrics": [{"name": "error-rate", "query": 'sum(rate(sluice_no_such_series{app="{{release}}"}[10s]))',
                           "successCondition": "result < 0.05", "noData": "inconclusive"}]}
    kubectl.apply(policy("fast", [{"setWeight": 50}, {"analysis": {}}, {"setWeight": 100}], prometheus_url,
                         analysis=silent, progressDeadline="10s"))
    deploy_first(kubectl, "quiet")
    kubectl.apply(release("quiet", "1.1.0"))
    status = wait_for("the inconclusive pause", settled(kubectl, "quiet", "Paused"), 90)
    assert status["pauseReason"] == "AnalysisInconclusive", status["message"]
    held = capture(kubectl, "quiet", "Paused-AnalysisInconclusive")
    reconciling = next(c for c in held["status"]["conditions"] if c["type"] == "Reconciling")
    assert (reconciling["status"], reconciling["reason"]) == ("True", "AnalysisInconclusive")
    assert [v[0] for v in judge(held)] == ["InProgress", "Suspended"]


def test_a_rolled_back_version_is_degraded_and_git_still_asks_for_it(
        kubectl: Kubectl, operator: Operator, prometheus_url: str, judge: Judges) -> None:
    strict = {"metrics": [{"name": "error-rate", "query": ERROR_RATE, "successCondition": "result < 0.05",
                           "minSamples": {"query": SAMPLES, "atLeast": 10}}]}
    kubectl.apply(policy("fast", [{"setWeight": 50}, {"analysis": {}}, {"setWeight": 100}], prometheus_url,
                         analysis=strict))
    deploy_first(kubectl, "cart")
    kubectl.apply(release("cart", "2.0.0", error_rate=0.4))
    wait_for("the rollback", settled(kubectl, "cart", "RolledBack"), 120)
    rolled_back = capture(kubectl, "cart", "RolledBack")
    hint = "Git still asks for 2.0.0: revert the commit to stay on 1.0.0, or `sluice retry` to try 2.0.0 again"
    assert rolled_back["status"]["message"].startswith("rolled back 2.0.0: metric error-rate failed")
    assert rolled_back["status"]["message"].endswith(hint)
    (k_status, k_message), (a_status, a_message) = judge(rolled_back)
    assert (k_status, a_status) == ("Failed", "Degraded")
    assert hint in k_message and hint in a_message
    event = next(e for e in kubectl.events("cart") if e["reason"] == "RolledBack")
    assert event["type"] == "Warning" and event["message"].endswith(hint)
    shown = sluice(kubectl, "get", "rel", "cart")
    assert shown.returncode == 0, shown.stderr
    assert "State:     Stalled (RolledBack)" in shown.stdout and "Git still asks for 2.0.0" in shown.stdout
    # Reverting the commit is the way back to healthy.
    kubectl.apply(release("cart", "1.0.0"))
    wait_for("the revert to be healthy", settled(kubectl, "cart", "Succeeded"), 60)
    reverted = capture(kubectl, "cart", "Succeeded-reverted")
    assert [v[0] for v in judge(reverted)] == ["Current", "Healthy"]


def test_a_failed_first_version_and_invalid_input_are_degraded(
        kubectl: Kubectl, operator: Operator, prometheus_url: str, judge: Judges) -> None:
    kubectl.apply(policy("fast", [{"setWeight": 100}], prometheus_url, progressDeadline="10s"))
    kubectl.apply(release("never", "1.0.0", never_ready=True))
    kubectl.apply(release("lost", "1.0.0", policy="nowhere"))
    wait_for("the first version to fail", settled(kubectl, "never", "Failed"), 60)
    failed = capture(kubectl, "never", "Failed")
    stalled = next(c for c in failed["status"]["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "Failed")
    assert [v[0] for v in judge(failed)] == ["Failed", "Degraded"]

    def stalled_on_input() -> Any:
        body = kubectl.get("releases.sluice.dev", "lost") or {}
        held = {c["type"]: c["status"] for c in (body.get("status") or {}).get("conditions", [])}
        return held.get("Stalled") == "True" and body
    wait_for("the missing policy to stall the Release", stalled_on_input, 60)
    invalid = capture(kubectl, "lost", "Stalled-PolicyNotFound")
    (k_status, k_message), (a_status, _) = judge(invalid)
    assert (k_status, a_status) == ("Failed", "Degraded")
    assert "RolloutPolicy nowhere not found" in k_message

"""Canary stories on the real cluster and Prometheus: given a policy and a release, when the
version changes, then traffic, pods and status follow."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.e2e.conftest import Kubectl, Operator, PrivatePrometheus, wait_for
from tests.e2e.manifests import http_route, policy, release

pytestmark = pytest.mark.e2e

STEPS = [{"setWeight": 20}, {"analysis": {}}, {"setWeight": 50}, {"analysis": {}}, {"setWeight": 100}]


def phase(kubectl: Kubectl, name: str, *phases: str) -> Any:
    def check() -> Any:
        status = kubectl.status(name)
        return status if status.get("phase") in phases and status.get("observedGeneration") == \
            kubectl.get("releases.sluice.dev", name)["metadata"]["generation"] else None  # type: ignore[index]
    return check


def deploy_first(kubectl: Kubectl, name: str, **kwargs: Any) -> None:
    kubectl.apply(release(name, "1.0.0", **kwargs))
    wait_for(f"{name} 1.0.0 to be stable", phase(kubectl, name, "Succeeded"), 90)


def route_weights(kubectl: Kubectl, route: str) -> dict[str, int]:
    body = kubectl.get("httproute", route) or {}
    refs = body.get("spec", {}).get("rules", [{}])[0].get("backendRefs", [])
    return {ref["name"]: int(ref.get("weight", 1)) for ref in refs}


def sluice(kubectl: Kubectl, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sluice.cli.main", *args, "-n", kubectl.namespace or ""],
                          env=kubectl.env, capture_output=True, text=True, timeout=60)


def test_a_healthy_canary_walks_every_step_with_route_weights(
        kubectl: Kubectl, operator: Operator, prometheus_url: str) -> None:
    kubectl.apply([policy("fast", STEPS, prometheus_url), http_route("checkout", "checkout")])
    deploy_first(kubectl, "checkout", route="checkout")
    kubectl.apply(release("checkout", "1.1.0", route="checkout"))
    seen: list[tuple[int, int, int | None]] = []  # (route weight, status weight, step)

    def watch() -> Any:
        status = kubectl.status("checkout")
        weight = route_weights(kubectl, "checkout").get("checkout-canary", 0)
        sample = (weight, status.get("canaryWeight", 0), status.get("currentStep"))
        if not seen or seen[-1] != sample:
            seen.append(sample)
        return status.get("phase") == "Succeeded" and status.get("stableVersion") == "1.1.0"
    wait_for("1.1.0 to be promoted", watch, 180, every=0.3)
    route_steps = [w for i, (w, _, _) in enumerate(seen) if i == 0 or seen[i - 1][0] != w]
    climb = route_steps[:-1]
    # The route carries the share of each step's weight whose canary pods are Ready: 50% of 4 pods
    # is 25% while one of its two pods is Ready, 100% is 75% at three of four.
    assert climb == sorted(climb) and set(climb) <= {0, 20, 25, 50, 75, 100}, f"weights out of order: {seen}"
    assert {20, 50} <= set(route_steps) and route_steps[-1] == 0, seen
    # 100% may last less than a sample; the step's event is written only once the route carries it.
    assert "step 5/5 (setWeight 100) complete" in [e["message"] for e in kubectl.events("checkout")]
    # Within one pass the route is written before status; at rest (the analysis steps) they agree.
    assert (20, 20, 1) in seen and (50, 50, 3) in seen, seen
    assert route_weights(kubectl, "checkout") == {"checkout": 100, "checkout-canary": 0}
    stable = kubectl.get("deployment", "checkout")
    assert stable["metadata"]["labels"]["app.kubernetes.io/version"] == "1.1.0"  # type: ignore[index]
    assert kubectl.get("deployment", "checkout-canary")["spec"]["replicas"] == 0  # type: ignore[index]
    revisions = {}
    stable_sets = kubectl.run("get", "replicasets", "-l", "sluice.dev/track=stable", "-o", "json").stdout
    for rs in json.loads(stable_sets)["items"]:
        revisions[rs["metadata"]["labels"]["app.kubernetes.io/version"]] = int(
            rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"])
    assert revisions["1.0.0"] < revisions["1.1.0"], f"the old template was brought back after promotion: {revisions}"
    status = kubectl.status("checkout")
    verdicts = [m["verdict"] for m in status["analysis"] if m.get("version") == "1.1.0"]
    assert verdicts.count("Successful") == 4 and "Failed" not in verdicts
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    reasons = [e["reason"] for e in kubectl.events("checkout")]
    assert "RolloutStarted" in reasons and "Promoted" in reasons
    # GitOps sees no drift: no finalizer, no annotation of Sluice's, and Sluice wrote status only.
    meta = json.loads(kubectl.run("get", "releases.sluice.dev", "checkout", "-o", "json",
                                  "--show-managed-fields").stdout)["metadata"]
    assert not meta.get("finalizers")
    assert all(not key.startswith(("sluice.dev", "kopf")) for key in meta.get("annotations") or {})
    assert {(f["manager"], f.get("subresource")) for f in meta["managedFields"] if f["manager"] == "sluice"} == \
        {("sluice", "status")}


def test_a_bad_version_is_rolled_back_at_its_second_failed_measurement(
        kubectl: Kubectl, operator: Operator, prometheus_url: str) -> None:
    steps = [{"setWeight": 25}, {"analysis": {}}, {"setWeight": 100}]
    strict = {"metrics": [{"name": "error-rate", "query": policy("x", [], "")["spec"]["analysis"]["metrics"][0][
        "query"], "successCondition": "result < 0.05", "failureLimit": 1,
        "minSamples": policy("x", [], "")["spec"]["analysis"]["metrics"][0]["minSamples"]}], "count": 3}
    kubectl.apply([policy("fast", steps, prometheus_url, analysis=strict), http_route("cart", "cart")])
    deploy_first(kubectl, "cart", route="cart")
    kubectl.apply(release("cart", "2.0.0", route="cart", error_rate=0.4))
    status = wait_for("the bad version to be rolled back", phase(kubectl, "cart", "RolledBack"), 120)
    failed = [m for m in status["analysis"] if m["verdict"] == "Failed"]
    assert len(failed) == 2 and all(m["value"] > 0.05 for m in failed)
    assert "rolled back 2.0.0" in status["message"] and "error-rate failed 2 time(s)" in status["message"]
    assert route_weights(kubectl, "cart") == {"cart": 100, "cart-canary": 0}
    wait_for("the canary scaled to zero",
             lambda: kubectl.get("deployment", "cart-canary")["status"].get("replicas", 0) == 0, 60)  # type: ignore[index]
    assert kubectl.get("deployment", "cart")["metadata"]["labels"]["app.kubernetes.io/version"] == "1.0.0"  # type: ignore[index]
    assert status["history"][-1]["outcome"] == "RolledBack" and status["history"][-1]["version"] == "2.0.0"
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "RolledBack"
    assert any(e["reason"] == "RolledBack" and e["type"] == "Warning" for e in kubectl.events("cart"))


def test_prometheus_down_never_promotes_and_a_retry_completes_once_it_is_back(
        kubectl: Kubectl, operator: Operator, private_prometheus: PrivatePrometheus) -> None:
    steps = [{"setWeight": 50}, {"analysis": {}}, {"setWeight": 100}]
    limited = {"metrics": [{**policy("x", [], "")["spec"]["analysis"]["metrics"][0],
                            "consecutiveErrorLimit": 3}]}
    kubectl.apply(policy("fast", steps, private_prometheus.url, analysis=limited))
    deploy_first(kubectl, "search")
    private_prometheus.stop()
    kubectl.apply(release("search", "3.0.0"))
    status = wait_for("a rollback after 3 errors in a row", phase(kubectl, "search", "RolledBack"), 120)
    assert "could not be measured 3 times in a row" in status["message"]
    assert all(m["verdict"] == "Error" for m in status["analysis"] if m.get("version") == "3.0.0")
    assert status["stableVersion"] == "1.0.0"
    private_prometheus.start()
    done = sluice(kubectl, "retry", "search")
    assert done.returncode == 0, done.stderr
    assert "retry requested" in done.stdout
    status = wait_for("the retry to promote 3.0.0", phase(kubectl, "search", "Succeeded"), 150)
    assert status["stableVersion"] == "3.0.0"


def test_operator_killed_during_a_timed_pause_resumes_on_schedule(
        kubectl: Kubectl, operator: Operator, prometheus_url: str) -> None:
    steps = [{"setWeight": 25}, {"pause": {"duration": "20s"}}, {"setWeight": 100}]
    kubectl.apply(policy("fast", steps, prometheus_url))
    deploy_first(kubectl, "pay")
    kubectl.apply(release("pay", "1.1.0"))
    status = wait_for("the pause step", lambda: (s := kubectl.status("pay")).get("currentStep") == 1 and s, 60)
    started = datetime.strptime(status["stepStartedAt"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    operator.kill()
    time.sleep(8)
    assert kubectl.status("pay")["currentStep"] == 1, "nothing moves while the operator is down"
    operator.start()

    def advanced() -> Any:
        s = kubectl.status("pay")
        return (s.get("currentStep") or 0) >= 2 and datetime.now(UTC)
    ended = wait_for("the pause to end", advanced, 60, every=0.25)
    waited = (ended - started).total_seconds()
    assert 19 <= waited <= 28, f"a 20s pause ended after {waited:.1f}s"
    wait_for("1.1.0 to be promoted", phase(kubectl, "pay", "Succeeded"), 90)
    completed = [e["message"] for e in kubectl.events("pay") if e["reason"] == "StepCompleted"]
    assert len(completed) == len(set(completed)) == 3, completed


def test_kubectl_wait_returns_when_a_rollout_succeeds(
        kubectl: Kubectl, operator: Operator, prometheus_url: str) -> None:
    kubectl.apply(policy("fast", [{"setWeight": 50}, {"pause": {"duration": "2s"}}, {"setWeight": 100}],
                         prometheus_url))
    deploy_first(kubectl, "web")
    kubectl.apply(release("web", "1.2.0"))
    time.sleep(1)
    waited = kubectl.run("wait", "--for=condition=Ready", "release/web", "--timeout=120s")
    assert "condition met" in waited.stdout
    assert kubectl.status("web")["stableVersion"] == "1.2.0"


def test_a_candidate_never_ready_fails_at_the_progress_deadline(
        kubectl: Kubectl, operator: Operator, prometheus_url: str) -> None:
    kubectl.apply(policy("fast", STEPS, prometheus_url, progressDeadline="10s"))
    deploy_first(kubectl, "inv")
    kubectl.apply(release("inv", "1.1.0", never_ready=True))
    status = wait_for("a rollback at the deadline", phase(kubectl, "inv", "RolledBack"), 60)
    assert "candidate 1.1.0 not Ready within 10s (0/1 pods ready)" in status["message"]
    assert kubectl.get("deployment", "inv")["status"]["readyReplicas"] == 4  # type: ignore[index]


def test_reapplying_the_stable_version_mid_rollout_is_an_instant_rollback(
        kubectl: Kubectl, operator: Operator, prometheus_url: str) -> None:
    kubectl.apply([policy("fast", [{"setWeight": 30}, {"pause": {}}, {"setWeight": 100}], prometheus_url),
                   http_route("ui", "ui")])
    deploy_first(kubectl, "ui", route="ui")
    kubectl.apply(release("ui", "1.1.0", route="ui"))
    wait_for("the indefinite pause", phase(kubectl, "ui", "Paused"), 60)
    assert route_weights(kubectl, "ui")["ui-canary"] == 30
    kubectl.apply(release("ui", "1.0.0", route="ui"))
    status = wait_for("the fast rollback", phase(kubectl, "ui", "Succeeded"), 30)
    assert status["stableVersion"] == "1.0.0" and status["history"][-1]["outcome"] == "RolledBack"
    assert route_weights(kubectl, "ui")["ui-canary"] == 0
    assert any(e["reason"] == "StableReapplied" for e in kubectl.events("ui"))


def test_promote_through_an_indefinite_pause(kubectl: Kubectl, operator: Operator, prometheus_url: str) -> None:
    kubectl.apply(policy("fast", [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}], prometheus_url))
    deploy_first(kubectl, "gate")
    refused = sluice(kubectl, "promote", "gate")
    assert refused.returncode == 1 and "it is Succeeded (1.0.0)" in refused.stderr
    kubectl.apply(release("gate", "1.1.0"))
    status = wait_for("the pause", phase(kubectl, "gate", "Paused"), 60)
    assert "waiting for `sluice promote`" in status["message"]
    assert sluice(kubectl, "promote", "gate").returncode == 0
    wait_for("promotion", phase(kubectl, "gate", "Succeeded"), 60)


def test_promote_full_skips_the_remaining_steps(kubectl: Kubectl, operator: Operator, prometheus_url: str) -> None:
    kubectl.apply(policy("fast", [{"setWeight": 10}, {"pause": {"duration": "1h"}}, {"setWeight": 50},
                                  {"pause": {}}, {"setWeight": 100}], prometheus_url))
    deploy_first(kubectl, "fast-track")
    kubectl.apply(release("fast-track", "1.1.0"))
    wait_for("the hour-long pause", lambda: kubectl.status("fast-track").get("currentStep") == 1, 60)
    done = sluice(kubectl, "promote", "fast-track", "--full")
    assert done.returncode == 0 and "promote-full requested" in done.stdout
    status = wait_for("promotion", phase(kubectl, "fast-track", "Succeeded"), 60)
    assert status["stableVersion"] == "1.1.0"
    assert any(e["reason"] == "RequestApplied" and "promoted fully" in e["message"]
               for e in kubectl.events("fast-track"))


def test_a_missing_policy_stalls_with_a_plain_message_and_moves_nothing(kubectl: Kubectl, operator: Operator) -> None:
    kubectl.apply(release("lost", "1.0.0", policy="nowhere"))
    status = wait_for("Stalled", lambda: (s := kubectl.status("lost")).get("conditions") and s, 30)
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "PolicyNotFound"
    assert stalled["message"] == f"RolloutPolicy nowhere not found in namespace {kubectl.namespace}; " \
                                 "no new rollout starts until it exists"
    assert kubectl.get("deployment", "lost") is None


def test_a_query_prometheus_refuses_stalls_the_release(
        kubectl: Kubectl, operator: Operator, prometheus_url: str) -> None:
    broken = {"metrics": [{"name": "error-rate", "query": "sum(rate(http_requests_total[1m])",
                           "successCondition": "result < 1"}]}
    kubectl.apply(policy("fast", [{"setWeight": 50}, {"analysis": {}}, {"setWeight": 100}], prometheus_url,
                         analysis=broken))
    deploy_first(kubectl, "typo")
    kubectl.apply(release("typo", "1.1.0"))

    def stalled() -> Any:
        conditions = kubectl.status("typo").get("conditions", [])
        return next((c for c in conditions if c["type"] == "Stalled" and c["status"] == "True"), None)
    condition = wait_for("Stalled on the query", stalled, 60)
    assert "metric error-rate: Prometheus at" in condition["message"]
    assert "refused the query as invalid (HTTP 400, errorType bad_data)" in condition["message"]
    assert kubectl.status("typo")["stableVersion"] == "1.0.0"

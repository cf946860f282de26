"""Safety stories (issue 7) on the real cluster: a rollback sticks, traffic never lands on
nothing, drift is undone, input the API server refuses stalls at once, names never collide.

Each story samples what a user would see while it runs (the Ready endpoints of the Services,
the HTTPRoute's weights, the Deployments) and asserts on the whole sequence, not only the end.
Pods lose readiness through kwok's stage `pod-unready` (hack/cluster/stages.yaml): a test
annotates a running pod with sim.sluice.dev/unready=true, and removes it to make it Ready again.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.e2e.conftest import Kubectl, Operator, wait_for
from tests.e2e.manifests import http_route, policy, release
from tests.e2e.test_canary import deploy_first, phase, route_weights
from tests.e2e.test_strategies import Endpoints, blue_green
from tests.e2e.test_tls import secret

pytestmark = pytest.mark.e2e

UNREADY = "sim.sluice.dev/unready"  # kwok's pod-unready stage
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class Sampler:
    """Calls `read` every 0.2 s in the background and keeps (time, value): what a user would have
    seen, moment by moment, while a story runs."""

    def __init__(self, read: Callable[[], Any]) -> None:
        self.read = read
        self.samples: list[tuple[float, Any]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            # An object briefly missing, or a slow kubectl, is no sample.
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired, KeyError, TypeError):
                self.samples.append((time.monotonic(), self.read()))
            time.sleep(0.2)

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(10)

    def since(self, start: float) -> list[Any]:
        return [value for at, value in self.samples if at >= start]

    def changes(self, start: float = 0.0) -> list[Any]:
        """The values seen from `start` on, each listed once when it changed."""
        seen: list[Any] = []
        for value in self.since(start):
            if not seen or seen[-1] != value:
                seen.append(value)
        return seen


def live_pods(kubectl: Kubectl, name: str, track: str | None = None) -> list[dict[str, Any]]:
    selector = f"app.kubernetes.io/name={name}" + (f",sluice.dev/track={track}" if track else "")
    items = json.loads(kubectl.run("get", "pods", "-l", selector, "-o", "json").stdout)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def set_unready(kubectl: Kubectl, pods: list[str], unready: bool = True) -> None:
    """Make running pods fail (or pass again) their readiness, as a flaky build would."""
    kubectl.run("annotate", "pod", *pods, f"{UNREADY}=true" if unready else f"{UNREADY}-", "--overwrite")


def replicas(kubectl: Kubectl, deployment: str) -> int | None:
    """spec.replicas of a Deployment, None when it does not exist."""
    body = kubectl.get("deployment", deployment)
    return None if body is None else int(body["spec"].get("replicas", 1))


def image_of(kubectl: Kubectl, deployment: str) -> str | None:
    body = kubectl.get("deployment", deployment)
    return None if body is None else body["spec"]["template"]["spec"]["containers"][0]["image"]


def condition(kubectl: Kubectl, name: str, kind: str) -> dict[str, Any] | None:
    return next((c for c in kubectl.status(name).get("conditions") or [] if c["type"] == kind), None)


def stalled(kubectl: Kubectl, name: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        found = condition(kubectl, name, "Stalled")
        return found if found and found["status"] == "True" else None
    return check


def latest(endpoints: Endpoints) -> dict[str, int]:
    return endpoints.samples[-1][1] if endpoints.samples else {}


@contextmanager
def frozen_at(kubectl: Kubectl, operator: Operator, name: str, wanted: str, timeout: float) -> Iterator[float]:
    """Stops the operator (SIGSTOP, then SIGKILL) the moment the Release's status shows phase
    `wanted`: right after the status write that recorded a decision, before it acts on it or
    posts its events, as a node failure would. Yields when that happened; the operator is
    restarted on leaving the block (also when the test fails in it)."""
    assert operator.process is not None
    watch = subprocess.Popen(
        ["kubectl", "-n", kubectl.namespace or "", "get", "releases.sluice.dev", name, "--watch",
         "-o", 'jsonpath={.status.phase}{"\\n"}'],
        env=kubectl.env, stdout=subprocess.PIPE, text=True)
    timer = threading.Timer(timeout, watch.kill)
    timer.start()
    stopped_at = None
    try:
        assert watch.stdout is not None
        for line in watch.stdout:
            if line.strip() == wanted:
                operator.process.send_signal(signal.SIGSTOP)
                stopped_at = time.monotonic()
                break
    finally:
        timer.cancel()
        watch.kill()
        watch.wait()
    try:
        assert stopped_at is not None, f"{name} never showed phase {wanted} within {timeout:.0f}s; " \
                                       f"status: {kubectl.status(name)}"
        operator.kill()
        yield stopped_at
    finally:
        if operator.process is not None and operator.process.poll() is None:
            operator.kill()
        operator.start()


# Item 7: decide, persist, act. --------------------------------------------------------------

def test_a_rollback_sticks_when_the_operator_dies_right_after_deciding_it(
        kubectl: Kubectl, operator: Operator, prometheus_url: str) -> None:
    """Given a canary at 50% on a Gateway route that fails its analysis, when the operator dies
    the moment RolledBack is written, then after a restart the canary never gets its route
    weight or its pods back, the rollback completes, and its event is posted exactly once."""
    kubectl.apply([policy("fast", [{"setWeight": 50}, {"analysis": {}}, {"setWeight": 100}], prometheus_url),
                   http_route("cart", "cart")])
    deploy_first(kubectl, "cart", route="cart", replicas=2)

    def traffic() -> tuple[int, int | None]:
        return route_weights(kubectl, "cart").get("cart-canary", 0), replicas(kubectl, "cart-canary")

    with Sampler(traffic) as seen, Endpoints(kubectl, "cart-canary") as canary_endpoints:
        kubectl.apply(release("cart", "2.0.0", route="cart", replicas=2, error_rate=0.5))
        wait_for("the canary at 50% of the route", lambda: traffic()[0] == 50, 60)
        with frozen_at(kubectl, operator, "cart", "RolledBack", 90) as decided:
            at_death = traffic()
            time.sleep(3)
            assert kubectl.status("cart")["phase"] == "RolledBack", "the decision was persisted before dying"
        wait_for("the rollback completed after the restart (route 0%, canary at 0 pods)",
                 lambda: traffic() == (0, 0) or None, 30)
        completed = time.monotonic()
        time.sleep(6)  # two analysis intervals: a pass that forgot the rollback would act by now
    after = seen.changes(decided)
    weights, sizes = [w for w, _ in after], [r for _, r in after if r is not None]
    print(f"at the operator's death: route weight {at_death[0]}%, canary replicas {at_death[1]}; then {after}")
    assert all(b <= a for a, b in itertools.pairwise(weights)), \
        f"the canary's route weight went up again after the rollback was decided: {after}"
    assert all(b <= a for a, b in itertools.pairwise(sizes)), \
        f"the canary was scaled up again after the rollback was decided: {after}"
    assert traffic() == (0, 0), f"(route weight, canary replicas) at the end: {traffic()}"
    late = [counts for at, counts in canary_endpoints.samples if at > completed + 3 and counts]
    assert not late, f"the canary still had Ready endpoints after the rollback completed: {late[:3]}"
    status = kubectl.status("cart")
    assert status["phase"] == "RolledBack" and status["stableVersion"] == "1.0.0", status.get("message")
    rolled_back = [e for e in kubectl.events("cart") if e["reason"] == "RolledBack"]
    assert len(rolled_back) == 1, \
        f"expected one RolledBack event (posted from the recorded decision), found {len(rolled_back)}: " \
        f"{[e['message'] for e in rolled_back]}"
    assert rolled_back[0]["type"] == "Warning" and "2.0.0" in rolled_back[0]["message"]


REFUSED = "e2e: this Release's RolledBack status write is refused"


@contextmanager
def status_writes_refused(kubectl: Kubectl, phase: str) -> Iterator[None]:
    """A ValidatingAdmissionPolicy (one for this namespace) that refuses every status write of a
    Release that would set `phase`: the operator's status write fails, as on a Conflict."""
    name = f"refuse-{kubectl.namespace}"[:63]
    policy_ = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {"failurePolicy": "Fail",
                 "matchConstraints": {"resourceRules": [{"apiGroups": ["sluice.dev"], "apiVersions": ["*"],
                                                         "operations": ["UPDATE"],
                                                         "resources": ["releases/status"]}]},
                 "validations": [{"expression": f"!has(object.status) || !has(object.status.phase) || "
                                                f"object.status.phase != '{phase}'", "message": REFUSED}]},
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"],
                 "matchResources": {"namespaceSelector": {"matchLabels": {
                     "kubernetes.io/metadata.name": kubectl.namespace}}}},
    }
    cluster = Kubectl(kubectl.env)
    cluster.apply([policy_, binding])
    try:
        yield
    finally:
        cluster.run("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", name, check=False)


def test_a_rollback_whose_status_write_is_refused_is_never_undone(
        kubectl: Kubectl, operator: Operator, prometheus_url: str) -> None:
    """Given a canary at 50% on a Gateway route that fails its analysis, when the API server
    refuses the status write that records the rollback, then no pass sends the canary traffic
    or pods again; once writes pass, the rollback completes with one RolledBack event."""
    kubectl.apply([policy("fast", [{"setWeight": 50}, {"analysis": {}}, {"setWeight": 100}], prometheus_url),
                   http_route("bag", "bag")])
    deploy_first(kubectl, "bag", route="bag", replicas=2)

    def traffic() -> tuple[int, int | None]:
        return route_weights(kubectl, "bag").get("bag-canary", 0), replicas(kubectl, "bag-canary")

    mark = operator.log.stat().st_size
    with Sampler(traffic) as seen, status_writes_refused(kubectl, "RolledBack"):
        def in_force() -> bool:  # a new admission policy takes a moment to be enforced
            probe = kubectl.run("patch", "releases.sluice.dev", "bag", "--subresource=status", "--type=merge",
                                "-p", '{"status": {"phase": "RolledBack"}}', "--dry-run=server", check=False)
            return REFUSED in probe.stderr
        wait_for("the admission policy in force (a server dry-run of a RolledBack status refused)", in_force, 30)
        kubectl.apply(release("bag", "2.0.0", route="bag", replicas=2, error_rate=0.5))
        wait_for("the canary at 50% of the route", lambda: traffic()[0] == 50, 60)
        on = time.monotonic()

        def refusals() -> int:
            return operator.log.read_text(errors="replace")[mark:].count(REFUSED)
        wait_for("the operator's RolledBack status write refused twice", lambda: refusals() >= 2, 60)
        time.sleep(4)
        during = kubectl.status("bag")
    wait_for("the rollback recorded once writes pass", phase(kubectl, "bag", "RolledBack"), 60)
    wait_for("the rollback completed (route 0%, canary at 0 pods)", lambda: traffic() == (0, 0) or None, 30)
    time.sleep(3)
    after = seen.changes(on)
    weights, sizes = [w for w, _ in after], [r for _, r in after if r is not None]
    assert during["phase"] != "RolledBack"
    assert all(b <= a for a, b in itertools.pairwise(weights)), \
        f"the canary's route weight went back up after a rollback whose status write was refused: {after}"
    assert all(b <= a for a, b in itertools.pairwise(sizes)), \
        f"the canary was scaled back up after a rollback whose status write was refused: {after}"
    rolled_back = [e for e in kubectl.events("bag") if e["reason"] == "RolledBack"]
    assert len(rolled_back) == 1, f"RolledBack events: {[e['message'] for e in rolled_back]}"


# Item 8: replica ratio never leaves <name> without Ready pods. ------------------------------

@pytest.mark.parametrize(("count", "weight"), [(1, 50), (4, 80)], ids=["replicas-1-at-50", "replicas-4-at-80"])
def test_replica_ratio_keeps_a_ready_stable_pod_through_a_canary_and_its_rollback(
        kubectl: Kubectl, operator: Operator, prometheus_url: str, count: int, weight: int) -> None:
    """Given a replica-ratio canary whose weight rounds the stable track to zero pods, when the
    candidate fails and is rolled back, then Service <name> has Ready endpoints at every sample
    and the stable Deployment never drops below one pod."""
    kubectl.apply(policy("fast", [{"setWeight": weight}, {"analysis": {}}, {"setWeight": 100}], prometheus_url))
    deploy_first(kubectl, "shop", replicas=count)
    with Endpoints(kubectl, "shop") as endpoints, Sampler(lambda: replicas(kubectl, "shop")) as stable:
        kubectl.apply(release("shop", "2.0.0", replicas=count, error_rate=0.5))
        status = wait_for("the bad version to be rolled back", phase(kubectl, "shop", "RolledBack"), 120)
        wait_for("the canary at zero pods", lambda: replicas(kubectl, "shop-canary") == 0, 30)
        wait_for("shop serving 1.0.0 only", lambda: set(latest(endpoints)) == {"1.0.0"}, 30)
        time.sleep(1)
    assert "2.0.0" in "+".join(endpoints.switches()), f"the canary never served: {endpoints.switches()}"
    empty = [at for at, counts in endpoints.samples if sum(counts.values()) == 0]
    assert not empty, (f"Service shop had no Ready endpoint in {len(empty)} of {len(endpoints.samples)} samples "
                       f"(for {empty[-1] - empty[0]:.1f}s); it served: {endpoints.switches()}")
    sizes = [r for _, r in stable.samples if r is not None]
    assert min(sizes) >= 1, f"the stable Deployment was scaled to {min(sizes)} pods during a canary at {weight}% " \
                            f"with replicas {count}: {stable.changes()}"
    assert status["stableVersion"] == "1.0.0" and endpoints.switches()[-1] == "1.0.0"


# Item 9: blue-green switches back when the candidate loses readiness. -----------------------

def test_blue_green_switches_back_to_the_warm_stable_when_the_candidate_loses_readiness(
        kubectl: Kubectl, operator: Operator, prometheus_url: str) -> None:
    """Given a blue-green switch to 2.0.0 with 1.0.0 kept warm, when every 2.0.0 pod fails its
    readiness, then <name> selects the warm 1.0.0 pods at once; when they recover, the switch is
    made again and the rollout completes."""
    body = blue_green(prometheus_url, scaleDownDelay="12s")
    body["spec"]["progressDeadline"] = "40s"
    kubectl.apply(body)
    deploy_first(kubectl, "pay", replicas=2)
    with Endpoints(kubectl, "pay") as endpoints:
        kubectl.apply(release("pay", "2.0.0", replicas=2))
        wait_for("pay serving 2.0.0", lambda: set(latest(endpoints)) == {"2.0.0"}, 60, every=0.1)
        candidate = [p["metadata"]["name"] for p in live_pods(kubectl, "pay", "canary")]
        set_unready(kubectl, candidate)
        lost = time.monotonic()
        wait_for("pay back on the warm 1.0.0 pods", lambda: latest(endpoints).get("1.0.0", 0) == 2, 30, every=0.1)
        took = time.monotonic() - lost
        status = kubectl.status("pay")
        assert status["phase"] not in ("Succeeded", "RolledBack"), status.get("message")
        assert status.get("unreadySince"), f"status.unreadySince not set while 2.0.0 is not Ready: {status}"
        set_unready(kubectl, candidate, unready=False)
        final = wait_for("2.0.0 promoted after it recovered", phase(kubectl, "pay", "Succeeded"), 90)
        time.sleep(1)
    served = [v for v in endpoints.switches() if v != "NOTHING"]
    assert served[:4] == ["1.0.0", "2.0.0", "1.0.0", "2.0.0"], f"pay served, in order: {endpoints.switches()}"
    assert took <= 5, f"pay went back to the warm stable only {took:.1f}s after 2.0.0 lost readiness"
    blind = [at for at, counts in endpoints.samples if at > lost and not counts]
    assert not blind or blind[-1] - blind[0] <= 5, \
        f"pay had no Ready endpoint for {blind[-1] - blind[0]:.1f}s after 2.0.0 lost readiness"
    assert final["stableVersion"] == "2.0.0"


# Item 10: drift. ----------------------------------------------------------------------------

def test_drift_on_owned_deployments_is_undone_and_a_deleted_stable_is_rebuilt_from_status(
        kubectl: Kubectl, operator: Operator, prometheus_url: str) -> None:
    """Given a canary paused at 25%, when someone runs `kubectl set image` on the canary or the
    stable Deployment, then Sluice puts the Release's template back; when the stable Deployment
    is deleted with its ReplicaSets, then Sluice rebuilds it on 1.0.0 from its status alone."""
    kubectl.apply(policy("fast", [{"setWeight": 25}, {"pause": {}}, {"setWeight": 100}], prometheus_url))
    deploy_first(kubectl, "inv")
    kubectl.apply(release("inv", "1.1.0"))
    wait_for("the indefinite pause", phase(kubectl, "inv", "Paused"), 60)
    for deployment, version in (("inv-canary", "1.1.0"), ("inv", "1.0.0")):
        kubectl.run("set", "image", f"deployment/{deployment}", "app=evil.example.com/miner:1")
        wanted = f"example.com/inv:{version}"

        def restored(d: str = deployment, w: str = wanted) -> bool:
            return image_of(kubectl, d) == w
        try:
            wait_for(f"the image of {deployment} back to {wanted}", restored, 20)
        except AssertionError:
            raise AssertionError(f"`kubectl set image deployment/{deployment}` was not undone within 20s: "
                                 f"its image is still {image_of(kubectl, deployment)}") from None
    # Foreground: the Deployment is gone only once its ReplicaSets (the template history) are.
    kubectl.run("delete", "deployment", "inv", "--cascade=foreground", "--wait=true")

    def rebuilt() -> Any:
        body = kubectl.get("deployment", "inv")
        return body if body and (body.get("status") or {}).get("readyReplicas", 0) >= 3 else None
    try:
        body = wait_for("the stable Deployment rebuilt", rebuilt, 30)
    except AssertionError:
        raise AssertionError(f"the deleted stable Deployment was not rebuilt within 30s: "
                             f"{kubectl.get('deployment', 'inv')}; status: {kubectl.status('inv').get('message')}"
                             ) from None
    template = body["spec"]["template"]
    assert template["metadata"]["labels"]["app.kubernetes.io/version"] == "1.0.0", template["metadata"]
    assert template["spec"]["containers"][0]["image"] == "example.com/inv:1.0.0"
    assert template["metadata"]["annotations"]["sim.sluice.dev/error-rate"] == "0.0"
    status = kubectl.status("inv")
    assert status["phase"] == "Paused" and status["currentStep"] == 1 and status["stableVersion"] == "1.0.0"
    with Endpoints(kubectl, "inv") as endpoints:
        wait_for("inv serving both versions again", lambda: set(latest(endpoints)) == {"1.0.0", "1.1.0"}, 30)


# Item 11: readiness waits are timed from when readiness was lost. ---------------------------

def test_a_canary_that_loses_readiness_loses_its_route_weight_at_once(
        kubectl: Kubectl, operator: Operator, prometheus_url: str) -> None:
    """Given a canary at 50% on a Gateway route (2 of 4 pods), when one canary pod fails its
    readiness the route gives it 25%, when both do 0%, at once; when they recover, 50% again,
    and the rollout has not failed meanwhile."""
    kubectl.apply([policy("fast", [{"setWeight": 50}, {"pause": {"duration": "1h"}}, {"setWeight": 100}],
                          prometheus_url, progressDeadline="30s"),
                   http_route("tea", "tea")])
    deploy_first(kubectl, "tea", route="tea")
    kubectl.apply(release("tea", "1.1.0", route="tea"))
    wait_for("the canary at 50% of the route, in the pause",
             lambda: route_weights(kubectl, "tea").get("tea-canary") == 50 and
             kubectl.status("tea").get("currentStep") == 1, 60)
    first, second = sorted(p["metadata"]["name"] for p in live_pods(kubectl, "tea", "canary"))

    def route_weight_within(expected: int, seconds: float, what: str) -> float:
        start = time.monotonic()
        try:
            wait_for(what, lambda: route_weights(kubectl, "tea").get("tea-canary") == expected, seconds, every=0.2)
        except AssertionError:
            raise AssertionError(f"{what}: the route still gives the canary "
                                 f"{route_weights(kubectl, 'tea').get('tea-canary')}% after {seconds:.0f}s "
                                 f"(wanted {expected}%); status: {kubectl.status('tea').get('message')}") from None
        return time.monotonic() - start

    set_unready(kubectl, [first])
    half = route_weight_within(25, 8, "one of two canary pods not Ready")
    set_unready(kubectl, [second])
    none = route_weight_within(0, 8, "no canary pod Ready")
    assert replicas(kubectl, "tea-canary") == 2, "the canary's pods are kept while they are not Ready"
    set_unready(kubectl, [first, second], unready=False)
    back = route_weight_within(50, 10, "both canary pods Ready again")
    print(f"route weight followed readiness in {half:.1f}s, {none:.1f}s, {back:.1f}s")
    status = kubectl.status("tea")
    assert status["phase"] == "Progressing" and status["currentStep"] == 1, status.get("message")
    assert not status.get("unreadySince"), "unreadySince is cleared once the canary is back in place"


def test_a_pod_flapping_late_in_a_long_pause_does_not_roll_back_but_staying_unready_does(
        kubectl: Kubectl, operator: Operator, prometheus_url: str) -> None:
    """Given a canary in an hour-long pause, past its progressDeadline (8s) since the step began,
    when one pod is not Ready for two seconds, then nothing fails; when a pod stays not Ready,
    then the rollout fails progressDeadline after readiness was lost, not at once."""
    kubectl.apply([policy("fast", [{"setWeight": 50}, {"pause": {"duration": "1h"}}, {"setWeight": 100}],
                          prometheus_url, progressDeadline="8s"),
                   http_route("oat", "oat")])
    deploy_first(kubectl, "oat", route="oat")
    kubectl.apply(release("oat", "1.1.0", route="oat"))
    wait_for("the hour-long pause", lambda: kubectl.status("oat").get("currentStep") == 1, 60)
    time.sleep(11)  # the step began more than progressDeadline ago
    flaky = sorted(p["metadata"]["name"] for p in live_pods(kubectl, "oat", "canary"))[0]
    set_unready(kubectl, [flaky])
    wait_for("the flapping pod not Ready", lambda: not is_ready(kubectl.get("pod", flaky) or {}), 10, every=0.2)
    time.sleep(2)
    kubectl.run("annotate", "pod", flaky, f"{UNREADY}-", check=False)  # the pod may be gone: see below
    time.sleep(4)
    status = kubectl.status("oat")
    assert status["phase"] not in ("RolledBack", "Failed"), \
        f"a 2s flap 11s into a 1h pause ended the rollout: {status.get('message')}"
    wait_for("the flapping pod Ready again", lambda: is_ready(kubectl.get("pod", flaky) or {}), 10, every=0.2)
    assert status["currentStep"] == 1 and route_weights(kubectl, "oat").get("oat-canary") == 50, status.get("message")

    set_unready(kubectl, [flaky])
    lost = time.monotonic()
    wait_for("the rollback at the deadline", phase(kubectl, "oat", "RolledBack", "Failed"), 40)
    after = time.monotonic() - lost
    assert 6 <= after <= 20, f"a pod not Ready ended the rollout {after:.1f}s after readiness was lost " \
                             "(progressDeadline 8s, counted from the loss)"
    assert route_weights(kubectl, "oat").get("oat-canary") == 0


# Item 18: every valid semver ships; templates the API server refuses stall at once. --------

RC = "1.0.0-rc.1+build.5"
LONG = "1.0.1-" + ".".join(["candidate"] * 8) + "+build.20261128"  # 100 characters


def test_every_valid_semver_ships_build_metadata_and_longer_than_a_label(
        kubectl: Kubectl, operator: Operator, prometheus_url: str) -> None:
    """Given a policy with an analysis, when a Release ships 1.0.0-rc.1+build.5 and then a
    100-character version, then both become stable, judged on metrics: each pod carries a
    label-safe version label and the full version in an annotation."""
    assert len(LONG) > 63
    kubectl.apply(policy("fast", [{"setWeight": 50}, {"analysis": {}}, {"setWeight": 100}], prometheus_url))
    kubectl.apply(release("ver", RC, replicas=2))
    try:
        wait_for(f"{RC} to be stable", phase(kubectl, "ver", "Succeeded"), 60)
    except AssertionError:
        raise AssertionError(f"{RC} never shipped: {kubectl.status('ver')}") from None
    kubectl.apply(release("ver", LONG, replicas=2))
    try:
        status = wait_for("the long version promoted", phase(kubectl, "ver", "Succeeded"), 120)
    except AssertionError:
        raise AssertionError(f"a {len(LONG)}-character version never shipped: {kubectl.status('ver')}") from None
    assert status["stableVersion"] == LONG
    judged = [m["verdict"] for m in status["analysis"] if m["verdict"] != "Waiting"]
    assert judged == ["Successful", "Successful"], \
        f"the long version was not judged on its own metrics: {status['analysis']}"
    pods = live_pods(kubectl, "ver", "stable")
    assert pods and all(p["metadata"]["annotations"].get("sluice.dev/version") == LONG for p in pods)
    labels = {p["metadata"]["labels"]["app.kubernetes.io/version"] for p in pods}
    assert len(labels) == 1 and all(len(v) <= 63 and LABEL_VALUE.match(v) for v in labels), labels


@pytest.mark.parametrize(("change", "refusal"), [
    ({"name": "Bad_Name"}, "Bad_Name"),
    ({"resources": {"limits": {"cpu": "lots"}}}, "quantities must match"),
], ids=["container-name", "cpu-quantity"])
def test_a_template_the_api_server_refuses_stalls_in_one_pass_and_moves_nothing(
        kubectl: Kubectl, operator: Operator, prometheus_url: str, change: dict[str, Any], refusal: str) -> None:
    """Given 1.0.0 stable behind a route, when 1.1.0 brings a template the API server refuses
    on a Deployment, then the Release is Stalled with the API server's own message within one
    pass, and traffic, pods and the stable version stay as they were."""
    kubectl.apply([policy("fast", [{"setWeight": 50}, {"analysis": {}}, {"setWeight": 100}], prometheus_url),
                   http_route("bad", "bad")])
    deploy_first(kubectl, "bad", route="bad")
    broken = release("bad", "1.1.0", route="bad")
    broken["spec"]["template"]["spec"]["containers"][0].update(change)
    applied = time.monotonic()
    done = kubectl.apply(broken, check=False)
    if done.returncode != 0:  # the schema caught it: as good, the API server refused the input itself
        assert refusal in done.stderr, done.stderr
        return
    try:
        found = wait_for("Stalled", stalled(kubectl, "bad"), 10, every=0.2)
    except AssertionError:
        raise AssertionError(f"no Stalled condition 10s after applying a template the API server refuses; "
                             f"status: {kubectl.status('bad')}") from None
    print(f"Stalled after {time.monotonic() - applied:.1f}s: {found['message']}")
    assert refusal in found["message"], f"the Stalled message lacks the API server's words: {found['message']}"
    assert found["observedGeneration"] == kubectl.get("releases.sluice.dev", "bad")["metadata"]["generation"]  # type: ignore[index]
    time.sleep(3)
    status = kubectl.status("bad")
    assert status["stableVersion"] == "1.0.0" and status.get("canaryWeight", 0) == 0, status
    assert route_weights(kubectl, "bad").get("bad-canary", 0) == 0
    assert image_of(kubectl, "bad") == "example.com/bad:1.0.0"
    assert kubectl.get("deployment", "bad")["status"].get("readyReplicas") == 4  # type: ignore[index]
    assert not [p for p in live_pods(kubectl, "bad") if p["metadata"]["labels"].get("app.kubernetes.io/version")
                == "1.1.0"], "pods of the refused version were started"


# Item 21: Stalled mid-way takes the canary's traffic away, and gives it back. --------------

def test_a_rollout_stalled_mid_way_serves_nothing_from_the_canary_until_fixed(
        kubectl: Kubectl, operator: Operator, prometheus_url: str) -> None:
    """Given a canary at 50% on a route, judged with a bearer token from a Secret, when the
    Secret is deleted mid-analysis, then the Release is Stalled and the canary's weight goes to
    0 with its pods kept warm; when the Secret is back, 50% again and the rollout completes."""
    body = policy("fast", [{"setWeight": 50}, {"analysis": {}}, {"setWeight": 100}], prometheus_url,
                  analysis={"count": 6, "interval": "2s"})
    body["spec"]["analysis"]["prometheus"]["bearerTokenSecretRef"] = {"name": "prom-token", "key": "token"}
    kubectl.apply([secret("prom-token", "token", "s3cret"), body, http_route("sea", "sea")])
    deploy_first(kubectl, "sea", route="sea", replicas=2)
    kubectl.apply(release("sea", "1.1.0", route="sea", replicas=2))
    wait_for("the analysis step at 50%", lambda: kubectl.status("sea").get("currentStep") == 1 and
             route_weights(kubectl, "sea").get("sea-canary") == 50, 60)
    kubectl.run("delete", "secret", "prom-token")
    found = wait_for("Stalled on the missing Secret", stalled(kubectl, "sea"), 20)
    assert "prom-token" in found["message"], found["message"]
    try:
        wait_for("the canary's route weight at 0", lambda: route_weights(kubectl, "sea").get("sea-canary") == 0, 5)
    except AssertionError:
        raise AssertionError(f"Stalled ({found['message']}), yet the route still gives the unjudged canary "
                             f"{route_weights(kubectl, 'sea').get('sea-canary')}%") from None
    canary = kubectl.get("deployment", "sea-canary")
    assert canary and canary["spec"]["replicas"] == 1 and canary["status"].get("readyReplicas") == 1, \
        "the canary's pods are kept warm while Stalled"
    assert kubectl.status("sea")["phase"] not in ("RolledBack", "Failed")
    kubectl.apply(secret("prom-token", "token", "s3cret"))
    try:
        wait_for("the route back at 50%", lambda: route_weights(kubectl, "sea").get("sea-canary") == 50, 40)
    except AssertionError:
        raise AssertionError(f"the Secret is back, yet the canary's weight stays "
                             f"{route_weights(kubectl, 'sea').get('sea-canary')}%; status: "
                             f"{kubectl.status('sea').get('message')}") from None
    assert not stalled(kubectl, "sea")()
    status = wait_for("1.1.0 promoted", phase(kubectl, "sea", "Succeeded"), 90)
    assert status["stableVersion"] == "1.1.0"


# Item 23: names never collide. --------------------------------------------------------------

@pytest.mark.parametrize("first", ["x", "x-canary"])
def test_releases_x_and_x_canary_refuse_to_share_objects_or_pods(
        kubectl: Kubectl, operator: Operator, first: str) -> None:
    """Given Releases x and x-canary, applied in either order, then each serves only its own pods
    (replica-ratio routing gives x no Service x-canary); when x rolls out, it needs Deployment
    x-canary, which is the other Release's: x is Stalled with reason NameConflict naming it, keeps
    serving its stable version, and x-canary keeps its objects."""
    second = "x-canary" if first == "x" else "x"
    kubectl.apply(release(first, "1.0.0", policy=None, replicas=2))
    wait_for(f"{first} stable", phase(kubectl, first, "Succeeded"), 60)
    kubectl.apply(release(second, "1.0.0", policy=None, replicas=2))
    wait_for(f"{second} stable", phase(kubectl, second, "Succeeded"), 60)
    kubectl.apply(release("x", "1.1.0", policy=None, replicas=2))
    try:
        found = wait_for("x Stalled", stalled(kubectl, "x"), 20)
    except AssertionError:
        raise AssertionError(f"x was not Stalled: {kubectl.status('x')}; x-canary: "
                             f"{kubectl.status('x-canary')}") from None
    assert found["reason"] == "NameConflict", found
    assert "Deployment x-canary already exists and belongs to Release x-canary" in found["message"], found["message"]
    time.sleep(3)
    assert kubectl.status("x")["stableVersion"] == "1.0.0"
    status = kubectl.status("x-canary")
    assert status["phase"] == "Succeeded" and condition(kubectl, "x-canary", "Ready")["status"] == "True", status  # type: ignore[index]
    owners: dict[str, str] = {}
    for kind in ("service", "deployment"):
        for item in json.loads(kubectl.run("get", kind, "-o", "json").stdout)["items"]:
            refs = [r["name"] for r in item["metadata"].get("ownerReferences") or [] if r["kind"] == "Release"]
            assert len(refs) == 1, f"{kind} {item['metadata']['name']} owned by {refs}"
            owners[f"{kind}/{item['metadata']['name']}"] = refs[0]
            if kind == "service":
                assert item["spec"]["selector"]["app.kubernetes.io/name"] == refs[0], \
                    f"Service {item['metadata']['name']} of {refs[0]} selects {item['spec']['selector']}"
    assert owners["service/x-canary"] == "x-canary" and owners["deployment/x-canary"] == "x-canary", owners
    pod_owner = {p["metadata"]["name"]: p["metadata"]["labels"]["app.kubernetes.io/name"]
                 for p in json.loads(kubectl.run("get", "pods", "-o", "json").stdout)["items"]}
    slices = json.loads(kubectl.run("get", "endpointslices", "-o", "json").stdout)["items"]
    for piece in slices:
        service = piece["metadata"]["labels"].get("kubernetes.io/service-name", "")
        for endpoint in piece.get("endpoints") or []:
            pod = (endpoint.get("targetRef") or {}).get("name", "")
            assert pod_owner.get(pod) == owners.get(f"service/{service}"), \
                f"Service {service} (of {owners.get(f'service/{service}')}) lists pod {pod} of {pod_owner.get(pod)}"

"""What Sluice promises, checked on random histories of one Release (issue 7, "The test that finds
the next one").

Hypothesis drives tests/unit/model.py, a cluster, a clock and a Prometheus played by the test
around the real planner and the real judge, through random histories: pods becoming Ready and
un-Ready, measurements that are good, bad, empty, NaN, ±Inf, errors or slow, the clock jumping,
policy edits mid-rollout, new versions and the stable one re-applied, promote / abort / retry /
pause / resume, and passes that crash between their status write and their act. After every
pass the promises I1..I10 below are checked; I5 is checked whenever nothing new happens for long
enough. A violation prints the shortest history Hypothesis found.

    make test-unit                     # a fixed set of examples (derandomized), as CI runs it
    make fuzz                          # a long soak: FUZZ_EXAMPLES=100000, prints the count
    pytest tests/unit/test_model.py --hypothesis-seed=N   # explores with seed N (reproducible)
    MODEL_CHECK=I2,I3 pytest ...       # only these promises, to look for the others' next failure
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule, run_state_machine_as_test

from sluice.analysis import cel
from sluice.api.durations import parse_duration
from sluice.api.models import Metric, OnFailure, Phase, ReleaseSpec, ReleaseStatus, RolloutPolicySpec, Verdict
from sluice.plan import bake as plan_bake
from sluice.plan import hooks as plan_hooks
from sluice.plan import reasons
from sluice.plan.bluegreen import POST, PRE, SWITCH, WARM, step_names
from sluice.plan.rolling import step_names as rolling_step_names
from tests.unit.model import ANSWERS, VALUES, Cluster, Measured, Model, Pass, missing, version_of

# --- running it ----------------------------------------------------------------------------------

FUZZ = "FUZZ_EXAMPLES" in os.environ
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
SEEDED = any(arg.startswith("--hypothesis-seed") for arg in sys.argv)
SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=int(os.environ.get("MODEL_STEPS", "50")),
    deadline=None,
    derandomize=not (FUZZ or SEEDED),  # CI runs the same examples every time
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    print_blob=True,
)
CHECKED = {name.strip() for name in os.environ.get("MODEL_CHECK", "I1,I1b,I2,I3,I4,I5,I6,I7,I8,I9,I10").split(",")}
TICK = 5.0  # seconds between passes while nothing new happens (the operator's POLL)
RUNS = {"examples": 0, "passes": 0}  # and how often the interesting things happened (coverage)
SEEN: dict[str, int] = {}
PROGRESS = 1000  # a soak prints its count every PROGRESS examples
STARTED = [time.monotonic()]


def seen(what: str) -> None:
    SEEN[what] = SEEN.get(what, 0) + 1


JUDGED = (Verdict.SUCCESSFUL, Verdict.FAILED, Verdict.INCONCLUSIVE)


class Broken(AssertionError):
    """A promise Sluice did not keep."""


def promise(name: str, kept: bool, why: str, world: SluiceLoop) -> None:
    if name in CHECKED and not kept:
        raise Broken(f"{name}: {why}\n  status: {world.model.status.phase} step {world.model.status.current_step}: "
                     f"{world.model.status.message}\n  cluster: {world.model.cluster.describe()}")


# --- the Releases and policies it tries ------------------------------------------------------------

METRIC_NAMES = ("error-rate", "latency")
DURATIONS = ("20s", "45s")


# The strategies are built once: a strategy made afresh inside every draw (a new lambda, an unhashable
# list argument) is analysed again by Hypothesis each time, which cost more than the pass it fed.
CHOSEN_METRICS = st.sampled_from([METRIC_NAMES[:1], METRIC_NAMES])
FAILURE_LIMITS = st.integers(0, 1)
ERROR_LIMITS = st.integers(1, 3)
NO_DATA = st.sampled_from(["inconclusive", "hold", "fail"])
KINDS = st.sampled_from(["canary", "canary", "canary", "blueGreen", "rolling"])
STARTING_STEPS = st.integers(0, 2)
SCALE_DOWN_DELAYS = st.sampled_from(DURATIONS)
INTERVALS = st.sampled_from(["10s", "20s"])
COUNTS = st.integers(1, 3)
DEADLINES = st.sampled_from(["60s", "120s"])
ON_FAILURE = st.sampled_from(["rollback", "rollback", "pause"])
# A third of the policies bake after the last step, on every metric or on the first one only.
BAKES = st.sampled_from([None, None, "20s", "45s"])
# Most metrics carry no tripwire; "result > 0.3" trips on a bad answer and +Inf, "result > 1.0" on +Inf only.
ABORTS = st.sampled_from([None, None, "result > 0.3", "result > 1.0"])


def _step_strategy(names: tuple[str, ...]) -> st.SearchStrategy[list[dict[str, Any]]]:
    step = st.one_of(
        st.builds(lambda w: {"setWeight": w}, st.sampled_from([0, 10, 25, 50, 80, 100])),
        st.builds(lambda d: {"pause": {"duration": d} if d else {}}, st.sampled_from([None, *DURATIONS])),
        st.builds(lambda m: {"analysis": {"metrics": m} if m else {}},
                  st.sampled_from([None, *[[n] for n in names]])),
    )
    return st.lists(step, min_size=1, max_size=6)


STEP_LISTS = {names: _step_strategy(names) for names in (METRIC_NAMES[:1], METRIC_NAMES)}


@st.composite
def metrics(draw: Any) -> list[dict[str, Any]]:
    chosen = draw(CHOSEN_METRICS)
    out = []
    for name in chosen:
        metric: dict[str, Any] = {
            "name": name, "query": f"{name}{{version=\"{{{{version}}}}\"}}", "successCondition": "result < 0.05",
            "failureLimit": draw(FAILURE_LIMITS), "consecutiveErrorLimit": draw(ERROR_LIMITS),
            "noData": draw(NO_DATA),
        }
        if name == "latency":
            metric["failureCondition"] = "result >= 0.2"  # between the two: Inconclusive
        abort = draw(ABORTS)
        if abort:
            metric["abortCondition"] = abort
        out.append(metric)
    return out


def canary_steps(names: list[str]) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Random canary steps whose analysis steps name metrics of `names` (one of METRIC_NAMES' prefixes)."""
    return STEP_LISTS[tuple(names)]


METRICS = metrics()


@st.composite
def policies(draw: Any) -> dict[str, Any]:
    measured = draw(METRICS)
    names = [m["name"] for m in measured]
    kind = draw(KINDS)
    if kind == "canary":
        strategy: dict[str, Any] = {"canary": {"steps": draw(canary_steps(names))}}
        if draw(st.booleans()):
            strategy["canary"]["backgroundAnalysis"] = {"startingStep": draw(STARTING_STEPS)}
    elif kind == "blueGreen":
        strategy = {"blueGreen": {
            "autoPromotion": draw(st.booleans()), "prePromotionAnalysis": draw(st.booleans()),
            "postPromotionAnalysis": draw(st.booleans()), "scaleDownDelay": draw(SCALE_DOWN_DELAYS),
        }}
    else:
        strategy = {"rolling": {"postAnalysis": draw(st.booleans())}}
    body = {
        "strategy": strategy,
        "analysis": {"interval": draw(INTERVALS), "count": draw(COUNTS), "metrics": measured},
        "progressDeadline": draw(DEADLINES),
        "onFailure": draw(ON_FAILURE),
    }
    duration = draw(BAKES)
    if duration:
        body["bake"] = {"duration": duration, **({"metrics": names[:1]} if draw(st.booleans()) else {})}
    return body


def _hook(name: str) -> dict[str, Any]:
    return {"name": name, "template": {"spec": {"containers": [{"name": name, "image": "tools:1"}]}}}


HOOKS = {"preRollout": [_hook("backup"), _hook("migrate")], "postPromotion": [_hook("smoke")],
         "postRollback": [_hook("restore")]}


def release(version: str, replicas: int, gateway: bool, hooks: bool = False) -> ReleaseSpec:
    return ReleaseSpec.model_validate({
        "version": version, "replicas": replicas, "policyRef": {"name": "policy"},
        "template": {"spec": {"containers": [{"name": "app", "image": f"example.com/app:{version}"}]}},
        **({"trafficRouting": {"gatewayAPI": {"httpRoute": "route"}}} if gateway else {}),
        **({"hooks": HOOKS} if hooks else {}),
    })


# --- what the test remembers about each rollout, to judge the promises -----------------------------


@dataclasses.dataclass
class Ledger:
    """The measurements fed into one analysis run (a run restarts with its step)."""

    run_started_at: str
    results: dict[str, list[Measured]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Rollout:
    candidate: str
    policy: RolloutPolicySpec  # the live policy when the rollout started
    runs: dict[int, Ledger] = dataclasses.field(default_factory=dict)  # by step index
    background: Ledger | None = None
    promoted_by_user: set[int] = dataclasses.field(default_factory=set)  # steps a person promoted past
    background_waived: bool = False
    full_since: datetime | None = None  # I8: since when every pass decided all traffic on the candidate


def key(status: ReleaseStatus) -> tuple[str | None, str | None]:
    """A rollout's identity: its candidate and its id (new for every rollout, a retry too; fixed
    while it waits for its gates, whose end starts its clock again)."""
    return status.candidate_hash, status.rollout_id or status.rollout_started_at


def analysis_steps(policy: RolloutPolicySpec) -> dict[int, list[str] | None]:
    """Index -> metric names (None: all) of every analysis step the policy walks."""
    strategy = policy.strategy
    if strategy.canary:
        return {i: s.analysis.metrics for i, s in enumerate(strategy.canary.steps) if s.analysis is not None}
    if strategy.blue_green:
        return {i: None for i, n in enumerate(step_names(strategy.blue_green, policy.bake)) if n in (PRE, POST)}
    assert strategy.rolling is not None
    return {1: None} if strategy.rolling.post_analysis else {}


def bake_index(policy: RolloutPolicySpec) -> int | None:
    """The index of the policy's bake step, None without a bake."""
    if policy.bake is None:
        return None
    strategy = policy.strategy
    if strategy.canary:
        return len(strategy.canary.steps)
    names = step_names(strategy.blue_green, policy.bake) if strategy.blue_green else \
        rolling_step_names(strategy.rolling, policy.bake)  # type: ignore[arg-type]
    return names.index(plan_bake.name(policy.bake))


def step_time(policy: RolloutPolicySpec, index: int) -> float:
    """How long step `index` takes by itself when all goes well: a pause's duration, an analysis's
    count x interval, blue-green's switch delay or scaleDownDelay; 0 for the rest."""
    spec = policy.analysis
    measuring = spec.count * parse_duration(spec.interval)
    if policy.bake is not None and index == bake_index(policy):
        # its duration, then a last look, which errors (consecutiveErrorLimit <= 3) or a failure within
        # failureLimit may put off by an interval each
        return parse_duration(policy.bake.duration) + 3 * parse_duration(spec.interval)
    strategy = policy.strategy
    if strategy.canary:
        steps = strategy.canary.steps
        if index >= len(steps):
            return 0.0
        step = steps[index]
        if step.pause is not None:
            return parse_duration(step.pause.duration) if step.pause.duration else 0.0
        return measuring if step.analysis is not None else 0.0
    if strategy.blue_green:
        bg = strategy.blue_green
        names = step_names(bg, policy.bake)
        name = names[index] if index < len(names) else ""
        return {PRE: measuring, POST: measuring, WARM: parse_duration(bg.scale_down_delay),
                SWITCH: parse_duration(bg.auto_promotion_delay) if bg.auto_promotion_delay else 0.0}.get(name, 0.0)
    return measuring if index == 1 else 0.0


def ended(model: Model) -> bool:
    """Where a rollout may rest: Succeeded (the desired version is the stable one), RolledBack,
    Failed, or Paused for a person (promote, resume, retry, abort)."""
    status = model.status
    if status.phase == Phase.SUCCEEDED:
        return status.stable_hash == model.desired
    return status.phase in (Phase.ROLLED_BACK, Phase.FAILED, Phase.PAUSED)


# --- the machine ---------------------------------------------------------------------------------


class SluiceLoop(RuleBasedStateMachine):
    model: Model

    # ----- the start: a Release whose first version is stable -----

    @initialize(policy=policies(), replicas=st.integers(1, 4), gateway=st.booleans(), hooks=st.booleans())
    def first_version_is_stable(self, policy: dict[str, Any], replicas: int, gateway: bool,
                                hooks: bool = False) -> None:
        RUNS["examples"] += 1
        if FUZZ and RUNS["examples"] % PROGRESS == 0:  # a long soak says how far it got
            took = time.monotonic() - STARTED[0]
            print(f"model: {RUNS['examples']} examples so far ({RUNS['passes']} passes) in {took:.0f}s "
                  f"({1000 * took / RUNS['examples']:.1f} ms per example)", file=sys.stderr, flush=True)
        self.model = Model(spec=release("1.0.0", replicas, gateway, hooks),
                           policy=RolloutPolicySpec.model_validate(policy), gateway=gateway)
        self.rollouts: dict[tuple[str | None, str | None], Rollout] = {}
        self.rolled_back: str | None = None  # I4: the candidate a decided rollback took traffic from
        self.next_minor = 1
        self.healthy = {"stable": True, "canary": True}  # a healthy track's new pods come up as time passes
        for _ in range(20):
            self.kubelet()
            self.model.job_finishes(True)  # the first version's hooks succeed
            self.reconcile()
            if self.model.status.phase == Phase.SUCCEEDED and self.model.status.stable_hash:
                break
            self.model.later(TICK)
        promise("I5", self.model.status.phase == Phase.SUCCEEDED,
                "the first version never became stable with every pod Ready", self)
        self.new_version()  # most histories worth trying have a rollout in them

    # ----- passes of the operator -----

    # A pass may crash: "act lost after the status write" (the operator dies between the two; it
    # restarts and passes again), or "status write lost" (a Conflict, or a death around the write:
    # the next pass starts from the status as it was). See model.Model.reconcile.
    FAULTS = st.sampled_from(["none", "none", "act lost after the status write", "status write lost"])

    @rule(fault=FAULTS)
    def reconcile_now(self, fault: str) -> None:
        self.reconcile(fault)

    @rule(seconds=st.sampled_from([1, 5, 10, 30, 60, 200]), fault=FAULTS)
    def time_passes(self, seconds: int, fault: str) -> None:
        """Time passes (the pods of healthy tracks start meanwhile), then a pass."""
        self.model.later(seconds)
        self.kubelet()
        self.reconcile(fault)

    @rule(seconds=st.sampled_from([3, 10, 40]), fault=FAULTS)
    def slow_measurement(self, seconds: int, fault: str) -> None:
        """The pass's queries take `seconds`: the pass decides at its start time, acts later."""
        self.model.metrics.slow = seconds
        self.reconcile(fault)

    # ----- the cluster -----

    @rule(track=st.sampled_from(["stable", "canary"]), count=st.sampled_from([None, 1]))
    def pods_stop_being_ready(self, track: str, count: int | None) -> None:
        """One pod flaps (it comes back when time passes), or every pod of the track goes down and
        stays down until the track recovers."""
        self.model.kubelet(track, count, ready=False)
        if count is None:
            self.healthy[track] = False

    @rule(track=st.sampled_from(["stable", "canary"]), count=st.sampled_from([None, 1]))
    def pods_become_ready(self, track: str, count: int | None) -> None:
        """One pod of a track comes up, or the whole track recovers."""
        self.model.kubelet(track, count, ready=True)
        if count is None:
            self.healthy[track] = True

    # ----- Prometheus -----

    @rule(metric=st.sampled_from(METRIC_NAMES), answer=st.sampled_from(ANSWERS))
    def prometheus_answers(self, metric: str, answer: str) -> None:
        self.model.metrics.answers[metric] = answer

    # ----- people -----

    @rule()
    def new_version(self) -> None:
        self.next_minor += 1
        self.model.deploy(f"1.{self.next_minor}.0")
        self.rolled_back = None  # a spec change: a new rollout may send traffic again

    @precondition(lambda self: self.model.status.stable_version not in (None, self.model.spec.version))
    @rule()
    def stable_version_reapplied(self) -> None:
        assert self.model.status.stable_version
        self.model.deploy(self.model.status.stable_version)
        self.rolled_back = None

    @rule(action=st.sampled_from(["promote", "promote-full", "abort", "retry", "pause", "resume"]))
    def user_request(self, action: str) -> None:
        if action == "retry":
            self.rolled_back = None
        self.model.request(action)

    # ----- policy edits mid-rollout -----

    def edit(self, change: Any) -> None:
        body = self.model.policy.model_dump(by_alias=True, exclude_none=True, mode="json")
        change(body)
        self.model.edit_policy(RolloutPolicySpec.model_validate(body))

    def canary_policy(self) -> bool:
        return self.model.policy.strategy.canary is not None

    @precondition(lambda self: self.canary_policy() and len(self.model.policy.strategy.canary.steps) > 1)
    @rule(keep=st.integers(1, 5))
    def policy_steps_trimmed(self, keep: int) -> None:
        self.edit(lambda p: p["strategy"]["canary"].update(steps=p["strategy"]["canary"]["steps"][:keep]))

    @precondition(lambda self: self.canary_policy() and len(self.model.policy.strategy.canary.steps) < 10)
    @rule(steps=canary_steps(list(METRIC_NAMES[:1])))
    def policy_steps_extended(self, steps: list[dict[str, Any]]) -> None:
        self.edit(lambda p: p["strategy"]["canary"]["steps"].extend(steps))

    @precondition(lambda self: self.canary_policy() and any(
        s.analysis is not None for s in self.model.policy.strategy.canary.steps)
        and len(self.model.policy.strategy.canary.steps) > 1)
    @rule()
    def policy_analysis_step_removed(self) -> None:
        def drop(p: dict[str, Any]) -> None:
            steps = p["strategy"]["canary"]["steps"]
            steps.remove(next(s for s in steps if "analysis" in s))
        self.edit(drop)

    @rule(duration=st.sampled_from(["20s", "45s"]))
    def policy_bake_toggled(self, duration: str) -> None:
        """A bake added to the live policy, or taken out of it: the rollout under way keeps its own."""
        self.edit(lambda p: p.pop("bake") if "bake" in p else p.update(bake={"duration": duration}))

    @precondition(lambda self: self.model.policy.strategy.blue_green is not None)
    @rule()
    def policy_pre_promotion_analysis_toggled(self) -> None:
        self.edit(lambda p: p["strategy"]["blueGreen"].update(
            prePromotionAnalysis=not p["strategy"]["blueGreen"].get("prePromotionAnalysis", False)))

    # ----- I5: nothing new happens for long enough -----

    @precondition(lambda self: "active" in self.model.cluster.jobs.values())
    @rule(succeeded=st.booleans())
    def hook_job_finishes(self, succeeded: bool) -> None:
        """The oldest running hook Job ends: its pod exited 0, or did not."""
        self.model.job_finishes(succeeded)
        seen("hook Jobs that succeeded" if succeeded else "hook Jobs that failed")

    @rule(pods_come_up=st.booleans(), answer=st.sampled_from(ANSWERS))
    def nothing_new_happens(self, pods_come_up: bool, answer: str) -> None:
        """No spec change, no request, no policy edit: the cluster heals (every track healthy) or
        stays as it is, Prometheus keeps one answer, and the operator passes every TICK seconds.
        I5: each step ends (the rollout moves to another step, or ends) within the step's own
        duration + progressDeadline + one interval; a rollout ends Succeeded, RolledBack, Failed,
        or Paused for a person."""
        model = self.model
        for name in METRIC_NAMES:
            model.metrics.answers[name] = answer
        where, since, ahead = None, model.now, 0
        for _ in range(2000):
            if pods_come_up:
                self.healthy = {"stable": True, "canary": True}
                model.job_finishes(True)
            self.kubelet()
            self.reconcile()
            status = model.status
            if ended(model):
                return
            here = (status.candidate_hash, status.current_step, status.phase)
            if here != where:
                where, since = here, model.now
                # hook Jobs run one at a time: those unfinished now (an earlier rollout's too) and
                # this rollout's own preRollout hooks may each run to their timeout first
                pre = len(model.spec.hooks.pre_rollout) if model.spec.hooks else 0
                ahead = sum(run.state in ("Pending", "Running") for run in status.hooks) + pre
            index = status.current_step or 0
            running = model.running_policy(status)
            deadline = max(parse_duration(running.progress_deadline), parse_duration(model.policy.progress_deadline))
            # a hanging hook Job (the last rollout's post hook, then this one's, one at a time) is
            # failed at its timeout (progressDeadline) and a grace period each
            hooks = ahead * (deadline + plan_hooks.GRACE + TICK) if model.spec.hooks and index == 0 else 0.0
            bound = (max(step_time(running, index), step_time(model.policy, index))
                     + parse_duration(running.progress_deadline) + parse_duration(running.analysis.interval)
                     + 2 * TICK + hooks)
            waited = (model.now - since).total_seconds()
            promise("I5", waited <= bound,
                    f"step {index} is still {status.phase} after {waited:g}s with nothing new "
                    f"(bound {bound:g}s = the step's own time + progressDeadline + interval + 2 passes)", self)
            if "I5" not in CHECKED and waited > bound:
                return
            model.later(TICK)
        promise("I5", False, "2000 passes with nothing new and the rollout never ended", self)

    # ----- one pass, and the promises checked after it -----

    def kubelet(self) -> None:
        """Every pod of a healthy track is Ready by now."""
        for track, healthy in self.healthy.items():
            if healthy:
                self.model.kubelet(track, None, ready=True)

    def reconcile(self, fault: Any = "none") -> None:
        RUNS["passes"] += 1
        armed = self.rolled_back
        kept = self.ledger_copy() if fault == "status write lost" else None
        done = self.model.reconcile(fault)
        self.remember(done)
        self.check(done, armed)
        if not done.persisted and kept is not None:
            # The pass is judged on what it decided, but its write was lost: the stored status does not
            # know of its measurements, of a rollout it started, of a run it restarted. The ledger
            # forgets them too (the next pass measures again, starts the rollout under the policy as
            # it is then, takes a pending request again).
            self.rollouts = kept

    def ledger_copy(self) -> dict[tuple[str | None, str | None], Rollout]:
        def ledger(old: Ledger) -> Ledger:
            return Ledger(old.run_started_at, {name: list(got) for name, got in old.results.items()})
        return {k: Rollout(r.candidate, r.policy, {i: ledger(run) for i, run in r.runs.items()},
                           ledger(r.background) if r.background else None, set(r.promoted_by_user),
                           r.background_waived, r.full_since)
                for k, r in self.rollouts.items()}

    def rollout_of(self, status: ReleaseStatus) -> Rollout | None:
        if status.candidate_hash is None:
            return None
        found = self.rollouts.get(key(status))
        if found is None:  # a rollout starts (or restarts, on retry) under the policy as it is now
            found = self.rollouts[key(status)] = Rollout(status.candidate_hash, self.model.policy)
        return found

    def remember(self, done: Pass) -> None:
        """Count the measurements into the runs that asked for them (the test's own ledger)."""
        first = done.first.status
        observed = done.observed
        if (observed.request is not None and observed.request.action == "retry"
                and observed.phase in (Phase.ROLLED_BACK, Phase.FAILED)
                and first.candidate_hash is not None and first.request is None):
            # a retry is a new rollout under the policy as it is now, even when it starts in the
            # same second as the attempt it replaces (same key): it gets a fresh ledger
            self.rollouts[key(first)] = Rollout(first.candidate_hash, self.model.policy)
        rollout = self.rollout_of(first)
        self.rollout_of(done.decided.status)
        request = done.observed.request.action if done.observed.request else None
        if rollout is not None and request == "retry" and observed.phase == Phase.PAUSED and first.request is None:
            # a retry of a rollout paused on failure restarts its step's runs: fresh ledgers, even when
            # the new runs start in the same second as the ones they replace
            if first.analysis_run is not None:
                rollout.runs.pop(first.analysis_run.step, None)
            rollout.background = None
        if request in ("promote", "promote-full"):
            # a person promoted this rollout past the step it stood at when the pass took the request;
            # a promotion that ends the rollout in the same pass (first plan has no candidate) is the
            # observed rollout's
            promoted, at = rollout, 0
            if key(done.observed) == key(first):
                at = done.observed.current_step or 0
            elif first.candidate_hash is None and done.observed.candidate_hash is not None:
                promoted, at = self.rollout_of(done.observed), done.observed.current_step or 0
            if promoted is not None:
                promoted.promoted_by_user |= {at} if request == "promote" else set(range(at, 1000))
                promoted.background_waived = True
        if rollout is None or not done.measured:
            return
        step_run, background_run = first.analysis_run, first.background_run
        for measured in done.measured:
            if measured.metric in done.first.measure_step and step_run is not None:
                ledger = rollout.runs.get(step_run.step)
                if ledger is None or ledger.run_started_at != step_run.started_at:
                    ledger = rollout.runs[step_run.step] = Ledger(step_run.started_at)
                ledger.results.setdefault(measured.metric, []).append(measured)
            if measured.metric in done.first.measure_background and background_run is not None:
                if rollout.background is None or rollout.background.run_started_at != background_run.started_at:
                    rollout.background = Ledger(background_run.started_at)
                rollout.background.results.setdefault(measured.metric, []).append(measured)

    def check(self, done: Pass, armed: str | None) -> None:
        before, after = done.observed, done.decided.status
        request = before.request.action if before.request else None
        promoted = before.stable_hash is not None and after.stable_hash not in (None, before.stable_hash)
        if promoted:
            seen("promotions")
            self.i1_promoted_only_after_every_analysis(done, after.stable_hash or "")
        if after.phase == Phase.ROLLED_BACK and before.phase != Phase.ROLLED_BACK:
            seen("rollbacks" if done.fault == "none" else f"rollbacks decided in a pass whose {done.fault}")
            baking = bake_index(self.model.running_policy(before))
            if baking is not None and before.current_step == baking and before.analysis_run is not None \
                    and before.analysis_run.step == baking:
                seen("rollbacks during a bake")
        if done.measured:
            seen("passes that measured")
        self.i6_no_data_never_promotes(done, promoted, request)
        self.i7_abort_condition_ends_the_rollout_at_once(done, promoted)
        if promoted:
            self.i8_never_succeeded_before_the_bake_ends(done, after.stable_hash or "")
        if done.persisted:
            decided = done.before.copy()  # what the pass decided the cluster should be, its act lost or not
            self.model.act(done.decided, decided)
            self.track_full_traffic(done, decided)
            self.i9_the_stable_stays_warm_through_a_bake(done, decided)
        if done.acted:
            self.i10_no_candidate_before_its_pre_rollout_hooks(done)
            if armed is not None:
                self.i4_rollback_sticks(done, armed)
            self.i2_traffic_only_to_ready_candidate(done.after)
            self.i3_service_never_on_nothing(done.before, done.after)
        # I4 arms once a pass decided a rollback and it took effect (written, or acted on)
        if done.persisted or done.acted:
            abandoned = (before.candidate_hash is not None and before.phase in (Phase.PROGRESSING, Phase.PAUSED,
                                                                               Phase.PENDING)
                         and self.model.desired == before.stable_hash)
            if after.phase == Phase.ROLLED_BACK or abandoned:
                self.rolled_back = before.candidate_hash or after.candidate_hash or self.rolled_back

    # I1 ------------------------------------------------------------------------------------------
    def i1_promoted_only_after_every_analysis(self, done: Pass, promoted: str) -> None:
        """I1. Never Succeeded unless every analysis step of the policy the rollout started with ran
        its measurements (count judged ones of every metric it names) and none crossed its limits
        (failureLimit, consecutiveErrorLimit, none Inconclusive). Steps a person promoted past are
        exempt. I1b, its clause for background analysis (SEMANTICS 8): every metric has >= 1
        Successful measurement and none crossed its limits, unless a person promoted."""
        rollout = self.rollout_of(done.observed) or self.rollout_of(done.first.status)
        promise("I1", rollout is not None and rollout.candidate == promoted,
                f"{promoted} became stable without a rollout of it", self)
        if rollout is None:
            return
        policy = rollout.policy
        by_name = {m.name: m for m in policy.analysis.metrics}
        for index, names in analysis_steps(policy).items():
            if index in rollout.promoted_by_user:
                continue
            wanted = names or list(by_name)
            promise("I1", bool(wanted) and all(n in by_name for n in wanted),
                    f"analysis step {index} names metrics {wanted} the policy does not define", self)
            ledger = rollout.runs.get(index)
            for name in wanted:
                results = ledger.results.get(name, []) if ledger else []
                self.within_limits(f"analysis step {index}", by_name[name], results, policy.analysis.count)
        canary = policy.strategy.canary
        if canary and canary.background_analysis is not None and not rollout.background_waived:
            for metric in policy.analysis.metrics:
                results = rollout.background.results.get(metric.name, []) if rollout.background else []
                self.within_limits("background analysis", metric, results, 1, successes=1, name="I1b")

    def within_limits(self, where: str, metric: Metric, results: list[Measured], count: int,
                      successes: int = 0, name: str = "I1") -> None:
        # SEMANTICS 7: missing data before any data was seen in the run is Waiting, neither judged nor
        # Inconclusive (noData applies only after data was seen); an error is no data either way
        verdicts, data_seen = [], False
        for m in results:
            verdict = m.result.verdict
            if m.result.missing and not data_seen and verdict != Verdict.ERROR:
                verdict = Verdict.WAITING
            data_seen = data_seen or (verdict in JUDGED and not m.result.missing)
            verdicts.append(verdict)
        judged = sum(v in JUDGED for v in verdicts)
        failed = verdicts.count(Verdict.FAILED)
        streak = longest = 0
        for verdict in verdicts:
            streak = streak + 1 if verdict == Verdict.ERROR else 0
            longest = max(longest, streak)
        answers = ",".join(m.answer for m in results) or "none"
        promise(name, judged >= count and verdicts.count(Verdict.SUCCESSFUL) >= successes,
                f"promoted with {where}: {metric.name} judged {judged} of count {count} (answers: {answers})", self)
        promise(name, failed <= metric.failure_limit,
                f"promoted with {where}: {metric.name} failed {failed} > failureLimit {metric.failure_limit}", self)
        promise(name, longest < metric.consecutive_error_limit,
                f"promoted with {where}: {metric.name} had {longest} errors in a row "
                f"(consecutiveErrorLimit {metric.consecutive_error_limit})", self)
        promise(name, Verdict.INCONCLUSIVE not in verdicts,
                f"promoted with {where}: {metric.name} was Inconclusive (answers: {answers})", self)

    # I2 ------------------------------------------------------------------------------------------
    def i2_traffic_only_to_ready_candidate(self, cluster: Cluster) -> None:
        """I2. The route weight or the Service selection sends traffic to the canary track only while
        it has Ready pods."""
        ready = cluster.ready("canary")
        promise("I2", not (self.model.gateway and cluster.route_weight > 0 and ready == 0),
                f"the route sends {cluster.route_weight}% to the canary, which has no Ready pod", self)
        promise("I2", not (cluster.selects == frozenset({"canary"}) and ready == 0),
                "Service <name> selects only the canary, which has no Ready pod", self)

    # I3 ------------------------------------------------------------------------------------------
    def i3_service_never_on_nothing(self, before: Cluster, after: Cluster) -> None:
        """I3. The Service <name> always has a Ready pod behind it while any version has one: a pass
        never takes its last Ready pod away (by its selector or by scaling), and never leaves it
        without Ready pods while the stable track has some it could select."""
        if after.serving() > 0:
            return
        if after.any_ready() == 0 and before.any_ready() == 0:
            return  # nothing of the Release was Ready, before or after: not Sluice's doing
        promise("I3", before.serving() == 0,
                f"this pass took the last Ready pod away from Service <name> (it had {before.serving()}); "
                f"before the pass: {before.describe()}", self)
        promise("I3", not (after.ready("stable") > 0 and "stable" not in after.selects),
                "Service <name> has no Ready pod though the stable track has Ready pods", self)

    # I4 ------------------------------------------------------------------------------------------
    def i4_rollback_sticks(self, done: Pass, candidate: str) -> None:
        """I4. After a rollback is decided (written to status, or acted on), no later pass sends more
        traffic to that candidate or scales it up, until a retry or a spec change. Traffic that found
        no Ready pod before the pass may land on it (never nothing); another version's may not."""
        gateway = self.model.gateway
        was, now = done.before.share(candidate, gateway), done.after.share(candidate, gateway)
        # It may take traffic that found no Ready pod before (never nothing), never another version's.
        rescued = max(0.0, done.after.served(gateway) - done.before.served(gateway))
        promise("I4", now <= was + rescued + 1e-9,
                f"traffic on rolled-back {candidate} rose from {was:.0f}% to {now:.0f}%", self)
        for track in ("stable", "canary"):
            old, new = done.before.track(track), done.after.track(track)
            pods_before = old.replicas if old.exists and old.template == candidate else 0
            pods_after = new.replicas if new.exists and new.template == candidate else 0
            promise("I4", pods_after <= pods_before,
                    f"rolled-back {candidate} scaled up on the {track} track: {pods_before} -> {pods_after}", self)

    # I6 ------------------------------------------------------------------------------------------
    def i6_no_data_never_promotes(self, done: Pass, promoted: bool, request: str | None) -> None:
        """I6. Missing data (an empty result or NaN) never completes an analysis step or promotes."""
        if request in ("promote", "promote-full") or not done.measured:
            return
        gaps = [m for m in done.measured if missing(m.answer)]
        if not gaps:
            return
        promise("I6", not promoted, f"promoted in a pass where {gaps[0].metric} had no data ({gaps[0].answer})", self)
        run = done.first.status.analysis_run
        step_gaps = [m for m in gaps if m.metric in done.first.measure_step]
        after = done.decided.status
        if run is not None and step_gaps and after.candidate_hash == done.first.status.candidate_hash:
            promise("I6", (after.current_step or 0) <= run.step,
                    f"analysis step {run.step} completed in a pass where {step_gaps[0].metric} had no data "
                    f"({step_gaps[0].answer})", self)


    # I8 ------------------------------------------------------------------------------------------
    def track_full_traffic(self, done: Pass, decided: Cluster) -> None:
        """Since when the passes have decided, one after another, that all traffic lands on the
        candidate's Ready pods. The clock of decide-persist-act: a pass's decision counts from its
        status write (an act lost after it is redone by the next pass)."""
        status = done.decided.status
        rollout = self.rollout_of(status)
        if rollout is None or status.candidate_hash is None:
            return
        if decided.share(status.candidate_hash, self.model.gateway) < 100 - 1e-9:
            rollout.full_since = None
        elif rollout.full_since is None:
            rollout.full_since = done.now

    def i8_never_succeeded_before_the_bake_ends(self, done: Pass, promoted: str) -> None:
        """I8. A rollout whose policy bakes is never Succeeded before the bake's duration has passed
        since the candidate took all traffic (without a break), unless a person promoted past the
        bake; and its bake measured every metric it names within limits, like an analysis run (at
        least one Successful, failureLimit and consecutiveErrorLimit kept, none Inconclusive)."""
        rollout = self.rollout_of(done.observed)
        if rollout is None or rollout.candidate != promoted or rollout.policy.bake is None:
            return
        policy = rollout.policy
        index = bake_index(policy)
        assert index is not None and policy.bake is not None
        if index in rollout.promoted_by_user:
            return
        seen("bakes that ended in a promotion")
        duration = parse_duration(policy.bake.duration)
        since = rollout.full_since
        baked = -1.0 if since is None else (done.now - since).total_seconds()
        version = version_of(promoted)
        promise("I8", baked >= duration,
                f"{version} became stable {baked:g}s after it took all traffic, before its bake of "
                f"{policy.bake.duration} ended" if since else f"{version} became stable, never at 100% before", self)
        ledger = rollout.runs.get(index)
        for metric in plan_bake.metrics(policy):
            results = ledger.results.get(metric.name, []) if ledger else []
            self.within_limits("the bake", metric, results, 1, successes=1, name="I8")

    # I9 ------------------------------------------------------------------------------------------
    def i9_the_stable_stays_warm_through_a_bake(self, done: Pass, decided: Cluster) -> None:
        """I9. While a bake is under way (the candidate judged at 100%, progressing or held for a
        person), the previous stable version keeps its Deployment at full size, so a breach puts
        traffic back on pods already there (rolling keeps nothing warm: it rolls back in place)."""
        status = done.decided.status
        policy = self.model.running_policy(status)
        index = bake_index(policy)
        run = status.analysis_run
        if index is None or policy.strategy.rolling is not None or status.phase not in (
                Phase.PROGRESSING, Phase.PAUSED) or run is None or run.step != index or status.current_step != index:
            return
        seen("passes in a bake")
        stable = decided.stable
        promise("I9", stable.exists and stable.template == status.stable_hash
                and stable.replicas == self.model.spec.replicas,
                f"during the bake the stable Deployment runs {stable.template} x{stable.replicas}, not "
                f"{status.stable_hash} x{self.model.spec.replicas}", self)

    # I10 -----------------------------------------------------------------------------------------
    def i10_no_candidate_before_its_pre_rollout_hooks(self, done: Pass) -> None:
        """I10. While a rollout's preRollout hooks have not all succeeded (a migration not yet run),
        no pass starts a pod of its candidate or gives the candidate traffic that a version had:
        no more candidate pods, no more route weight, and <name> turns to the canary track only
        if the stable track had no Ready pod to serve with."""
        status = done.decided.status
        wanted = len(self.model.spec.hooks.pre_rollout) if self.model.spec.hooks else 0
        candidate = status.candidate_hash
        if not wanted or candidate is None or status.phase not in (Phase.PENDING, Phase.PROGRESSING,
                                                                   Phase.PAUSED):
            return
        runs = [r for r in status.hooks if r.rollout == status.rollout_id and r.stage == "preRollout"]
        if len(runs) == wanted and all(r.state == "Succeeded" for r in runs):
            return
        seen("passes while preRollout hooks ran")
        before, after = done.before, done.after

        def pods(cluster: Cluster) -> int:
            return sum(p.template == candidate for track in ("stable", "canary") for p in cluster.track(track).pods)
        promise("I10", pods(after) <= pods(before),
                f"a pass started pods of {version_of(candidate)} before its preRollout hooks succeeded "
                f"({[(r.hook, r.state) for r in runs]})", self)
        promise("I10", not self.model.gateway or after.route_weight <= before.route_weight,
                f"a pass raised the route weight of {version_of(candidate)} before its preRollout hooks "
                "succeeded", self)
        turned = "canary" in after.selects and "canary" not in before.selects
        promise("I10", not (turned and before.ready("stable") > 0 and after.canary.template == candidate),
                f"<name> turned to {version_of(candidate)} before its preRollout hooks succeeded", self)

    # I7 ------------------------------------------------------------------------------------------
    def i7_abort_condition_ends_the_rollout_at_once(self, done: Pass, promoted: bool) -> None:
        """I7. A pass that counted a measurement meeting its metric's abortCondition (into the step's
        analysis run or the background one) never promotes, and the rollout ends in that same pass:
        RolledBack, or Paused for the failure when onFailure is pause; whatever failureLimit says."""
        tripped = self.tripped(done)
        if tripped is None:
            return
        seen("abortConditions met")
        after = done.decided.status
        said = f"{tripped.metric} met its abortCondition ({tripped.answer})"
        promise("I7", not promoted, f"promoted in a pass where {said}", self)
        if self.model.running_policy(done.first.status).on_failure == OnFailure.PAUSE:
            promise("I7", after.phase == Phase.PAUSED and after.pause_reason == reasons.ANALYSIS_FAILED,
                    f"{said}, onFailure pause, and the rollout is {after.phase.value} "
                    f"({after.pause_reason}), not paused for the failure", self)
        else:
            promise("I7", after.phase == Phase.ROLLED_BACK,
                    f"{said}, and the rollout is {after.phase.value}, not rolled back", self)

    def tripped(self, done: Pass) -> Measured | None:
        """The first measurement the pass counted whose value meets its metric's abortCondition
        (as CEL says; no data and errors never do)."""
        first = done.first
        metrics = {m.name: m for m in self.model.running_policy(first.status).analysis.metrics}
        for measured in done.measured:
            counted = (measured.metric in first.measure_step and first.status.analysis_run is not None) or \
                (measured.metric in first.measure_background and first.status.background_run is not None)
            value = VALUES.get(measured.answer)
            condition = metrics[measured.metric].abort_condition if measured.metric in metrics else None
            if counted and condition and value is not None and not missing(measured.answer) \
                    and cel.condition(condition).evaluate(value):
                return measured
        return None


def test_the_decision_loop_keeps_its_promises() -> None:
    started = STARTED[0] = time.monotonic()
    try:
        run_state_machine_as_test(SluiceLoop, settings=SETTINGS)
    finally:
        took = time.monotonic() - started
        print(f"\nmodel: {RUNS['examples']} examples run ({RUNS['passes']} passes) in {took:.0f}s "
              f"({1000 * took / max(RUNS['examples'], 1):.1f} ms per example), checking {sorted(CHECKED)}; "
              + ", ".join(f"{what}: {count}" for what, count in sorted(SEEN.items())))


def test_the_model_sees_what_a_person_would() -> None:
    """The model itself: a Deployment keeps an old Ready pod until a new one replaces it."""
    from tests.unit.model import Deployment, Pod
    d = Deployment(exists=True, template="h-2", replicas=2, pods=[Pod("h-1", True), Pod("h-1", True)])
    d.sync()
    assert d.ready() == 2 and d.workload().updated == 2 and d.workload().foreign == 2
    d.pods[0].ready = True
    d.sync()
    assert [p.template for p in d.pods] == ["h-2", "h-2", "h-1"] and d.ready() == 2


# --- Cases the soak found, replayed step by step (each broke a promise before its fix) ---

def _blue_green(auto: bool) -> dict[str, Any]:
    return {"strategy": {"blueGreen": {"autoPromotion": auto, "prePromotionAnalysis": False,
                                       "postPromotionAnalysis": False, "scaleDownDelay": "20s"}},
            "analysis": {"interval": "10s", "count": 1, "metrics": [{
                "name": "error-rate", "query": 'error-rate{version="{{version}}"}',
                "successCondition": "result < 0.05", "failureLimit": 0, "consecutiveErrorLimit": 1,
                "noData": "inconclusive"}]},
            "progressDeadline": "60s", "onFailure": "rollback"}


def _canary(steps: list[dict[str, Any]], background: bool = False) -> dict[str, Any]:
    """The policy of _blue_green with a canary strategy of `steps` instead (background analysis
    from the first step when `background`)."""
    policy = _blue_green(auto=False)
    policy["strategy"] = {"canary": {"steps": steps, **({"backgroundAnalysis": {"startingStep": 0}}
                                                         if background else {})}}
    return policy


def test_an_aborted_blue_green_candidate_gains_no_traffic_when_the_stable_pods_fail() -> None:
    """I4 (make fuzz, seed 606): after an abort, the stable pods went unready and the canary's
    came up; <name> was switched to the rolled-back candidate so as not to serve nothing."""
    world = SluiceLoop()
    world.first_version_is_stable(policy=_blue_green(auto=False), replicas=1, gateway=False)
    world.reconcile_now(fault="none")
    world.user_request(action="abort")
    world.pods_stop_being_ready(count=None, track="stable")
    world.slow_measurement(fault="act lost after the status write", seconds=3)
    world.nothing_new_happens(answer="good", pods_come_up=False)
    assert world.model.status.phase == Phase.ROLLED_BACK
    assert world.model.cluster.selects == frozenset({"stable"})
    world.teardown()


def test_a_blue_green_rollback_leaves_no_route_weight_for_the_next_candidate() -> None:
    """I2 (make fuzz, seed 505): a blue-green rollback that kept a candidate serving through a
    gateway wrote route weight 100; the next version's unready pods then got all the traffic."""
    world = SluiceLoop()
    world.first_version_is_stable(policy=_blue_green(auto=True), replicas=1, gateway=True)
    world.pods_stop_being_ready(count=None, track="stable")
    world.new_version()
    world.nothing_new_happens(answer="good", pods_come_up=False)
    world.new_version()
    world.pods_stop_being_ready(count=None, track="canary")
    world.time_passes(fault="none", seconds=1)
    assert world.model.status.phase == Phase.PROGRESSING
    assert world.model.cluster.route_weight == 0
    world.teardown()


def test_a_candidate_abandoned_for_the_stable_version_gains_no_traffic_when_the_stable_pods_fail() -> None:
    """I4 (make fuzz, seed 707): the stable version re-applied abandons the candidate (Succeeded,
    not RolledBack); its scale-down was lost, the stable pods went unready, and <name> was
    switched to the abandoned candidate."""
    policy = {"strategy": {"canary": {"steps": [{"setWeight": 10}]}},
              "analysis": _blue_green(auto=True)["analysis"], "progressDeadline": "60s", "onFailure": "rollback"}
    world = SluiceLoop()
    world.first_version_is_stable(policy=policy, replicas=1, gateway=True)
    world.slow_measurement(fault="none", seconds=3)
    world.stable_version_reapplied()
    world.policy_steps_extended(steps=[{"setWeight": 0}])
    world.pods_stop_being_ready(count=None, track="stable")
    world.time_passes(fault="act lost after the status write", seconds=1)
    world.reconcile_now(fault="none")
    assert world.model.status.phase == Phase.SUCCEEDED
    assert world.model.cluster.selects == frozenset({"stable"})
    world.teardown()


def test_an_analysis_step_never_completes_on_a_measurement_with_no_data() -> None:
    """I6 (make fuzz, seed 1010): latency had data, then none; noData: fail counted it as one
    failure, within failureLimit 1, and that failure was the measurement that reached `count`:
    the step completed on data Sluice did not have. Since the first measurement is taken as the
    step begins, latency's data comes in the pass that reaches the analysis step and the empty
    answer one pass sooner than in the soak's history."""
    metric = {"query": 'latency{version="{{version}}"}', "successCondition": "result < 0.05",
              "failureLimit": 1, "consecutiveErrorLimit": 1, "noData": "fail", "failureCondition": "result >= 0.2"}
    policy = {"strategy": {"canary": {"steps": [{"setWeight": 0}]}},
              "analysis": {"interval": "10s", "count": 2, "metrics": [
                  {**_blue_green(auto=True)["analysis"]["metrics"][0], "consecutiveErrorLimit": 2},
                  {"name": "latency", **metric}]},
              "progressDeadline": "60s", "onFailure": "rollback"}
    world = SluiceLoop()
    world.first_version_is_stable(policy=policy, replicas=1, gateway=False)
    world.policy_steps_extended(steps=[{"analysis": {}}])
    world.prometheus_answers(answer="good", metric="error-rate")
    world.policy_steps_trimmed(keep=4)
    world.prometheus_answers(answer="good", metric="error-rate")
    world.policy_analysis_step_removed()
    world.policy_steps_extended(steps=[{"analysis": {}}])
    world.reconcile_now(fault="none")
    world.pods_become_ready(count=None, track="stable")
    world.time_passes(fault="none", seconds=1)
    world.policy_analysis_step_removed()
    world.policy_steps_extended(steps=[{"setWeight": 0}])
    world.prometheus_answers(answer="empty", metric="latency")
    world.time_passes(fault="none", seconds=200)
    world.policy_steps_trimmed(keep=1)
    run = world.model.status.analysis_run
    assert run is not None and run.metrics["latency"].failed_no_data == 1, world.model.status.message
    world.teardown()


def test_a_promote_waiting_as_the_rollout_starts_never_wipes_a_measurement_of_that_pass() -> None:
    """I7 (found merging the tripwire): `sluice promote` sent before the rollout began waited in
    status; the pass that began it measured background analysis, which met its abortCondition,
    and the plan made after measuring applied the promote, whose step restart threw the failed
    run away: the rollout waited for background analysis instead of rolling back. A request is
    now applied by a first plan only, never on top of measurements it has not seen judged."""
    world = SluiceLoop()
    policy = _canary([{"setWeight": 0}], background=True)
    policy["analysis"]["metrics"][0]["abortCondition"] = "result > 0.3"
    world.first_version_is_stable(policy=policy, replicas=1, gateway=False)
    world.user_request(action="promote")
    world.nothing_new_happens(answer="bad", pods_come_up=False)
    assert world.model.status.phase == Phase.ROLLED_BACK
    assert any("met its abortCondition" in e for e in world.model.posted), world.model.posted
    world.teardown()


def test_a_rolled_back_pod_left_beside_the_next_candidate_keeps_the_canary_track_from_gaining_traffic() -> None:
    """I4 (make fuzz, seed 2002, after about 35,000 examples): 1.2.0 aborted, 1.3.0 applied, the
    stable pods unready. The canary track held 1.3.0's Ready pod and 1.2.0's, still Ready during
    the template change; <name> was switched to the track because the candidate had a Ready pod,
    and the rolled-back 1.2.0 got half the traffic. The track now gains traffic only while the
    candidate's pods are alone on it."""
    world = SluiceLoop()
    world.first_version_is_stable(policy=_blue_green(auto=False), replicas=2, gateway=False)
    world.reconcile_now(fault="none")
    world.new_version()
    world.user_request(action="abort")
    world.pods_become_ready(count=None, track="canary")
    world.pods_stop_being_ready(count=None, track="stable")
    world.reconcile_now(fault="none")
    world.reconcile_now(fault="none")
    world.pods_become_ready(count=1, track="canary")
    world.reconcile_now(fault="none")
    assert world.model.cluster.selects == frozenset({"stable"})
    world.teardown()


def test_a_retry_after_a_failed_pause_is_judged_on_the_measurements_after_it() -> None:
    """I1b (make fuzz, seed 3002; a defect of the model, not of Sluice): background analysis
    failed and paused the rollout (onFailure: pause); `sluice retry` restarted the runs in the
    same second, the version measured well and was promoted. The model had kept the failed
    measurement in the new run's ledger, because both runs share a start time."""
    world = SluiceLoop()
    policy = _canary([{"setWeight": 0}], background=True)
    policy["onFailure"] = "pause"
    world.first_version_is_stable(policy=policy, replicas=1, gateway=False)
    world.user_request(action="retry")
    world.nothing_new_happens(answer="bad", pods_come_up=False)
    assert world.model.status.phase == Phase.PAUSED
    world.user_request(action="retry")
    world.nothing_new_happens(answer="good", pods_come_up=False)
    assert world.model.status.phase == Phase.SUCCEEDED
    world.teardown()


def test_a_refused_retry_leaves_a_paused_rollout_paused() -> None:
    """I7 (make fuzz, seed 3003): a rolling update paused by a person, then `sluice retry`, which
    has nothing to retry. The refusal walked the steps as if the rollout were progressing: the
    update step completed, the post-update analysis measured a 50% error rate meeting its
    abortCondition, and the plan after measuring, paused again, never judged it. A refused
    request now changes nothing: the rollout stays paused, and measures nothing but background
    analysis."""
    world = SluiceLoop()
    world.first_version_is_stable(replicas=2, gateway=False, policy={
        "strategy": {"rolling": {"postAnalysis": True}},
        "analysis": {"interval": "10s", "count": 1, "metrics": [{
            "name": "error-rate", "query": 'error-rate{version="{{version}}"}', "successCondition": "result < 0.05",
            "failureLimit": 1, "consecutiveErrorLimit": 3, "noData": "hold", "abortCondition": "result > 0.3"}]},
        "progressDeadline": "120s", "onFailure": "rollback"})
    world.user_request(action="pause")
    world.nothing_new_happens(answer="bad", pods_come_up=False)
    world.user_request(action="retry")
    world.reconcile_now(fault="none")
    assert world.model.status.phase == Phase.PAUSED and world.model.status.current_step == 0
    assert any("nothing to retry while the rollout is paused" in e for e in world.model.posted)
    world.teardown()


def test_an_abandoned_candidate_keeps_no_more_route_weight_than_the_route_has() -> None:
    """I4 (make fuzz, seed 3001, after about 35,000 examples): behind a Gateway, the stable pods
    unready, the pass that moved 1.2.0 to weight 10 lost its act; the stable version was then
    re-applied, abandoning 1.2.0. Its status still said weight 10, and since the stable track had
    no Ready pod the abandoned candidate was to keep "the traffic it has": the next pass wrote
    weight 10 to a route that carried 0. The planner now reads the route's weight."""
    world = SluiceLoop()
    policy = _canary([{"setWeight": 10}])
    world.first_version_is_stable(policy=policy, replicas=1, gateway=True)
    world.pods_stop_being_ready(count=None, track="stable")
    world.slow_measurement(fault="none", seconds=3)
    world.time_passes(fault="act lost after the status write", seconds=1)
    world.stable_version_reapplied()
    world.reconcile_now(fault="act lost after the status write")
    world.reconcile_now(fault="none")
    assert world.model.cluster.route_weight == 0
    world.teardown()


def test_traffic_that_found_no_pod_may_land_on_an_abandoned_candidate_when_nothing_else_is_ready() -> None:
    """I4 (make fuzz, seed 3006; the model's promise was too strict): 1.2.0 half promoted behind
    a Gateway (the stable Deployment back on 1.0.0, whose pod is unready, still runs a Ready
    1.2.0 pod), the stable version re-applied, the canary's pods unready. The route's 10% went to
    no pod; the pass moved it to <name>, whose only Ready pod is 1.2.0's. I4 now allows traffic
    that found nothing to land on the candidate, never traffic another version served."""
    world = SluiceLoop()
    policy = _canary([{"setWeight": 0}, {"setWeight": 10}])
    world.first_version_is_stable(policy=policy, replicas=1, gateway=True)
    world.slow_measurement(fault="none", seconds=3)
    world.time_passes(fault="none", seconds=1)
    world.stable_version_reapplied()
    world.policy_steps_trimmed(keep=1)
    world.reconcile_now(fault="act lost after the status write")
    world.pods_stop_being_ready(count=None, track="canary")
    world.time_passes(fault="none", seconds=1)
    assert world.model.cluster.served(True) == 100
    world.teardown()


def test_a_request_sent_before_a_rollout_began_never_applies_after_it_ended() -> None:
    """I4 (make fuzz, seed 3005): `sluice retry` was sent before 1.2.0's rollout began; the pass
    that began it left the request for the next pass, but background analysis rolled 1.2.0 back
    in that same pass, and the next pass retried it: the rollback was undone by a request older
    than it. A request the rollout's end overtook is now refused, with an event."""
    world = SluiceLoop()
    policy = _canary([{"setWeight": 0}], background=True)
    world.first_version_is_stable(policy=policy, replicas=1, gateway=False)
    world.user_request(action="retry")
    world.nothing_new_happens(answer="bad", pods_come_up=False)
    world.nothing_new_happens(answer="good", pods_come_up=False)
    assert world.model.status.phase == Phase.ROLLED_BACK
    assert any("retry refused: it came as the rollout of 1.2.0 began" in e for e in world.model.posted)
    world.teardown()


def test_a_retry_runs_under_the_policy_as_it_is_at_the_retry() -> None:
    """I1 (make fuzz, seed 1313; a defect of the model, not of Sluice): a canary aborted, its
    policy trimmed to a single weight step, then `sluice retry` in the same second the first
    attempt began. The retry is a new rollout under the policy as it is then (no analysis step),
    so it promotes; the model had kept the first attempt's ledger, and its analysis step, because
    both attempts share a start time. Sluice announces the policy the retry runs against."""
    world = SluiceLoop()
    policy = _canary([{"setWeight": 0}, {"setWeight": 0}, {"analysis": {}}])
    world.first_version_is_stable(policy=policy, replicas=1, gateway=False)
    world.reconcile_now(fault="none")
    world.user_request(action="abort")
    world.nothing_new_happens(answer="good", pods_come_up=False)
    assert world.model.status.phase == Phase.ROLLED_BACK
    world.policy_steps_trimmed(keep=1)
    world.user_request(action="retry")
    world.nothing_new_happens(answer="good", pods_come_up=False)
    assert world.model.status.phase == Phase.SUCCEEDED
    said = world.model.posted
    assert any("retrying 1.2.0 from the first step under RolloutPolicy" in e for e in said), said
    assert "Normal StepCompleted: step 1/1 (setWeight 0) complete" in said
    world.teardown()


def test_a_rolled_back_candidate_left_on_the_canary_track_gains_no_traffic_from_the_next_rollout() -> None:
    """I4 (make fuzz, seed 1111): 1.2.0 aborted, 1.3.0 applied, the stable pods unready; the
    canary track still had 1.2.0's Ready pod beside 1.3.0's unready one, and <name> was switched
    to it because a rollout (of 1.3.0) was in flight."""
    world = SluiceLoop()
    world.first_version_is_stable(policy=_blue_green(auto=False), replicas=1, gateway=False)
    world.reconcile_now(fault="none")
    world.new_version()
    world.user_request(action="abort")
    world.pods_stop_being_ready(count=None, track="stable")
    world.time_passes(fault="none", seconds=1)
    world.reconcile_now(fault="none")
    assert world.model.cluster.selects == frozenset({"stable"})
    world.teardown()


def _tripwire(on_failure: str) -> dict[str, Any]:
    metric = {**_blue_green(auto=True)["analysis"]["metrics"][0], "failureLimit": 1, "abortCondition": "result > 0.3"}
    return {"strategy": {"canary": {"steps": [{"setWeight": 50}, {"analysis": {}}, {"setWeight": 100}]}},
            "analysis": {"interval": "10s", "count": 3, "metrics": [metric]},
            "progressDeadline": "60s", "onFailure": on_failure}


def _trip(world: SluiceLoop) -> None:
    """1.2.0 reaches its analysis step on good answers, then one bad answer (0.5 > 0.3) comes."""
    world.time_passes(fault="none", seconds=1)
    world.time_passes(fault="none", seconds=1)
    assert world.model.status.current_step == 1 and world.model.status.analysis_run is not None
    world.prometheus_answers(metric="error-rate", answer="bad")
    world.time_passes(fault="none", seconds=10)


@pytest.mark.parametrize(("on_failure", "phase"), [("rollback", Phase.ROLLED_BACK), ("pause", Phase.PAUSED)])
def test_a_measurement_meeting_the_abort_condition_ends_the_rollout_in_that_pass(on_failure: str,
                                                                                 phase: Phase) -> None:
    """I7: failureLimit 1 would tolerate the bad answer; the abortCondition does not."""
    world = SluiceLoop()
    world.first_version_is_stable(policy=_tripwire(on_failure), replicas=2, gateway=True)
    _trip(world)
    status = world.model.status
    assert status.phase == phase and "met its abortCondition `result > 0.3` (value 0.5)" in status.message
    world.teardown()


def test_i7_breaks_when_the_planner_ignores_the_abort_condition(monkeypatch: pytest.MonkeyPatch) -> None:
    """The promise has teeth: a planner that only counts the tripped measurement against
    failureLimit (1) keeps the rollout going, and I7 says so."""
    from sluice.plan import analysis as plan_analysis
    monkeypatch.setattr(plan_analysis, "_tripped", lambda run, metrics: None)
    world = SluiceLoop()
    world.first_version_is_stable(policy=_tripwire("rollback"), replicas=2, gateway=True)
    with pytest.raises(Broken, match="I7: error-rate met its abortCondition \\(bad\\), and the rollout is "
                                     "Progressing, not rolled back"):
        _trip(world)


def _baking(kind: str = "canary") -> dict[str, Any]:
    policy = _canary([{"setWeight": 50}]) if kind == "canary" else _blue_green(auto=True)
    policy["bake"] = {"duration": "45s"}
    return policy


@pytest.mark.parametrize("kind", ["canary", "blueGreen"])
@pytest.mark.parametrize("gateway", [False, True])
def test_a_bake_keeps_the_stable_warm_and_promotes_after_its_duration(kind: str, gateway: bool) -> None:
    """I8, I9 on the plainest history: a healthy candidate, baked, then promoted."""
    world = SluiceLoop()
    world.first_version_is_stable(policy=_baking(kind), replicas=2, gateway=gateway)
    world.nothing_new_happens(answer="good", pods_come_up=True)
    assert world.model.status.phase == Phase.SUCCEEDED and world.model.status.stable_version == "1.2.0"
    assert any("BakeStarted" in e for e in world.model.posted), world.model.posted
    world.teardown()


def test_a_bake_rolls_back_onto_the_warm_stable_when_the_candidate_goes_bad() -> None:
    world = SluiceLoop()
    world.first_version_is_stable(policy=_baking(), replicas=2, gateway=False)
    for _ in range(6):
        world.time_passes(fault="none", seconds=5)
    assert "baking" in world.model.status.message, world.model.status.message
    world.prometheus_answers(metric="error-rate", answer="bad")
    world.time_passes(fault="none", seconds=10)
    status = world.model.status
    assert status.phase == Phase.ROLLED_BACK and "bake (" in status.message
    assert world.model.cluster.selects == frozenset({"stable"}) and world.model.cluster.ready("stable", "h-1.0.0") == 2
    world.teardown()


def test_i8_breaks_when_the_bake_ends_before_its_duration(monkeypatch: pytest.MonkeyPatch) -> None:
    """The promise has teeth: a bake that ends a few seconds after it began is caught."""
    from datetime import timedelta

    from sluice.plan.types import parse_time
    monkeypatch.setattr(plan_bake, "ends_at", lambda run, bake: parse_time(run.started_at) + timedelta(seconds=5))
    world = SluiceLoop()
    world.first_version_is_stable(policy=_baking(), replicas=2, gateway=True)
    with pytest.raises(Broken, match=r"I8: 1\.2\.0 became stable 10s after .* before its bake of 45s ended"):
        world.nothing_new_happens(answer="good", pods_come_up=True)


def test_i9_breaks_when_the_bake_lets_the_stable_go_cold(monkeypatch: pytest.MonkeyPatch) -> None:
    from sluice.plan import canary
    from sluice.plan.types import DeploymentIntent
    real = canary.all_traffic

    def cold(obs: Any, status: Any) -> Any:
        plan, done = real(obs, status)
        plan.stable = DeploymentIntent("stable", 1)
        return plan, done
    monkeypatch.setattr(canary, "all_traffic", cold)
    world = SluiceLoop()
    world.first_version_is_stable(policy=_baking(), replicas=2, gateway=True)
    with pytest.raises(Broken, match=r"I9: during the bake the stable Deployment runs h-1\.0\.0 x1, not h-1\.0\.0 x2"):
        world.nothing_new_happens(answer="good", pods_come_up=True)


def test_a_rollout_waiting_behind_chained_hook_timeouts_is_bounded_by_them() -> None:
    """I5 (make fuzz, seed 5001, after about 49,000 examples): with the stable pods down, a dozen
    versions applied one after another left hook Jobs that never finish; hook Jobs run one at a
    time, so 1.29.0's backup waited behind an earlier rollout's hooks, each failed at its timeout
    plus the grace period: 370 s Pending against a bound of 365 s that allowed three such waits.
    The bound was the model's defect, not Sluice's: it now counts every unfinished hook run and
    the rollout's own preRollout hooks. Replayed as the soak found it."""
    policy = _canary([{"analysis": {}}, {"analysis": {}}, {"setWeight": 0}, {"analysis": {}},
                      {"setWeight": 0}, {"setWeight": 0}], background=True)
    policy["analysis"]["count"] = 3
    policy["analysis"]["metrics"][0]["consecutiveErrorLimit"] = 2
    world = SluiceLoop()
    world.first_version_is_stable(policy=policy, replicas=3, gateway=True, hooks=True)
    world.pods_become_ready(count=None, track="stable")
    world.pods_stop_being_ready(count=None, track="stable")
    for _ in range(12):
        world.new_version()
    world.reconcile_now(fault="none")
    world.stable_version_reapplied()
    world.policy_analysis_step_removed()
    world.slow_measurement(fault="none", seconds=3)
    for _ in range(3):
        world.new_version()
    world.policy_bake_toggled(duration="20s")
    world.pods_stop_being_ready(count=None, track="stable")
    for _ in range(7):
        world.new_version()
    world.slow_measurement(fault="none", seconds=3)
    world.new_version()
    world.stable_version_reapplied()
    world.policy_analysis_step_removed()
    world.reconcile_now(fault="none")
    world.new_version()
    world.new_version()
    world.pods_stop_being_ready(count=None, track="stable")
    world.new_version()
    world.reconcile_now(fault="none")
    world.user_request(action="abort")
    world.policy_steps_trimmed(keep=1)
    world.pods_stop_being_ready(count=None, track="stable")
    world.nothing_new_happens(answer="empty", pods_come_up=False)
    world.pods_stop_being_ready(count=1, track="stable")
    world.new_version()
    world.pods_stop_being_ready(count=None, track="canary")
    world.user_request(action="pause")
    world.nothing_new_happens(answer="-inf", pods_come_up=False)
    status = world.model.status
    assert status.phase == Phase.ROLLED_BACK, status.message
    assert "preRollout hook backup failed" in status.message and "did not finish within 1m" in status.message
    assert sum(run.state == "Running" for run in status.hooks) <= 1
    world.teardown()

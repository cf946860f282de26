"""A model of one Release's world for the randomized test of the decision loop (tests/unit/test_model.py).

It holds what the real operator would meet: a simulated cluster (two Deployments whose pods are
Ready or not, the Service <name>'s selector, the HTTPRoute's canary weight, blue-green's preview),
a clock, the Release spec, the live RolloutPolicy, the status as the API server stores it, and a
metric source. `Model.reconcile()` is one pass as the real reconcile does it (SEMANTICS rule 2):
plan -> measure through the real judge -> fold -> plan again -> write status -> act -> post events,
with the crash windows of a real pass available as faults. Everything that decides is the real
planner (sluice.plan.release.plan, sluice.plan.analysis.fold) and judge (sluice.analysis.judge);
the model only plays the cluster and Prometheus. It decides nothing itself.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sluice.analysis import judge
from sluice.api.models import Metric, ReleaseSpec, ReleaseStatus, Request, RolloutPolicySpec, Verdict
from sluice.plan import analysis as plan_analysis
from sluice.plan.release import plan, replan
from sluice.plan.types import DeploymentIntent, JobState, Observed, Plan, Result, Workload, iso

T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
Track = Literal["stable", "canary"]
TRACKS: tuple[Track, ...] = ("stable", "canary")


def template_of(version: str) -> str:
    """The pod template hash of a version (the model's templates differ only by version)."""
    return "h-" + version


def version_of(template: str | None) -> str | None:
    return template[2:] if template else None


# --- the cluster -------------------------------------------------------------------------------


@dataclasses.dataclass
class Pod:
    template: str
    ready: bool = False


@dataclasses.dataclass
class Deployment:
    """A Deployment and its pods. New pods start un-Ready; the test's kubelet makes them Ready.
    The rollout controller is modelled as maxUnavailable 0: a pod of an older template stays
    (serving if Ready) until a pod of the current template is Ready to replace it."""

    exists: bool = False
    template: str | None = None
    replicas: int = 0
    pods: list[Pod] = dataclasses.field(default_factory=list)

    def sync(self) -> None:
        current = [p for p in self.pods if p.template == self.template]
        older = [p for p in self.pods if p.template != self.template]
        current.sort(key=lambda p: not p.ready)  # Ready pods are kept first, un-Ready ones go first
        current = current[: self.replicas]
        current += [Pod(self.template or "") for _ in range(self.replicas - len(current))]
        replaced = sum(p.ready for p in current)
        older.sort(key=lambda p: not p.ready)
        self.pods = current + older[: max(0, self.replicas - replaced)]

    def ready(self, template: str | None = None) -> int:
        return sum(p.ready for p in self.pods if template is None or p.template == template)

    def workload(self) -> Workload:
        if not self.exists:
            return Workload()
        updated = sum(p.template == self.template for p in self.pods)
        ready = self.ready()
        return Workload(exists=True, template_hash=self.template, version=version_of(self.template),
                        replicas=self.replicas, ready=ready, updated=updated, available=ready,
                        total=len(self.pods), settled=True, foreign=len(self.pods) - updated)


@dataclasses.dataclass
class Cluster:
    stable: Deployment = dataclasses.field(default_factory=Deployment)
    canary: Deployment = dataclasses.field(default_factory=Deployment)
    selects: frozenset[str] = frozenset({"stable"})  # the tracks Service <name> selects
    route_weight: int = 0  # HTTPRoute weight of <name>-canary (gateway routing only)
    preview_track: str | None = None  # what <name>-preview selects (blue-green), None: no preview
    jobs: dict[str, str] = dataclasses.field(default_factory=dict)  # hook Jobs: "active", "succeeded", "failed"

    def track(self, name: str) -> Deployment:
        return self.stable if name == "stable" else self.canary

    def ready(self, track: str, template: str | None = None) -> int:
        return self.track(track).ready(template)

    def serving(self) -> int:
        """Ready pods behind Service <name>."""
        return sum(self.ready(t) for t in self.selects)

    def any_ready(self) -> int:
        return self.ready("stable") + self.ready("canary")

    def share(self, template: str, gateway: bool) -> float:
        """Percent of user traffic that lands on Ready pods of `template`."""
        def part(tracks: frozenset[str] | set[str]) -> float:
            total = sum(self.ready(t) for t in tracks)
            return 0.0 if total == 0 else sum(self.ready(t, template) for t in tracks) / total
        if gateway:
            return (100 - self.route_weight) * part(self.selects) + self.route_weight * part({"canary"})
        return 100 * part(self.selects)

    def served(self, gateway: bool) -> float:
        """Percent of user traffic that lands on any Ready pod (the rest finds none)."""
        def some(tracks: frozenset[str] | set[str]) -> float:
            return 1.0 if sum(self.ready(t) for t in tracks) else 0.0
        if gateway:
            return (100 - self.route_weight) * some(self.selects) + self.route_weight * some({"canary"})
        return 100 * some(self.selects)

    def copy(self) -> Cluster:
        def one(d: Deployment) -> Deployment:
            return Deployment(d.exists, d.template, d.replicas, [Pod(p.template, p.ready) for p in d.pods])
        return Cluster(one(self.stable), one(self.canary), self.selects, self.route_weight, self.preview_track,
                       dict(self.jobs))

    def describe(self) -> str:
        def one(name: str) -> str:
            d = self.track(name)
            if not d.exists:
                return f"{name}: none"
            pods = ",".join(f"{version_of(p.template)}{'' if p.ready else '(unready)'}" for p in d.pods)
            return f"{name}: {version_of(d.template)} x{d.replicas} [{pods}]"
        return (f"{one('stable')}; {one('canary')}; <name> selects {'+'.join(sorted(self.selects))}; "
                f"route weight {self.route_weight}")


# --- the metric source -------------------------------------------------------------------------

# What Prometheus answers for one metric. "error" is a provider error (unreachable, 5xx, timeout).
ANSWERS = ("good", "bad", "empty", "nan", "+inf", "-inf", "error")
VALUES: dict[str, float | None] = {
    "good": 0.01, "bad": 0.5, "empty": None, "nan": math.nan, "+inf": math.inf, "-inf": -math.inf,
}


def missing(answer: str) -> bool:
    """An empty result or NaN: no data. ±Inf is data; an error is not an answer at all."""
    return answer in ("empty", "nan")


@dataclasses.dataclass
class Measured:
    metric: str
    answer: str
    result: Result


@dataclasses.dataclass
class MetricSource:
    answers: dict[str, str] = dataclasses.field(default_factory=dict)  # metric -> answer; default good
    slow: float = 0.0  # seconds the next pass's measurements take (the clock moves meanwhile)

    def measure(self, metric: Metric) -> Measured:
        answer = self.answers.get(metric.name, "good")
        if answer == "error":
            result = Result(metric.name, Verdict.ERROR, None, "Prometheus is unreachable")
        else:
            result = judge.judge(metric, VALUES[answer])  # the real judge, with the real CEL
        return Measured(metric.name, answer, result)


# --- one pass ----------------------------------------------------------------------------------


def _reconcile_acts_before_writing() -> bool:
    """Whether today's sluice.reconcile acts before it writes status (the order issue 7 replaces).
    A status write lost after the act can only happen in that order; in the order of SEMANTICS
    rule 2 a lost write means nothing was acted on either."""
    try:
        from sluice import reconcile
        source = inspect.getsource(reconcile.reconcile)
    except Exception:  # the module is being rewritten: assume rule 2
        return False
    decided = max(source.find("make_plan("), 0)  # after the pass has decided: which comes first
    act, write = source.find("await act(", decided), source.find("await write_status(", decided)
    return act != -1 and write != -1 and act < write


ACTS_BEFORE_WRITING = _reconcile_acts_before_writing()

Fault = Literal["none", "act lost after the status write", "status write lost"]


@dataclasses.dataclass
class Pass:
    """What one pass saw, measured, decided, and did."""

    now: datetime
    before: Cluster
    after: Cluster
    observed: ReleaseStatus  # the status the pass started from (as stored)
    first: Plan  # the plan before measuring
    decided: Plan  # the plan after the measurements were folded in
    measured: list[Measured]
    persisted: bool
    acted: bool
    fault: Fault


def policy_hash(policy: RolloutPolicySpec) -> str:
    text = json.dumps(policy.model_dump(by_alias=True, exclude_none=True, mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


_OBSERVED_FIELDS = frozenset(f.name for f in dataclasses.fields(Observed))


def _observed(**fields: Any) -> Observed:
    """An Observed with the fields today's planner knows (its fields change while it is rewritten)."""
    return Observed(**{k: v for k, v in fields.items() if k in _OBSERVED_FIELDS})


def store(status: ReleaseStatus, stored: ReleaseStatus) -> ReleaseStatus:
    """`status` as the API server stores it (a JSON round trip), given `stored`, what it stores now.
    A status equal to the stored one stores as the stored one: the round trip of equal field values
    gives equal field values, and `stored` is itself a round trip's result."""
    if status == stored:
        return stored
    return ReleaseStatus.model_validate(status.model_dump(by_alias=True, mode="json"))


@dataclasses.dataclass
class Model:
    spec: ReleaseSpec
    policy: RolloutPolicySpec  # the live RolloutPolicy
    gateway: bool
    now: datetime = T0
    status: ReleaseStatus = dataclasses.field(default_factory=ReleaseStatus)  # as the API server stores it
    cluster: Cluster = dataclasses.field(default_factory=Cluster)
    metrics: MetricSource = dataclasses.field(default_factory=MetricSource)
    generation: int = 1
    policy_generation: int = 1
    posted: list[str] = dataclasses.field(default_factory=list)  # events posted, in order
    # caches of what is derived from an unchanged input (the policy objects are never mutated)
    _hashed: tuple[RolloutPolicySpec, str] | None = dataclasses.field(default=None, repr=False, compare=False)
    _snapshot: tuple[dict[str, Any], RolloutPolicySpec] | None = dataclasses.field(
        default=None, repr=False, compare=False)

    @property
    def desired(self) -> str:
        return template_of(self.spec.version)

    def observed(self) -> Observed:
        stable = self.cluster.stable.workload()
        settled = self.cluster.preview_track == "stable" and stable.complete(self.desired, self.spec.replicas)
        return _observed(
            generation=self.generation, spec=self.spec, desired_hash=self.desired, status=self.status,
            stable=stable, canary=self.cluster.canary.workload(),
            policy=self.policy,  # the live policy; plan() chooses the one the rollout runs against
            live_policy=self.policy, policy_generation=self.policy_generation,
            policy_hash=self.policy_hash(), gateway=self.gateway, preview_settled=settled,
            serving_canary="canary" in self.cluster.selects,
            route_weight=self.cluster.route_weight if self.gateway else None,
            name="app", jobs={name: JobState(active=state == "active", succeeded=state == "succeeded",
                                             failed=state == "failed",
                                             reason="BackoffLimitExceeded" if state == "failed" else "")
                              for name, state in self.cluster.jobs.items()},
        )

    def policy_hash(self) -> str:
        """policy_hash(self.policy), computed once per policy (an edit replaces the object)."""
        if self._hashed is None or self._hashed[0] is not self.policy:
            self._hashed = (self.policy, policy_hash(self.policy))
        return self._hashed[1]

    def running_policy(self, status: ReleaseStatus) -> RolloutPolicySpec:
        """The policy a status says its rollout runs against (its snapshot), else the live one.
        A snapshot equal to the last one validated gives the same policy (validation is a function
        of the dict): it is validated once, not on every pass."""
        snap = getattr(status, "policy", None)
        if snap is not None and snap.spec:
            if self._snapshot is None or self._snapshot[0] != snap.spec:
                self._snapshot = (copy.deepcopy(snap.spec), RolloutPolicySpec.model_validate(snap.spec))
            return self._snapshot[1]
        return self.policy

    def reconcile(self, fault: Fault = "none") -> Pass:
        """One pass: plan, measure, fold, plan again, persist, act, post events (SEMANTICS rule 2)."""
        now, before, observed = self.now, self.cluster.copy(), self.status
        obs = self.observed()
        first = plan(obs, now)
        decided, measured = first, []
        if first.measure:
            definitions = {m.name: m for m in self.running_policy(first.status).analysis.metrics}
            measured = [self.metrics.measure(definitions[name]) for name in first.measure if name in definitions]
            plan_analysis.fold(first, [m.result for m in measured], now)
            decided = replan(obs, first, now)
            self.now += timedelta(seconds=self.metrics.slow)  # a slow measurement: time passed meanwhile
            self.metrics.slow = 0.0
        persist = fault == "none" or fault == "act lost after the status write"
        act = fault == "none" or (fault == "status write lost" and ACTS_BEFORE_WRITING)
        if persist:
            self.status = store(decided.status, self.status)
        if act:
            self.act(decided)
            self.posted += [f"{e.type} {e.reason}: {e.message}" for e in decided.events]
        return Pass(now, before, self.cluster.copy(), observed, first, decided, measured, persist, act, fault)

    def act(self, decided: Plan, cluster: Cluster | None = None) -> None:
        """What reconcile.act does to the cluster (or to `cluster`, a copy: what a pass decided
        the cluster should be, whether or not its act was lost): route and Services first, then
        Deployments."""
        cluster = self.cluster if cluster is None else cluster
        if self.gateway:
            cluster.selects = frozenset({decided.active})
            if decided.weight is not None:
                cluster.route_weight = decided.weight
        else:
            both = decided.stable_service_selects_canary
            cluster.selects = frozenset(TRACKS) if both else frozenset({decided.active})
        cluster.preview_track = decided.preview_track if decided.preview else None
        self._deploy(cluster.stable, decided.stable, decided.status)
        self._deploy(cluster.canary, decided.canary, decided.status)
        for run in decided.jobs:  # hook Jobs: created if absent, under the name the run was given
            cluster.jobs.setdefault(run.job, "active")
        for name in decided.delete_jobs:
            cluster.jobs.pop(name, None)

    def _deploy(self, deployment: Deployment, intent: DeploymentIntent | None, decided: ReleaseStatus) -> None:
        if intent is None or (not deployment.exists and intent.replicas == 0):
            return
        # "stable": the template the decided status names as stable; "candidate": the spec's
        stable = decided.stable_hash or deployment.template
        template = stable if intent.template == "stable" else self.desired
        deployment.exists, deployment.template, deployment.replicas = True, template, intent.replicas
        deployment.sync()

    # --- what happens outside Sluice ---

    def kubelet(self, track: str, count: int | None, ready: bool) -> None:
        """`count` pods of a track (all when None) become Ready, or stop being Ready."""
        deployment = self.cluster.track(track)
        changing = [p for p in deployment.pods if p.ready != ready][: count if count is not None else None]
        for pod in changing:
            pod.ready = ready
        deployment.sync()

    def job_finishes(self, succeeded: bool) -> None:
        """The oldest running hook Job finishes (the Job controller saw its pod exit)."""
        running = next((name for name, state in self.cluster.jobs.items() if state == "active"), None)
        if running is not None:
            self.cluster.jobs[running] = "succeeded" if succeeded else "failed"

    def request(self, action: str) -> None:
        self.status = self.status.model_copy(
            update={"request": Request.model_validate({"action": action, "at": iso(self.now), "by": "model"})})

    def deploy(self, version: str) -> None:
        template = self.spec.template.model_copy(deep=True)
        template.spec.containers[0].image = f"example.com/app:{version}"
        self.spec = self.spec.model_copy(update={"version": version, "template": template})
        self.generation += 1

    def edit_policy(self, policy: RolloutPolicySpec) -> None:
        self.policy = policy
        self.policy_generation += 1

    def later(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

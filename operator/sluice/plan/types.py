"""What the planner reads (Observed) and what it decides (Plan)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from sluice.api.durations import parse_duration
from sluice.api.models import HookRun, Phase, ReleaseSpec, ReleaseStatus, RolloutPolicySpec, Verdict

DEFAULT_DEADLINE = "10m"  # progressDeadline where no policy names one
IN_FLIGHT = (Phase.PENDING, Phase.PROGRESSING, Phase.PAUSED)  # a rollout no outcome has ended yet


def show(value: float) -> str:
    """A value as a person reads it: show(0.25) == '0.25', show(inf) == '+Inf', show(-inf) == '-Inf'."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return "NaN" if math.isnan(value) else f"{value:g}"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def seconds_since(text: str | None, now: datetime) -> float:
    return 0.0 if text is None else (now - parse_time(text)).total_seconds()


@dataclass(frozen=True)
class Workload:
    """A Deployment as observed. `template_hash` names the pod template it runs."""

    exists: bool = False
    template_hash: str | None = None
    version: str | None = None
    replicas: int = 0  # spec.replicas
    ready: int = 0
    updated: int = 0
    available: int = 0
    total: int = 0  # status.replicas: pods of every revision
    settled: bool = True  # status.observedGeneration has caught up with metadata.generation
    foreign: int = 0  # pods behind its selector of another template, terminating ones included

    def complete(self, template_hash: str, replicas: int) -> bool:
        """The Deployment runs exactly `replicas` Ready pods of `template_hash` and nothing else:
        not even a terminating old pod that a Service could still list as an endpoint. Zero pods
        are complete whatever the template, and so is a Deployment that does not exist."""
        if replicas == 0:
            return not self.exists or (self.settled and self.replicas == 0 and self.total == 0 and self.ready == 0)
        return (
            self.exists and self.settled and self.template_hash == template_hash
            and self.replicas == replicas and self.updated == replicas
            and self.ready == replicas and self.available == replicas and self.total == replicas
            and self.foreign == 0
        )

    def ready_of(self, template_hash: str) -> int:
        """Ready pods that certainly run `template_hash`: during a template change the Deployment's
        readyReplicas also counts old pods, so those (total - updated) are assumed Ready first.
        Workload(exists=True, template_hash="a", ready=3, updated=2, total=4).ready_of("a") == 1."""
        if not self.exists or self.template_hash != template_hash:
            return 0
        return max(0, min(self.updated, self.ready - (self.total - self.updated)))

    def ready_only_of(self, template_hash: str) -> int:
        """Ready pods of `template_hash` when they are all a Service selecting this track would
        reach: no pod of another template (a rolled-back version's, during the template change)
        is there, Ready or not; else 0.
        Workload(exists=True, template_hash="a", ready=2, updated=2, total=3, foreign=1).ready_only_of("a") == 0."""
        mine = self.ready_of(template_hash)
        return mine if mine == self.ready and self.foreign == 0 else 0


@dataclass(frozen=True)
class Declared:
    """A pod template the other Release declares, and which version it is for: its spec's (Git's
    word) or its status.stableSpec's (the version it promoted last). `template_hash` is computed by
    observe from that template, the way Sluice names the template it writes (kube.objects)."""

    source: str  # "spec" or "status.stableSpec"
    version: str
    template_hash: str
    images: tuple[tuple[str, str], ...] = ()  # (container name, image), init containers too


@dataclass(frozen=True)
class Upstream:
    """What observe read in one namespace that `requires` names: the facts plan.requires decides on.
    Never the other Release's status alone (see plan.requires)."""

    namespace: str
    name: str  # the Release's name, which is also its stable Deployment's
    release: bool = False  # the same-named Release exists there
    deployment: bool = False  # a Deployment <name> exists there
    controlled: bool = False  # ...and its controller ownerReference is that Release (by uid)
    version: str | None = None  # the full version its pod template carries
    images: tuple[tuple[str, str], ...] = ()  # (container name, image), init containers too
    replicas: int = 0  # spec.replicas
    updated: int = 0
    available: int = 0
    total: int = 0  # status.replicas: pods of every template
    settled: bool = False  # status.observedGeneration has caught up with metadata.generation
    template_hash: str | None = None  # the sluice.dev/template-hash its live pod template carries
    declared: tuple[Declared, ...] = ()  # the templates the other Release declares (spec, stableSpec)
    phase: str | None = None  # the other Release's status, read only to keep the gate shut
    stable_version: str | None = None
    candidate_version: str | None = None


@dataclass(frozen=True)
class JobState:
    """A hook's Job as observed: finished or not, and how. `log` is the tail of its last pod's
    log, read only once the Job has failed (for the message a person on call reads)."""

    active: bool = False
    succeeded: bool = False
    failed: bool = False
    reason: str = ""  # the Job's Failed condition: BackoffLimitExceeded, DeadlineExceeded
    log: str = ""


@dataclass(frozen=True)
class Observed:
    generation: int
    spec: ReleaseSpec
    desired_hash: str  # hash of the desired pod template, version included
    status: ReleaseStatus
    stable: Workload
    canary: Workload
    policy: RolloutPolicySpec | None = None  # the live policy; plan() swaps in the one the rollout started with
    problem: str | None = None  # bad input the schema cannot catch: the Release is Stalled
    problem_reason: str = ""
    conflict: str | None = None  # an owned name is taken by another object: write nothing at all
    adopting: tuple[str, ...] = ()  # "Service checkout": objects whose sluice.dev/adopt grants them to this Release
    live_policy: RolloutPolicySpec | None = None  # set by plan(): the observed `policy`, kept beside the snapshot
    policy_generation: int | None = None
    policy_hash: str | None = None
    policy_problem: str | None = None  # why the live policy cannot be used (missing, invalid)
    policy_problem_reason: str = ""
    measure_problem: str | None = None  # this pass's measurement found the input unusable
    probe_ok: bool = False  # this pass's probe of a stalled Release's metrics found the input usable again
    upstream: tuple[Upstream, ...] = ()  # one per namespace the live policy `requires`
    unmet_requirement: str | None = None  # why the promotion gate is closed: plan() sets it from `upstream`
    gateway: bool = False  # traffic by HTTPRoute weights rather than replica ratio
    # Blue-green finalization: <name>-preview selects the stable track and its EndpointSlices list
    # exactly the stable Deployment's Ready pods, so the endpoint controller has caught up.
    preview_settled: bool = False
    # Service <name> selects the candidate's pods now (alone, or beside the stable's): a candidate
    # rolled back while the stable track has no Ready pod may keep that traffic, never gain it.
    serving_canary: bool = False
    # The canary weight the HTTPRoute carries now (None: no route, or no canary backend yet): what a
    # candidate no longer in flight has, and so the most it may keep.
    route_weight: int | None = None
    # The API server refused the last attempt to carry out a plan for this Release (a full Service
    # range, a quota, an admission webhook): shown as Stalled until an attempt succeeds.
    refused: str | None = None
    # This Release's hook Jobs, by name (those the caches hold: Sluice's own).
    jobs: dict[str, JobState] = field(default_factory=dict)
    name: str = ""  # the Release's name (hook Jobs are named from it)


Template = Literal["candidate", "stable"]


@dataclass(frozen=True)
class DeploymentIntent:
    """Which template a Deployment runs and how many pods: "candidate" is the Release spec's,
    "stable" the one status.stableHash names (kept as is, or restored from ReplicaSet history)."""

    template: Template
    replicas: int


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass
class Plan:
    status: ReleaseStatus
    stable: DeploymentIntent | None = None  # None: leave the Deployment as it is
    canary: DeploymentIntent | None = None
    weight: int | None = None  # HTTPRoute weight of the canary; None: leave the route alone
    stable_service_selects_canary: bool = False  # replica ratio: <name> selects both tracks
    active: Literal["stable", "canary"] = "stable"  # the track <name> selects (blue-green cutover)
    preview: bool = False  # blue-green: <name>-preview exists
    preview_track: Literal["stable", "canary"] = "canary"  # ...and selects this track
    measure_track: Literal["stable", "canary"] = "canary"  # where the candidate's pods run
    measure: tuple[str, ...] = ()  # metric names to measure now
    measure_step: tuple[str, ...] = ()  # ...of which the current analysis step asked for these
    measure_background: tuple[str, ...] = ()  # ...and background analysis for these
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    hands_off: bool = False  # write nothing to the cluster (an owned name belongs to someone else)
    policy: RolloutPolicySpec | None = None  # the policy this plan was made under (what to measure with)
    probe: bool = False  # measure only to learn whether the input is usable again; count nothing
    jobs: tuple[HookRun, ...] = ()  # hook Jobs to create (if absent): status.hooks entries still Pending
    delete_jobs: tuple[str, ...] = ()  # hook Jobs to delete: past their timeout, or of rollouts status forgot


@dataclass(frozen=True)
class Result:
    """One measurement of one metric, produced by the analysis layer and folded into status."""

    metric: str
    verdict: Verdict
    value: float | None
    message: str
    missing: bool = False  # the provider answered, with no data (an empty result or NaN)
    tripped: bool = False  # the value met the metric's abortCondition: its run fails at once
    job: str | None = None  # a job metric: the Job of this measurement
    running: bool = False  # ...which has not finished: no verdict yet, polled again soon


def canary_replicas(total: int, weight: int) -> int:
    """Pods the canary needs for `weight` percent of `total`, rounded up so a small weight still
    gets a pod: canary_replicas(4, 10) == 1, canary_replicas(4, 50) == 2, canary_replicas(4, 0) == 0,
    canary_replicas(0, 50) == 0 (a Release scaled to zero stays at zero)."""
    if weight <= 0 or total <= 0:
        return 0
    return min(total, math.ceil(total * weight / 100))


def effective_weight(canary_ready: int, stable_ready: int) -> int:
    """Percent of traffic a replica-ratio split really sends to the canary:
    effective_weight(1, 3) == 25, effective_weight(0, 4) == 0, effective_weight(2, 0) == 100."""
    pods = canary_ready + stable_ready
    return 0 if pods == 0 else round(100 * canary_ready / pods)


def deadline(obs: Observed) -> float:
    """Seconds of the one deadline that bounds every wait: the policy's progressDeadline."""
    return parse_duration(obs.policy.progress_deadline if obs.policy else DEFAULT_DEADLINE)

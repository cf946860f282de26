"""A tiny ideal cluster for planner tests: Deployments become what a Plan asks, Ready at once
(unless told to stay un-Ready), and status flows back into the next Observed. No I/O."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from sluice.api.models import Phase, ReleaseSpec, ReleaseStatus, RolloutPolicySpec
from sluice.plan import analysis as plan_analysis
from sluice.plan.lifecycle import record_events
from sluice.plan.release import plan
from sluice.plan.types import DeploymentIntent, JobState, Observed, Plan, Result, Workload

T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


def release_spec(version: str = "1.0.0", replicas: int = 4, policy: str | None = "careful") -> ReleaseSpec:
    return ReleaseSpec.model_validate({
        "version": version, "replicas": replicas,
        "policyRef": {"name": policy} if policy else None,
        "template": {"spec": {"containers": [{"name": "app", "image": f"example.com/app:{version}"}]}},
    })


def policy_spec(steps: list[dict[str, Any]], **extra: Any) -> RolloutPolicySpec:
    body: dict[str, Any] = {
        "strategy": {"canary": {"steps": steps}},
        "analysis": {"interval": "30s", "count": 2, "metrics": [
            {"name": "error-rate", "query": "q", "successCondition": "result < 0.05"},
        ]},
        "progressDeadline": "5m",
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(body.get(key), dict) and key != "strategy":
            body[key] = {**body[key], **value}
        else:
            body[key] = value
    return RolloutPolicySpec.model_validate(body)


def ready(digest: str | None, replicas: int, version: str | None = None) -> Workload:
    return Workload(exists=True, template_hash=digest, version=version, replicas=replicas, ready=replicas,
                    updated=replicas, available=replicas, total=replicas)


@dataclasses.dataclass
class World:
    spec: ReleaseSpec
    policy: RolloutPolicySpec | None
    now: datetime = T0
    status: ReleaseStatus = dataclasses.field(default_factory=ReleaseStatus)
    stable: Workload = dataclasses.field(default_factory=Workload)
    canary: Workload = dataclasses.field(default_factory=Workload)
    gateway: bool = False
    route_weight: int = 0
    active: str = "stable"  # the track the Service <name> selects
    selects_both: bool = False  # replica ratio: <name> selects both tracks
    preview_track: str = "canary"  # the track <name>-preview selects (its endpoints follow at once)
    canary_never_ready: bool = False
    generation: int = 1
    unmet: str | None = None
    problem: str | None = None
    events: list[str] = dataclasses.field(default_factory=list)
    plans: list[Plan] = dataclasses.field(default_factory=list)
    # Hook Jobs: what each one does when it runs ("succeed", "fail" or "hang"), by hook name;
    # a Job created by one pass has finished by the next.
    jobs: dict[str, JobState] = dataclasses.field(default_factory=dict)
    hook_outcomes: dict[str, str] = dataclasses.field(default_factory=dict)
    created_jobs: list[str] = dataclasses.field(default_factory=list)
    job_hooks: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def digest(self) -> str:
        return "h-" + self.spec.version

    def observed(self) -> Observed:
        return Observed(
            generation=self.generation, spec=self.spec, desired_hash=self.digest, status=self.status,
            stable=self.stable, canary=self.canary, policy=self.policy, problem=self.problem,
            problem_reason="PolicyNotFound" if self.problem else "", unmet_requirement=self.unmet,
            gateway=self.gateway, route_weight=self.route_weight if self.gateway else None,
            policy_generation=self.generation,
            policy_hash=None if self.policy is None else str(hash(self.policy.model_dump_json())),
            preview_settled=self.preview_track == "stable" and self.stable.complete(self.digest, self.spec.replicas),
            serving_canary=self.active == "canary" or self.selects_both,
            name="app", jobs=dict(self.jobs),
        )

    def _run_jobs(self) -> None:
        for name, job in list(self.jobs.items()):
            outcome = self.hook_outcomes.get(self.job_hooks[name], "succeed")
            if job.active and outcome == "succeed":
                self.jobs[name] = JobState(succeeded=True)
            elif job.active and outcome == "fail":
                self.jobs[name] = JobState(failed=True, reason="BackoffLimitExceeded",
                                           log="psql: ERROR: relation orders already exists")

    def _apply(self, current: Workload, intent: DeploymentIntent | None, stable: bool) -> Workload:
        if intent is None:
            return current
        if intent.template == "stable":  # the template status.stableHash names (restored if need be)
            digest = self.status.stable_hash or current.template_hash
            version = self.status.stable_version or current.version
        else:
            digest, version = self.digest, self.spec.version
        if not current.exists and intent.replicas == 0:
            return current
        if not stable and self.canary_never_ready and digest == self.digest:
            return Workload(exists=True, template_hash=digest, version=version, replicas=intent.replicas,
                            updated=intent.replicas, total=intent.replicas)
        return ready(digest, intent.replicas, version)

    def step(self, results: list[Result] | None = None) -> Plan:
        """One pass: plan, fold in `results` if it asked to measure, apply it to the world."""
        self._run_jobs()
        result = plan(self.observed(), self.now)
        if result.measure and results is not None:
            asked = [r for r in results if r.metric in result.measure]
            plan_analysis.fold(result, asked, self.now)
            first_events = result.events
            result = plan(dataclasses.replace(self.observed(), status=result.status), self.now)
            result.events[:0] = first_events
        record_events(result)
        self.status = ReleaseStatus.model_validate(result.status.model_dump(by_alias=True, mode="json"))
        self.plans.append(result)
        self.stable = self._apply(self.stable, result.stable, stable=True)
        self.canary = self._apply(self.canary, result.canary, stable=False)
        if result.weight is not None:
            self.route_weight = result.weight
        self.active = result.active
        self.selects_both = result.stable_service_selects_canary and not self.gateway
        self.preview_track = result.preview_track
        self.events += [f"{e.reason}: {e.message}" for e in result.events]
        for run in result.jobs:
            if run.job not in self.jobs:
                self.jobs[run.job] = JobState(active=True)
                self.job_hooks[run.job] = run.hook
                self.created_jobs.append(run.job)
        for name in result.delete_jobs:
            self.jobs.pop(name, None)
        return result

    def later(self, seconds: float) -> World:
        self.now += timedelta(seconds=seconds)
        return self

    def _snapshot(self) -> tuple[Any, ...]:
        return (self.status.model_dump(exclude={"conditions"}), self.stable, self.canary)

    def settle(self, results: list[Result] | None = None, passes: int = 40, tick: float = 1.0) -> Plan:
        """Passes `tick` seconds apart until one changes nothing and measures nothing."""
        last = self.step(results)
        for _ in range(passes):
            before = self._snapshot()
            self.later(tick)
            last = self.step(results)
            if self._snapshot() == before and not last.measure:
                break
        return last

    def finish(self, results: list[Result] | None = None, tick: float = 5.0, limit: float = 3600) -> Plan:
        """Passes until the rollout ends (Succeeded, RolledBack, Failed) or waits on a person."""
        last = self.step(results)
        waited = 0.0
        while waited < limit and self.phase not in (Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED) \
                and self.phase != Phase.PAUSED:
            self.later(tick)
            waited += tick
            last = self.step(results)
        return last

    def deploy(self, version: str) -> World:
        self.spec = self.spec.model_copy(update={"version": version, "template": release_spec(version).template})
        self.generation += 1
        return self

    def request(self, action: str) -> World:
        from sluice.api.models import Request
        self.status = self.status.model_copy(update={"request": Request(action=action, at="2026-11-28T12:00:00Z")})
        return self

    @property
    def phase(self) -> Phase:
        return self.status.phase


def first_version(policy: RolloutPolicySpec | None = None, replicas: int = 4, gateway: bool = False) -> World:
    """A world where 1.0.0 is already stable."""
    world = World(spec=release_spec("1.0.0", replicas), policy=policy, gateway=gateway)
    world.settle()
    assert world.phase == Phase.SUCCEEDED, world.status.message
    world.events.clear()
    return world

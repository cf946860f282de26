"""The rolling strategy: the stable Deployment is updated in place (maxSurge, maxUnavailable),
then judged by postAnalysis and a bake (sluice.plan.bake); a failure restores the previous template
in place (from status.stableSpec, or ReplicaSet history). Nothing is kept warm: a breach during the
bake rolls back by a rolling update of the previous version."""

from __future__ import annotations

from datetime import datetime

from sluice.api.models import Bake, ReleaseStatus, RollingStrategy
from sluice.plan import bake, steps
from sluice.plan.lifecycle import restart_step, succeed
from sluice.plan.types import DeploymentIntent, Observed, Plan

UPDATE, POST = "update", "postAnalysis"


def _spec(obs: Observed) -> RollingStrategy:
    assert obs.policy is not None and obs.policy.strategy.rolling is not None
    return obs.policy.strategy.rolling


def step_names(spec: RollingStrategy, baking: Bake | None = None) -> list[str]:
    """The steps, e.g. ["update", "postAnalysis", "bake 10m"]."""
    return [UPDATE, *([POST] if spec.post_analysis else []), *([bake.name(baking)] if baking else [])]


class Rolling:
    name = "rolling"

    def steps(self, obs: Observed) -> list[str]:
        assert obs.policy is not None
        return step_names(_spec(obs), obs.policy.bake)

    def step(self, obs: Observed, status: ReleaseStatus, now: datetime, index: int) -> tuple[Plan, bool]:
        names = self.steps(obs)
        total = obs.spec.replicas
        result = Plan(status=status, stable=DeploymentIntent("candidate", total), measure_track="stable",
                      canary=DeploymentIntent("candidate", 0) if obs.canary.exists else None)
        on_new = obs.stable.updated if obs.stable.template_hash == obs.desired_hash else 0
        status.canary_weight = round(100 * min(on_new, obs.stable.ready) / total) if total else 0
        head = f"step {index + 1}/{len(names)} ({names[index]})"
        if not obs.stable.complete(obs.desired_hash, total):
            run = status.analysis_run
            if names[index] not in (UPDATE, POST) and run is not None and run.step == index:
                restart_step(status, now)  # a bake counts from the candidate's full strength, as on other strategies
            return steps.waiting_for_pods(
                obs, status, now, result,
                f"{obs.spec.version} not rolled out within {{deadline}} "
                f"({on_new}/{total} updated, {obs.stable.ready}/{total} ready)",
                f"{head}: {on_new}/{total} pods updated to {obs.spec.version}, {obs.stable.ready} ready")
        steps.in_place(status)
        if names[index] == UPDATE:
            return result, True
        if names[index] != POST:
            return bake.step(obs, status, now, result, head, index,
                             "nothing kept warm (rolling): a breach rolls back in place")
        return steps.analysis_step(obs, status, now, result, head, index, None, f"{total}/{total} updated, ")

    def promote(self, obs: Observed, status: ReleaseStatus, now: datetime) -> Plan:
        return succeed(obs, status, now, "rolling update")

    def background(self, obs: Observed, status: ReleaseStatus, now: datetime, result: Plan) -> Plan:
        return result  # rolling has no background analysis

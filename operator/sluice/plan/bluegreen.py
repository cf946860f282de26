"""The blue-green strategy: the candidate runs at full size behind <name>-preview while <name>
serves the stable version; the cutover rewrites <name>'s selector in one write.

The stable Deployment keeps the old version warm for scaleDownDelay after the switch, so a
rollback in that window is a selector switch with no pod start. Then it takes the new template
while serving nothing, <name> switches back to it (identical pods on both sides), and the
candidate's Deployment scales to zero.
"""

from __future__ import annotations

from datetime import datetime

from sluice.api.durations import format_duration, parse_duration
from sluice.api.models import BlueGreenStrategy, ReleaseStatus
from sluice.plan import reasons, steps
from sluice.plan.release import POLL, pause, succeed
from sluice.plan.types import DeploymentIntent, Event, Observed, Plan, seconds_since

PREVIEW, PRE, SWITCH, POST, WARM, FINALIZE = (
    "preview", "prePromotionAnalysis", "switch", "postPromotionAnalysis", "scaleDownDelay", "finalize")


def _spec(obs: Observed) -> BlueGreenStrategy:
    assert obs.policy is not None and obs.policy.strategy.blue_green is not None
    return obs.policy.strategy.blue_green


def step_names(spec: BlueGreenStrategy) -> list[str]:
    names = [PREVIEW]
    if spec.pre_promotion_analysis:
        names.append(PRE)
    names.append(SWITCH)
    if spec.post_promotion_analysis:
        names.append(POST)
    return [*names, WARM]


class BlueGreen:
    name = "blueGreen"

    def steps(self, obs: Observed) -> list[str]:
        return step_names(_spec(obs))

    def step(self, obs: Observed, status: ReleaseStatus, now: datetime, index: int) -> tuple[Plan, bool]:
        spec = _spec(obs)
        names = step_names(spec)
        kind = names[index]
        total = obs.spec.replicas
        switched = index > names.index(SWITCH)
        status.canary_weight = 100 if switched else 0
        result = Plan(status=status, stable=DeploymentIntent("stable", total),
                      canary=DeploymentIntent("candidate", total), preview=True,
                      active="canary" if switched else "stable")
        head = f"step {index + 1}/{len(names)} ({kind})"
        waited = seconds_since(status.step_started_at, now)
        ready = obs.canary.complete(obs.desired_hash, total)
        if not ready:  # never switch to, or stay on, a candidate that is not fully Ready
            return steps.waiting_for_pods(
                obs, status, now, result,
                f"candidate {obs.spec.version} not Ready within {{deadline}} ({obs.canary.ready}/{total} pods ready)",
                f"{head}: {obs.canary.ready}/{total} pods of {obs.spec.version} ready behind the preview")
        if kind == PREVIEW:
            return result, True
        if kind in (PRE, POST):
            where = "preview, " if kind == PRE else "live on the active Service, "
            return steps.analysis_step(obs, status, now, result, head, index, None, where)
        if kind == SWITCH:
            if not spec.auto_promotion:
                waiting = f"{head}: {obs.spec.version} ready behind the preview, waiting for `sluice promote`"
                return pause(obs, status, reasons.WAITING_FOR_PROMOTE, waiting), False
            left = parse_duration(spec.auto_promotion_delay) - waited if spec.auto_promotion_delay else 0.0
            if left > 0:
                status.message = f"{head}: switching to {obs.spec.version} in {format_duration(left)}"
                result.requeue_after = left
                return result, False
            result.events.append(Event("Normal", reasons.STEP_COMPLETED,
                                       f"active Service switched to {obs.spec.version}"))
            return result, True
        left = parse_duration(spec.scale_down_delay) - waited
        if left > 0:
            status.message = (f"{head}: {obs.spec.version} is active; {status.stable_version} kept warm "
                              f"{format_duration(left)} more for an instant rollback")
            result.requeue_after = left
            return result, False
        return result, True

    def promote(self, obs: Observed, status: ReleaseStatus, now: datetime) -> Plan:
        total = obs.spec.replicas
        if not obs.stable.complete(obs.desired_hash, total):
            status.canary_weight = 100
            status.message = (f"finalizing {obs.spec.version}: stable Deployment {obs.stable.updated}/{total} "
                              f"updated, {obs.stable.ready}/{total} ready, while the candidate serves")
            return Plan(status=status, stable=DeploymentIntent("candidate", total), preview=True, active="canary",
                        canary=DeploymentIntent("candidate", total), requeue_after=POLL)
        if not obs.preview_settled:
            # The switch back to the stable track must not meet a stale endpoint of the old version:
            # the preview selects it first, and its endpoints show when the controller caught up.
            status.message = f"finalizing {obs.spec.version}: waiting for endpoints to list only the new pods"
            return Plan(status=status, preview=True, preview_track="stable", active="canary",
                        stable=DeploymentIntent("candidate", total), canary=DeploymentIntent("candidate", total),
                        requeue_after=1.0)
        return succeed(obs, status, now, "blue-green switch")

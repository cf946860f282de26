"""The blue-green strategy: the candidate runs at full size behind <name>-preview while <name>
serves the stable version; the cutover rewrites <name>'s selector in one write.

The stable Deployment keeps the old version warm for scaleDownDelay after the switch, so a
rollback in that window is a selector switch with no pod start. A bake (sluice.plan.bake) runs
after the switch and postPromotionAnalysis, the old version warm throughout; scaleDownDelay starts
after it. Then the stable Deployment takes the new template
while serving nothing, <name> switches back to it (identical pods on both sides), and the
candidate's Deployment scales to zero.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sluice.api.durations import format_duration, parse_duration
from sluice.api.models import Bake, BlueGreenStrategy, ReleaseStatus
from sluice.plan import bake, reasons, steps
from sluice.plan.lifecycle import pause, restart_step, succeed
from sluice.plan.types import DeploymentIntent, Event, Observed, Plan, seconds_since

PREVIEW, PRE, SWITCH, POST, WARM, FINALIZE = (
    "preview", "prePromotionAnalysis", "switch", "postPromotionAnalysis", "scaleDownDelay", "finalize")


def _spec(obs: Observed) -> BlueGreenStrategy:
    assert obs.policy is not None and obs.policy.strategy.blue_green is not None
    return obs.policy.strategy.blue_green


def step_names(spec: BlueGreenStrategy, baking: Bake | None = None) -> list[str]:
    """The steps, e.g. ["preview", "switch", "bake 10m", "scaleDownDelay"] with a bake of 10m."""
    names = [PREVIEW]
    if spec.pre_promotion_analysis:
        names.append(PRE)
    names.append(SWITCH)
    if spec.post_promotion_analysis:
        names.append(POST)
    if baking is not None:
        names.append(bake.name(baking))
    return [*names, WARM]


def _before_switch(obs: Observed) -> Literal["stable", "canary"]:
    """What <name> selects before the switch: the stable track, unless it has no Ready pod while
    the candidate has (never nothing). Only while the track holds the candidate's pods alone: a
    rolled-back or superseded version's pods still on the canary track never gain traffic."""
    return "canary" if obs.stable.ready == 0 and obs.canary.ready_only_of(obs.desired_hash) > 0 else "stable"


class BlueGreen:
    name = "blueGreen"

    def steps(self, obs: Observed) -> list[str]:
        assert obs.policy is not None
        return step_names(_spec(obs), obs.policy.bake)

    def step(self, obs: Observed, status: ReleaseStatus, now: datetime, index: int) -> tuple[Plan, bool]:
        spec = _spec(obs)
        names = self.steps(obs)
        kind = names[index]
        total = obs.spec.replicas
        switched = index > names.index(SWITCH)
        result = Plan(status=status, stable=DeploymentIntent("stable", total),
                      canary=DeploymentIntent("candidate", total), preview=True, active=_before_switch(obs))
        head = f"step {index + 1}/{len(names)} ({kind})"
        if not obs.canary.complete(obs.desired_hash, total):
            # Never switch to, or stay on, a candidate short of Ready pods while the old version is
            # warm: the active Service goes back to it at once, and the step waits for readiness.
            status.canary_weight = 0
            if switched and obs.stable.ready == 0 and obs.canary.ready > 0:
                result.active, status.canary_weight = "canary", 100  # the warm side is gone: keep serving
            elif switched and status.unready_since is None:
                result.events.append(Event(
                    "Warning", reasons.TRAFFIC_WITHDRAWN,
                    f"{obs.spec.version} lost readiness ({obs.canary.ready}/{total} pods ready): "
                    f"the active Service is back on {status.stable_version} until it recovers"))
            return steps.waiting_for_pods(
                obs, status, now, result,
                f"candidate {obs.spec.version} not Ready within {{deadline}} ({obs.canary.ready}/{total} pods ready)",
                f"{head}: {obs.canary.ready}/{total} pods of {obs.spec.version} ready behind the preview")
        if switched and status.unready_since is not None:  # recovered: switch again, judge afresh
            restart_step(status, now)
            result.events.append(Event("Normal", reasons.STEP_COMPLETED,
                                       f"{obs.spec.version} Ready again: active Service switched to it again"))
        steps.in_place(status)
        status.canary_weight = 100 if switched else 0
        result.active = "canary" if switched else _before_switch(obs)
        waited = seconds_since(status.step_started_at, now)
        if kind == PREVIEW:
            return result, True
        if kind in (PRE, POST):
            where = "preview, " if kind == PRE else "live on the active Service, "
            return steps.analysis_step(obs, status, now, result, head, index, None, where)
        if obs.policy is not None and kind in bake.names(obs.policy):
            warm = f"{status.stable_version} kept warm ({obs.stable.ready}/{total} ready) for an instant rollback"
            return bake.step(obs, status, now, result, head, index, warm, obs.serving_canary)
        if kind == SWITCH:
            if not spec.auto_promotion:
                waiting = f"{head}: {obs.spec.version} ready behind the preview, waiting for `sluice promote`"
                paused = pause(obs, status, reasons.WAITING_FOR_PROMOTE, waiting)
                paused.events.append(Event("Normal", reasons.WAITING_FOR_PROMOTE,
                                           f"{obs.spec.version} is ready behind the preview and waits for "
                                           "`sluice promote`"))
                return paused, False
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

    def background(self, obs: Observed, status: ReleaseStatus, now: datetime, result: Plan) -> Plan:
        return result  # blue-green has no background analysis

    def promote(self, obs: Observed, status: ReleaseStatus, now: datetime) -> Plan:
        """The stable Deployment takes the new template while the candidate serves; then <name>
        switches back to it once the preview's endpoints list exactly its pods. Both waits are
        bounded by progressDeadline; at the deadline the rollout fails like any other."""
        total = obs.spec.replicas
        if obs.stable.template_hash != obs.desired_hash and not obs.canary.complete(obs.desired_hash, total):
            # Not switched yet (a `promote --full` skipped the steps): never switch to a candidate
            # short of Ready pods; the old version keeps serving while it comes up, within the deadline.
            status.canary_weight = 0
            waiting = Plan(status=status, stable=DeploymentIntent("stable", total),
                           canary=DeploymentIntent("candidate", total), preview=True, active=_before_switch(obs))
            return steps.waiting_for_pods(
                obs, status, now, waiting,
                f"candidate {obs.spec.version} not Ready within {{deadline}} ({obs.canary.ready}/{total} pods ready)",
                f"promoting {obs.spec.version}: {obs.canary.ready}/{total} pods ready behind the preview")[0]
        status.canary_weight = 100
        finalizing = Plan(status=status, stable=DeploymentIntent("candidate", total), preview=True, active="canary",
                          canary=DeploymentIntent("candidate", total))
        if not obs.stable.complete(obs.desired_hash, total):
            return steps.waiting_for_stable(obs, status, now, finalizing, "finalizing")
        if not obs.preview_settled:
            # The switch back to the stable track must not meet a stale endpoint of the old version:
            # the preview selects it first, and its endpoints show when the controller caught up.
            finalizing.preview_track = "stable"
            waiting, _ = steps.waiting_for_pods(
                obs, status, now, finalizing,
                "the endpoints of the preview did not list only the new pods within {deadline}",
                f"finalizing {obs.spec.version}: waiting for endpoints to list only the new pods")
            waiting.requeue_after = min(waiting.requeue_after or 1.0, 1.0)
            return waiting
        return succeed(obs, status, now, "blue-green switch")

"""The canary strategy: step traffic to the candidate, judge it, promote or fail.

Weights follow the steps' setWeight; pause and analysis steps hold the weight of the last
setWeight before them. A step completes only when the candidate runs Ready at that weight,
and the time spent waiting for that counts against progressDeadline.

A policy with a bake (sluice.plan.bake) adds a last step: the candidate at full size takes all
traffic (by replica ratio <name> selects its track alone, as blue-green's cutover does; behind a
route, weight 100) while the stable Deployment stays at full size beside it, warm and serving
nothing, until the bake ends and the promotion is done.
"""

from __future__ import annotations

from datetime import datetime

from sluice.api.durations import format_duration, parse_duration
from sluice.api.models import CanaryStep, Phase, ReleaseStatus
from sluice.plan import analysis, bake, reasons
from sluice.plan import steps as steps_
from sluice.plan.lifecycle import POLL, fail, halted, hold, in_flight, pause, restart_step, succeed
from sluice.plan.types import (
    DeploymentIntent,
    Event,
    Observed,
    Plan,
    canary_replicas,
    deadline,
    effective_weight,
    seconds_since,
)


def weight_at(steps: list[CanaryStep], index: int) -> int:
    """The weight in force at step `index`: that of the last setWeight at or before it.
    weight_at([setWeight 10, pause, setWeight 50], 1) == 10; before any setWeight it is 0;
    past the last step it stays at the last setWeight."""
    weight = 0
    for step in steps[: index + 1]:
        if step.set_weight is not None:
            weight = step.set_weight
    return weight


def describe(step: CanaryStep) -> str:
    if step.set_weight is not None:
        return f"setWeight {step.set_weight}"
    if step.pause is not None:
        return f"pause {step.pause.duration}" if step.pause.duration else "pause until promoted"
    return "analysis"


class Canary:
    name = "canary"

    def steps(self, obs: Observed) -> list[str]:
        assert obs.policy is not None
        return [describe(step) for step in _steps(obs)] + bake.names(obs.policy)

    def step(self, obs: Observed, status: ReleaseStatus, now: datetime, index: int) -> tuple[Plan, bool]:
        steps = _steps(obs)
        if index >= len(steps):
            result, done = _bake(obs, status, now, index)
            return _baking(obs, status, result), done
        return _step(obs, status, now, steps, index)

    def promote(self, obs: Observed, status: ReleaseStatus, now: datetime) -> Plan:
        return _promote(obs, status, now)

    def background(self, obs: Observed, status: ReleaseStatus, now: datetime, result: Plan) -> Plan:
        return _baking(obs, status, _background(obs, status, now, result))


def _steps(obs: Observed) -> list[CanaryStep]:
    assert obs.policy is not None and obs.policy.strategy.canary is not None
    return obs.policy.strategy.canary.steps


def stable_pods(total: int, weight: int) -> int:
    """Stable pods beside a replica-ratio canary at `weight`: the rest of `total`, but never none
    while the canary has less than all the traffic, so a rollback always has Ready pods to go to:
    stable_pods(4, 25) == 3, stable_pods(1, 10) == 1 (a canary pod beside it: 50%),
    stable_pods(4, 80) == 1, stable_pods(4, 100) == 0, stable_pods(0, 50) == 0."""
    if total <= 0:
        return 0
    rest = total - canary_replicas(total, weight)
    return rest if weight >= 100 else max(1, rest)


def _traffic(obs: Observed, status: ReleaseStatus, weight: int) -> tuple[Plan, bool]:
    """Pods and traffic for `weight`; True when the candidate serves exactly that, Ready.
    Traffic follows the candidate's Ready pods at once, down as well as up."""
    total = obs.spec.replicas
    want = canary_replicas(total, weight)
    canary_ok = obs.canary.complete(obs.desired_hash, want)
    ready = min(obs.canary.ready_of(obs.desired_hash), want)
    result = Plan(status=status, canary=DeploymentIntent("candidate", want))
    if obs.gateway:
        # Stable stays at full size; the route carries the share of the weight whose pods are Ready.
        result.stable = DeploymentIntent("stable", total)
        applied = weight if canary_ok else (weight * ready // want if want else 0)
        result.weight = applied
        status.canary_weight = applied
        return result, canary_ok and applied == weight
    # Replica ratio: stable shrinks only by as many pods as the canary has Ready, and never to none;
    # the canary shrinks (a lower weight) only once stable has its pods Ready again.
    stable_target = stable_pods(total, weight)
    result.stable = DeploymentIntent("stable", max(stable_target, total - ready))
    if obs.stable.ready_of(status.stable_hash or "") < stable_target and obs.canary.replicas > want:
        result.canary = DeploymentIntent("candidate", min(obs.canary.replicas, total))
    result.stable_service_selects_canary = True
    status.canary_weight = effective_weight(ready, obs.stable.ready)
    stable_ok = obs.stable.replicas == stable_target and obs.stable.total == stable_target \
        and obs.stable.ready == stable_target
    return result, canary_ok and stable_ok


def all_traffic(obs: Observed, status: ReleaseStatus) -> tuple[Plan, bool]:
    """The bake's pods and traffic: the candidate at full size, and all traffic on it once its pods
    are all Ready; the stable Deployment at full size (warm) beside it, serving nothing. True when
    the candidate takes all traffic. Until then traffic follows Ready pods as at any weight: by
    replica ratio <name> selects both tracks, behind a route the weight is the Ready share.
    With 4 replicas and 3 candidate pods Ready behind a route: weight 75, (plan, False); all 4
    Ready: weight 100, (plan, True); by replica ratio, <name> then selects the canary track alone."""
    total = obs.spec.replicas
    result = Plan(status=status, stable=DeploymentIntent("stable", total), canary=DeploymentIntent("candidate", total))
    complete = obs.canary.complete(obs.desired_hash, total)
    ready = min(obs.canary.ready_of(obs.desired_hash), total)
    if total == 0:  # a Release scaled to zero: no pod to send traffic to, on either side
        result.weight = 0 if obs.gateway else None
        result.stable_service_selects_canary = not obs.gateway
        status.canary_weight = 0
        return result, complete
    if obs.gateway:
        applied = 100 if complete else 100 * ready // total
        result.weight = status.canary_weight = applied
        return result, complete
    if complete:
        result.active = "canary"  # <name> selects the candidate's track alone: the warm stable serves nothing
        status.canary_weight = 100
        return result, True
    result.stable_service_selects_canary = True
    status.canary_weight = effective_weight(ready, obs.stable.ready)
    return result, False


def _baking(obs: Observed, status: ReleaseStatus, result: Plan) -> Plan:
    """A plan made at or past the bake keeps the bake's pods and traffic while the rollout is in
    flight (held for a person included: a hold would otherwise split traffic with the warm stable);
    a rollback's plan is left as it is."""
    if obs.policy is None or obs.policy.bake is None or not in_flight(status) \
            or (status.current_step or 0) < len(_steps(obs)):
        return result
    traffic, _ = all_traffic(obs, status)
    result.stable, result.canary, result.weight = traffic.stable, traffic.canary, traffic.weight
    result.active, result.stable_service_selects_canary = traffic.active, traffic.stable_service_selects_canary
    return result


def _bake(obs: Observed, status: ReleaseStatus, now: datetime, index: int) -> tuple[Plan, bool]:
    """The bake step: all traffic on the candidate, then sluice.plan.bake judges it. A candidate
    that loses Ready pods meanwhile loses its traffic to the warm stable as they go; the bake
    starts again once they are all back."""
    assert obs.policy is not None
    result, in_place = all_traffic(obs, status)
    head = f"step {index + 1}/{index + 1} ({bake.name(obs.policy.bake)})" if obs.policy.bake else f"step {index + 1}"
    if not in_place:
        run = status.analysis_run
        if run is not None and run.step == index:  # it had begun: it begins again with all pods back
            restart_step(status, now)
            result.events.append(Event(
                "Warning", reasons.TRAFFIC_WITHDRAWN,
                f"{obs.spec.version} lost readiness during the bake ({obs.canary.ready}/{obs.spec.replicas} pods "
                f"ready): traffic follows its Ready pods, and the bake starts again once they are all back"))
        total = obs.spec.replicas
        waiting, _ = steps_.waiting_for_pods(
            obs, status, now, result,
            f"candidate {obs.spec.version} not Ready within {{deadline}} ({obs.canary.ready}/{total} pods ready)",
            f"{head}: moving all traffic to {obs.spec.version}, now {status.canary_weight}%, "
            f"{obs.canary.ready}/{total} candidate pods ready")
        return (waiting if halted(status) else _background(obs, status, now, waiting)), False
    steps_.in_place(status)
    breach = bake.failed(obs, status, now, index)
    if breach is not None:
        return breach, False
    result = _background(obs, status, now, result)
    if halted(status):
        return result, False
    warm = (f"{status.stable_version} kept warm ({obs.stable.ready_of(status.stable_hash or '')}/{obs.spec.replicas} "
            "ready) for a rollback")
    serving = obs.route_weight == 100 if obs.gateway else obs.serving_canary
    return bake.step(obs, status, now, result, head, index, warm, serving)


def _step(obs: Observed, status: ReleaseStatus, now: datetime, steps: list[CanaryStep],
          index: int) -> tuple[Plan, bool]:
    step = steps[index]
    weight = weight_at(steps, index)
    result, in_place = _traffic(obs, status, weight)
    head = f"step {index + 1}/{len(steps)}"
    waited = seconds_since(status.step_started_at, now)
    ratio = "" if obs.gateway else " by replica ratio"
    if not in_place:
        want = canary_replicas(obs.spec.replicas, weight)
        waiting, _ = steps_.waiting_for_pods(
            obs, status, now, result,
            f"candidate {obs.spec.version} not Ready within {{deadline}} ({obs.canary.ready}/{want} pods ready)",
            f"{head}: moving to weight {weight}%{ratio}, now {status.canary_weight}%, "
            f"{obs.canary.ready}/{want} candidate pods ready")
        return (waiting if halted(status) else _background(obs, status, now, waiting)), False
    steps_.in_place(status)
    failed = steps_.failed_step(obs, status, now, index, step.analysis.metrics) if step.analysis else None
    if failed is not None:
        return failed, False
    result = _background(obs, status, now, result)
    if halted(status):
        return result, False
    if step.set_weight is not None:
        return result, True
    if step.pause is not None:
        if step.pause.duration is None:
            waiting = pause(obs, status, reasons.WAITING_FOR_PROMOTE,
                            f"{head} (pause): weight {status.canary_weight}%, waiting for `sluice promote`")
            # Said once, as the rollout stops here: a paused rollout is held by _hold_paused from now on.
            waiting.events.append(Event("Normal", reasons.WAITING_FOR_PROMOTE,
                                        f"{obs.spec.version} waits for `sluice promote` at {head} (pause), "
                                        f"weight {status.canary_weight}%"))
            return waiting, False
        left = parse_duration(step.pause.duration) - waited
        if left <= 0:
            return result, True
        status.message = f"{head}: weight {status.canary_weight}%{ratio}, paused for {format_duration(left)} more"
        result.requeue_after = steps_.soonest(result.requeue_after, left)
        return result, False
    assert step.analysis is not None
    context = f"weight {status.canary_weight}%{ratio}, "
    return steps_.analysis_step(obs, status, now, result, head, index, step.analysis.metrics, context)


def _background_metrics(obs: Observed, status: ReleaseStatus) -> list[str] | None:
    """The metrics background analysis runs at the current step, or None when it does not run."""
    assert obs.policy is not None and obs.policy.strategy.canary is not None
    background = obs.policy.strategy.canary.background_analysis
    index = status.current_step or 0
    # A startingStep past the last step still judges before promotion: never a promotion unmeasured.
    start = min(background.starting_step, len(obs.policy.strategy.canary.steps)) if background else 0
    if background is None or index < start or not obs.policy.analysis.metrics:
        return None
    return [m.name for m in obs.policy.analysis.metrics]


def _background(obs: Observed, status: ReleaseStatus, now: datetime, result: Plan) -> Plan:
    """Background analysis from startingStep on, pauses included: it never promotes by itself;
    it fails a rollout, or pauses it for a person when inconclusive."""
    if _background_metrics(obs, status) is None:
        return result
    assert obs.policy is not None
    spec = obs.policy.analysis
    if status.background_run is None:
        status.background_run = analysis.start(-1, now)
    state = analysis.evaluate(status.background_run, list(spec.metrics), spec, now, deadline(obs), background=True)
    if state.outcome == analysis.Outcome.FAILED:
        return fail(obs, status, now, reasons.ANALYSIS_FAILED,
                    "background analysis: " + analysis.evidence(status, state))
    if state.outcome == analysis.Outcome.INCONCLUSIVE and status.phase != Phase.PAUSED:
        paused = pause(obs, status, reasons.ANALYSIS_INCONCLUSIVE, f"paused, background {state.reason}")
        paused.events.append(Event("Warning", reasons.ANALYSIS_INCONCLUSIVE, "background " + state.reason))
        result = paused
    result.measure = tuple(dict.fromkeys((*result.measure, *state.due)))
    result.measure_background = state.due
    result.requeue_after = steps_.soonest(result.requeue_after, 0.0 if state.due else state.next_in)
    return result


def _promote(obs: Observed, status: ReleaseStatus, now: datetime) -> Plan:
    """After the last step the stable Deployment takes the candidate's template; the canary keeps
    serving until the stable runs it Ready at full size, then traffic returns to stable. Background
    analysis must have judged every metric well first: no promotion on missing data."""
    total = obs.spec.replicas
    # The route keeps the weight the last step left (it may have been set in this very pass); after
    # a bake, the candidate keeps all traffic and the stable Deployment serves none while it takes
    # the candidate's template.
    if obs.unmet_requirement:
        status.message = f"all steps passed; promotion waits: {obs.unmet_requirement}"
        waiting = _baking(obs, status, _background(obs, status, now, hold(obs, status)))
        waiting.requeue_after = steps_.soonest(waiting.requeue_after, POLL * 3)
        return waiting
    names = _background_metrics(obs, status)
    if names is not None:
        assert obs.policy is not None
        held = _baking(obs, status, _background(obs, status, now, hold(obs, status)))
        if halted(status):
            return held
        pending = analysis.judged_well(status.background_run, list(obs.policy.analysis.metrics))
        if pending:
            status.message = (f"all steps passed; promotion waits for background analysis to judge "
                              f"{', '.join(pending)}")
            return held
    if not obs.stable.complete(obs.desired_hash, total):
        promoting = _baking(obs, status, hold(obs, status))
        promoting.stable = DeploymentIntent("candidate", total)
        # Also bounded: a stable Deployment that cannot take the new template fails the rollout, and
        # the rollback restores the previous template from status.
        return steps_.waiting_for_stable(obs, status, now, promoting, "promoting")
    return succeed(obs, status, now, f"canary passed {len(_steps(obs))} steps")

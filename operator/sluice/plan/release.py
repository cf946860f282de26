"""The planner's entry point.

plan(observed, now) decides, from what the cluster and status say, what the Deployments,
Services and route should look like, what to measure, and the next status. It is pure: the
handler persists the decided status first and then carries the plan out.

The order of the checks is the safety argument: an owned name taken by someone else stops
everything; re-applying the stable version and `sluice abort` work from any state, broken input
included; broken input then stops the rollout with its traffic withdrawn; only then does a
strategy walk its steps, under the policy the rollout started with.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from pydantic import ValidationError

from sluice.api.models import Phase, ReleaseStatus, RolloutPolicySpec
from sluice.plan import bake, bluegreen, canary, driver, hooks, reasons, requires, rolling
from sluice.plan.lifecycle import (
    direct_rollout,
    fail,
    finalize,
    hands_off,
    in_flight,
    refuse,
    snapshot,
    stalled,
    steady,
)
from sluice.plan.types import Event, Observed, Plan

PROBE_EVERY = 10.0  # seconds between probes of a Release stalled by input its measurements found unusable


def replan(obs: Observed, first: Plan, now: datetime) -> Plan:
    """The plan again, from `first` with this pass's measurements folded into its status.

    A request the first plan left alone (it came as the rollout started, in the same pass) waits
    for the next pass: a request is never applied on top of measurements it has not seen judged,
    so a `promote` cannot restart an analysis run that a measurement of this very pass failed."""
    pending = first.status.request
    second = plan(dataclasses.replace(obs, status=first.status.model_copy(update={"request": None})), now)
    second.events[:0] = first.events
    if pending is not None:
        second.status.request = pending
        if not in_flight(second.status):  # ended meanwhile: a request sent before never applies after
            refuse(second, f"it came as the rollout of {first.status.candidate_version} began, which has "
                   f"ended since ({second.status.phase.value}); send it again if it still stands")
    return second


def plan(obs: Observed, now: datetime) -> Plan:
    """The next Plan for a Release, and the hook Jobs that go with it: the post hooks of a rollout
    that ended in this pass start, and every hook run is brought up to date (sluice.plan.hooks)."""
    tracked = obs.status.model_copy(deep=True)
    events, overdue = hooks.track(obs, tracked, now)  # a hook finished is seen by this very decision
    result = _decide(dataclasses.replace(obs, status=tracked), now)
    hooks.follow(obs, obs.status, result, now, events, overdue)
    return result


def _decide(obs: Observed, now: datetime) -> Plan:
    """The next Plan for a Release. Every path ends in finalize(), which sets the conditions."""
    status = obs.status.model_copy(deep=True)
    obs = dataclasses.replace(obs, live_policy=obs.policy,
                              unmet_requirement=obs.unmet_requirement or requires.unmet(obs.spec, obs.upstream))
    if obs.conflict:
        return finalize(obs, hands_off(status, obs.conflict), now, stalled=reasons.NAME_CONFLICT)
    _adopt_stable(obs, status)
    if status.stable_hash is None:  # a first version needs no policy, but a policyRef naming none is a mistake
        problem = obs.problem or obs.policy_problem
        if problem:
            why = obs.problem_reason if obs.problem else obs.policy_problem_reason
            return finalize(obs, stalled(obs, status, problem), now, stalled=why or reasons.INVALID_SPEC)
        return finalize(obs, direct_rollout(obs, status, now, first=True), now)
    if obs.desired_hash == status.stable_hash:
        result = steady(obs, status, now)
        if obs.problem:
            status.message = obs.problem
        return finalize(obs, result, now, stalled=obs.problem_reason if obs.problem else "")
    obs, events = _with_policy(obs, status)
    request = status.request.action if status.request else None
    if request == "abort" and in_flight(status):
        who = status.request.by if status.request and status.request.by else "a user"
        status.request = None
        result = fail(obs, status, now, reasons.ABORTED, "aborted by " + who, force_rollback=True)
        return finalize(obs, result, now)
    if obs.measure_problem and in_flight(status):
        status.input_problem = obs.measure_problem
    elif obs.probe_ok or not in_flight(status):
        status.input_problem = None
    problem, why = obs.problem, obs.problem_reason
    if not problem and obs.policy is None and obs.spec.policy_ref is not None:
        problem, why = obs.policy_problem or "the RolloutPolicy cannot be read", obs.policy_problem_reason
    if not problem and status.input_problem:
        problem, why = status.input_problem, reasons.INVALID_SPEC
    if problem:
        result = stalled(obs, status, problem)
        result.events[:0] = events
        if status.input_problem and not obs.measure_problem and obs.policy and obs.policy.analysis.metrics:
            # Found while measuring, so only measuring shows it fixed: probe, counting nothing.
            result.measure, result.probe, result.policy = tuple(m.name for m in obs.policy.analysis.metrics), True, \
                obs.policy
            result.requeue_after = PROBE_EVERY
        return finalize(obs, result, now, stalled=why or reasons.INVALID_SPEC)
    if obs.policy is None:
        return finalize(obs, direct_rollout(obs, status, now, first=False), now)
    strategy = obs.policy.strategy
    chosen: driver.Strategy = (canary.Canary() if strategy.canary else
                               bluegreen.BlueGreen() if strategy.blue_green else rolling.Rolling())
    result = driver.plan(obs, status, now, chosen)
    result.events[:0] = events
    result.policy = obs.policy
    return finalize(obs, result, now)


def _adopt_stable(obs: Observed, status: ReleaseStatus) -> None:
    """A status lost (restored from backup, wiped by hand) is rebuilt from the stable Deployment."""
    if status.stable_hash is None and status.candidate_hash is None and obs.stable.exists \
            and obs.stable.template_hash:
        status.stable_hash = obs.stable.template_hash
        status.stable_version = obs.stable.version


def _with_policy(obs: Observed, status: ReleaseStatus) -> tuple[Observed, list[Event]]:
    """The policy this pass runs against: the one the rollout of the desired version started
    with, recorded in status; the live one when a rollout starts (or is retried). An edit of the
    live policy mid-rollout is announced once and applies to the next rollout."""
    retrying = status.request is not None and status.request.action == "retry" \
        and status.phase in (Phase.ROLLED_BACK, Phase.FAILED)
    if status.candidate_hash != obs.desired_hash or retrying:
        return dataclasses.replace(obs, policy=obs.live_policy), []
    recorded = status.policy
    if recorded is None:  # a rollout from before snapshots existed: it keeps the policy as it is now
        status.policy = snapshot(obs)
        return dataclasses.replace(obs, policy=obs.live_policy), []
    try:
        policy = RolloutPolicySpec.model_validate(recorded.spec)
    except ValidationError:
        status.policy = snapshot(obs)
        return dataclasses.replace(obs, policy=obs.live_policy), []
    events: list[Event] = []
    changed = obs.policy_hash is not None and obs.policy_hash != recorded.hash
    if changed and recorded.ignored_hash != obs.policy_hash and in_flight(status):
        recorded.ignored_hash = obs.policy_hash
        events.append(Event(
            "Warning", reasons.POLICY_CHANGED,
            f"RolloutPolicy {recorded.name} changed (generation {recorded.generation} -> {obs.policy_generation}) "
            f"during the rollout of {status.candidate_version}: this rollout keeps the policy it started with; "
            "the change applies to the next rollout (`sluice abort`, then `sluice retry`, applies it now)"))
    return dataclasses.replace(obs, policy=policy), events


def step_list(policy: RolloutPolicySpec) -> list[str]:
    """The steps a policy walks, as `sluice get` lists them."""
    strategy = policy.strategy
    if strategy.canary:
        return [canary.describe(step) for step in strategy.canary.steps] + bake.names(policy)
    if strategy.blue_green:
        return bluegreen.step_names(strategy.blue_green, policy.bake)
    assert strategy.rolling is not None
    return rolling.step_names(strategy.rolling, policy.bake)

"""The rollout machinery every strategy shares: a new candidate, manual requests (promote,
abort, retry, pause, resume), the requirement gate, and walking the steps. A strategy brings
only its steps and its promotion (sluice.plan.canary, .bluegreen, .rolling)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from sluice.api.models import Phase, ReleaseStatus
from sluice.plan import hooks, reasons
from sluice.plan.lifecycle import POLL, add_history, back_to_stable, begin, fail, pause, refuse, restart_step
from sluice.plan.types import Event, Observed, Plan, iso


class Strategy(Protocol):
    """What makes a strategy: its steps, how one step goes, and how the candidate is promoted."""

    name: str

    def steps(self, obs: Observed) -> list[str]:
        """A short description of every step, in order."""

    def step(self, obs: Observed, status: ReleaseStatus, now: datetime, index: int) -> tuple[Plan, bool]:
        """The plan at step `index`, and whether the step is complete."""

    def promote(self, obs: Observed, status: ReleaseStatus, now: datetime) -> Plan:
        """After the last step: make the candidate the stable version."""

    def background(self, obs: Observed, status: ReleaseStatus, now: datetime, result: Plan) -> Plan:
        """Analysis that runs whatever the step, pauses included: it can only fail or pause a rollout."""


def plan(obs: Observed, status: ReleaseStatus, now: datetime, strategy: Strategy) -> Plan:
    events: list[Event] = []
    if status.candidate_hash != obs.desired_hash:
        if status.candidate_hash and status.phase in (Phase.PROGRESSING, Phase.PAUSED):
            add_history(status, "Superseded", f"superseded by {obs.spec.version}", now)
            events.append(Event("Normal", reasons.SUPERSEDED,
                                f"{status.candidate_version} superseded by {obs.spec.version}"))
        begin(obs, status, now, strategy.name)
        status.phase = Phase.PENDING
    result = _plan(obs, status, now, strategy)
    result.events[:0] = events
    return result


def _plan(obs: Observed, status: ReleaseStatus, now: datetime, strategy: Strategy) -> Plan:
    request = status.request.action if status.request else None
    if status.phase in (Phase.ROLLED_BACK, Phase.FAILED):
        if request == "retry":
            return _retry(obs, status, now, strategy)
        hold = back_to_stable(obs, status)
        if request:
            refuse(hold, f"{status.candidate_version} was rolled back; `sluice retry` tries it again")
        return hold
    if request == "abort":
        who = _who(status)
        status.request = None
        return fail(obs, status, now, reasons.ABORTED, "aborted by " + who, force_rollback=True)
    if status.phase == Phase.PENDING:
        if obs.unmet_requirement:
            waiting = f"waiting to roll out {obs.spec.version}: {obs.unmet_requirement}"
            told = status.message == waiting  # one event per reason, not one per pass
            status.message = waiting
            hold = back_to_stable(obs, status)
            hold.canary = None
            if not told:
                hold.events.append(Event("Normal", reasons.REQUIREMENT_NOT_MET, waiting))
            if request:
                refuse(hold, obs.unmet_requirement)
            hold.requeue_after = POLL * 3
            return hold
        gate = hooks.pre_rollout(obs, status, now)
        if gate is not None and gate.failed:  # no traffic ever moved: the rollout ends here
            status.request = None
            return fail(obs, status, now, reasons.HOOK_FAILED, gate.message, force_rollback=True)
        if gate is not None:
            status.message = f"waiting to roll out {obs.spec.version}: {gate.message}"
            hold = back_to_stable(obs, status)
            hold.canary = None
            if request:
                refuse(hold, "preRollout hooks are running; `sluice abort` ends the rollout")
            hold.requeue_after = POLL
            return hold
        status.phase = Phase.PROGRESSING
        status.step_started_at = iso(now)
        status.rollout_started_at = iso(now)
        started = _walk(obs, status, now, strategy)
        started.events.insert(0, Event(
            "Normal", reasons.ROLLOUT_STARTED,
            f"rolling out {obs.spec.version} by {strategy.name} in {len(strategy.steps(obs))} steps; "
            f"stable is {status.stable_version}",
        ))
        return started
    if request in ("pause", "resume"):
        return _user_pause(obs, status, now, request == "pause", strategy)
    if request == "retry":
        if status.phase == Phase.PAUSED and status.pause_reason in (
                reasons.ANALYSIS_FAILED, reasons.PROGRESS_DEADLINE, reasons.ANALYSIS_INCONCLUSIVE):
            status.request = None
            restart_step(status, now)
            status.phase = Phase.PROGRESSING
            return _walk(obs, status, now, strategy)
        # a refused request changes nothing: a rollout paused for a person stays paused
        paused = status.phase == Phase.PAUSED
        held = _hold_paused(obs, status, now, strategy) if paused else _walk(obs, status, now, strategy)
        refuse(held, "there is nothing to retry while the rollout is " + ("paused; `sluice resume` continues it"
                                                                          if paused else "progressing"))
        return held
    if request in ("promote", "promote-full"):
        who = _who(status)
        status.request = None
        steps = strategy.steps(obs)
        index = status.current_step or 0
        target = len(steps) if request == "promote-full" else index + 1
        status.phase = Phase.PROGRESSING
        _advance(status, now, min(target, len(steps)))
        result = _walk(obs, status, now, strategy)
        named = f" ({steps[index]})" if index < len(steps) else ""
        applied = f"step {index + 1}{named} promoted by {who}" if request == "promote" else f"promoted fully by {who}"
        result.events.insert(0, Event("Normal", reasons.REQUEST_APPLIED, applied))
        return result
    if status.phase == Phase.PAUSED:
        return _hold_paused(obs, status, now, strategy)
    return _walk(obs, status, now, strategy)


def _who(status: ReleaseStatus) -> str:
    return (status.request.by if status.request and status.request.by else "a user")


def _retry(obs: Observed, status: ReleaseStatus, now: datetime, strategy: Strategy) -> Plan:
    status.request = None
    version, before = status.candidate_version, status.policy
    begin(obs, status, now, strategy.name)
    status.phase = Phase.PENDING  # a new rollout: its gates (requires, preRollout hooks) hold it first
    result = _plan(obs, status, now, strategy)
    message = f"retrying {version} from the first step"
    after = status.policy
    if before is not None and after is not None and before.hash != after.hash:
        message += (f" under RolloutPolicy {after.name} as it is now (generation {after.generation}; "
                    f"the attempt before ran generation {before.generation})")
    result.events.insert(0, Event("Normal", reasons.REQUEST_APPLIED, message))
    return result


def _advance(status: ReleaseStatus, now: datetime, to: int) -> None:
    status.current_step = to
    restart_step(status, now)


def _user_pause(obs: Observed, status: ReleaseStatus, now: datetime, pause: bool, strategy: Strategy) -> Plan:
    who = _who(status)
    status.request = None
    if pause:
        status.pause_reason = reasons.PAUSED
        held = _hold_paused(obs, status, now, strategy)
        held.events.insert(0, Event("Normal", reasons.REQUEST_APPLIED, f"paused by {who}"))
        return held
    if status.phase != Phase.PAUSED or status.pause_reason != reasons.PAUSED:
        result = _walk(obs, status, now, strategy)
        result.status.request = status.request
        result.events.append(Event("Warning", reasons.REQUEST_REFUSED,
                                   "resume refused: the rollout was not paused by a user; "
                                   "a pause step or a held analysis is ended by `sluice promote`"))
        return result
    status.phase = Phase.PROGRESSING
    restart_step(status, now)  # a timed pause or an analysis starts again after a manual pause
    resumed = _walk(obs, status, now, strategy)
    resumed.events.insert(0, Event("Normal", reasons.REQUEST_APPLIED, f"resumed by {who}"))
    return resumed


def _hold_paused(obs: Observed, status: ReleaseStatus, now: datetime, strategy: Strategy) -> Plan:
    """Everything stays where it is: weights, pods, timers; background analysis goes on, so a
    candidate going bad while it waits for a person is still caught."""
    steps = strategy.steps(obs)
    index = status.current_step or 0
    why = {
        reasons.PAUSED: "paused by a user; `sluice resume` continues",
        reasons.WAITING_FOR_PROMOTE: "waiting for `sluice promote`",
    }.get(status.pause_reason or "", "")
    message = f"step {index + 1}/{len(steps)} ({steps[min(index, len(steps) - 1)]}): {why}" if why \
        else status.message
    held = pause(obs, status, status.pause_reason or reasons.PAUSED, message)
    return strategy.background(obs, status, now, held)


def _walk(obs: Observed, status: ReleaseStatus, now: datetime, strategy: Strategy) -> Plan:
    """Carry the rollout forward through as many steps as are complete now."""
    steps = strategy.steps(obs)
    events: list[Event] = []
    for _ in range(len(steps) + 1):
        index = status.current_step or 0
        if index >= len(steps):
            result = strategy.promote(obs, status, now)
            result.events[:0] = events
            return result
        result, done = strategy.step(obs, status, now, index)
        if not done:  # waiting, or the step stopped the rollout (a failure, a pause)
            result.events[:0] = events
            return result
        events.append(Event("Normal", reasons.STEP_COMPLETED,
                            f"step {index + 1}/{len(steps)} ({steps[index]}) complete"))
        _advance(status, now, index + 1)
    raise AssertionError("unreachable: every pass advances a step or returns")

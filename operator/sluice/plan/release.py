"""The planner's entry point and what every strategy shares.

plan(observed, now) decides, from what the cluster and status say, what the Deployments,
Services and route should look like, what to measure, and the next status. It is pure: the
handler carries the plan out and writes the status once.
"""

from __future__ import annotations

from datetime import datetime

from sluice.api.durations import format_duration, parse_duration
from sluice.api.models import HistoryEntry, OnFailure, Phase, ReleaseStatus
from sluice.plan import reasons
from sluice.plan.conditions import set_condition
from sluice.plan.types import DeploymentIntent, Event, Observed, Plan, iso, seconds_since

DEFAULT_DEADLINE = "10m"
MAX_HISTORY = 10
POLL = 5.0  # seconds between passes while waiting on pods; watch events usually come sooner


def plan(obs: Observed, now: datetime) -> Plan:
    """The next Plan for a Release. Every path ends in finalize(), which sets the conditions."""
    from sluice.plan import bluegreen, canary, driver, rolling  # strategies build on the helpers below

    status = obs.status.model_copy(deep=True)
    if obs.problem:
        return finalize(obs, Plan(status=_stalled(status, obs.problem)), now, stalled=obs.problem_reason)
    _adopt_stable(obs, status)
    if status.stable_hash is None:
        return finalize(obs, direct_rollout(obs, status, now, first=True), now)
    if obs.desired_hash == status.stable_hash:
        return finalize(obs, steady(obs, status, now), now)
    if obs.policy is None:
        return finalize(obs, direct_rollout(obs, status, now, first=False), now)
    strategy = obs.policy.strategy
    chosen: driver.Strategy = (canary.Canary() if strategy.canary else
                               bluegreen.BlueGreen() if strategy.blue_green else rolling.Rolling())
    return finalize(obs, driver.plan(obs, status, now, chosen), now)


def _stalled(status: ReleaseStatus, problem: str) -> ReleaseStatus:
    status.message = problem
    status.request = None
    return status


def _adopt_stable(obs: Observed, status: ReleaseStatus) -> None:
    """A status lost (restored from backup, wiped by hand) is rebuilt from the stable Deployment."""
    if status.stable_hash is None and status.candidate_hash is None and obs.stable.exists \
            and obs.stable.template_hash:
        status.stable_hash = obs.stable.template_hash
        status.stable_version = obs.stable.version


def deadline(obs: Observed) -> float:
    return parse_duration(obs.policy.progress_deadline if obs.policy else DEFAULT_DEADLINE)


def restart_step(status: ReleaseStatus, now: datetime) -> None:
    """The current step starts afresh: its timer, its analysis runs, no pause reason."""
    status.step_started_at = iso(now)
    status.analysis_run = None
    status.background_run = None
    status.pause_reason = None


def begin(obs: Observed, status: ReleaseStatus, now: datetime, strategy: str) -> None:
    """Status for a fresh rollout of the desired version."""
    status.candidate_version = obs.spec.version
    status.candidate_hash = obs.desired_hash
    status.current_step = 0
    status.rollout_started_at = iso(now)
    status.canary_weight = 0
    status.phase = Phase.PROGRESSING
    status.strategy = strategy
    restart_step(status, now)


def add_history(status: ReleaseStatus, outcome: str, reason: str, now: datetime) -> None:
    status.history.append(HistoryEntry(
        version=status.candidate_version or "", outcome=outcome,
        started_at=status.rollout_started_at or iso(now), finished_at=iso(now), reason=reason,
        template_hash=status.candidate_hash or "",
    ))
    status.history = status.history[-MAX_HISTORY:]


def clear_candidate(status: ReleaseStatus) -> None:
    status.candidate_version = None
    status.candidate_hash = None
    status.analysis_run = None
    status.background_run = None
    status.pause_reason = None
    status.canary_weight = 0


def halted(status: ReleaseStatus) -> bool:
    """The plan stopped the rollout: rolled back, failed, or paused (for a person to act)."""
    return status.phase in (Phase.ROLLED_BACK, Phase.FAILED, Phase.PAUSED)


def refuse(plan: Plan, why: str) -> None:
    """A manual request that does not apply: said in an event, and the request is cleared."""
    request = plan.status.request
    if request:
        plan.events.append(Event("Warning", reasons.REQUEST_REFUSED, f"{request.action} refused: {why}"))
    plan.status.request = None


def hold(obs: Observed, status: ReleaseStatus) -> Plan:
    """Everything stays where it is. The route keeps the weight in status, which may have been
    decided in this very pass (a setWeight completing just before a pause), so it is written."""
    blue_green = status.strategy == "blueGreen"
    return Plan(status=status, weight=status.canary_weight if obs.gateway and not blue_green else None,
                stable_service_selects_canary=not obs.gateway and status.strategy == "canary",
                active="canary" if blue_green and status.canary_weight == 100 else "stable",
                preview=blue_green)


def pause(obs: Observed, status: ReleaseStatus, reason: str, message: str) -> Plan:
    """The rollout waits for a person (promote, resume, retry or abort), everything held in place."""
    status.phase = Phase.PAUSED
    status.pause_reason = reason
    status.message = message
    return hold(obs, status)


def back_to_stable(obs: Observed, status: ReleaseStatus) -> Plan:
    """All traffic on stable first (route weight 0 or the Service selecting stable pods only),
    then the canary scaled to zero: the handler writes the route and Services before Deployments."""
    status.canary_weight = 0
    return Plan(
        status=status,
        stable=DeploymentIntent("stable", obs.spec.replicas),
        canary=DeploymentIntent("candidate", 0) if obs.canary.exists else None,
        weight=0,
        stable_service_selects_canary=False,
        preview=status.strategy == "blueGreen",
    )


def succeed(obs: Observed, status: ReleaseStatus, now: datetime, why: str) -> Plan:
    """The candidate is the stable version now: history, event, and traffic on the stable track."""
    version = obs.spec.version
    status.stable_version, status.stable_hash = version, obs.desired_hash
    status.phase = Phase.SUCCEEDED
    add_history(status, "Succeeded", why, now)
    clear_candidate(status)
    status.message = f"{version} is stable: {obs.spec.replicas}/{obs.spec.replicas} pods ready"
    done = back_to_stable(obs, status)
    done.events.append(Event("Normal", reasons.PROMOTED, f"{version} promoted to stable"))
    return done


def direct_rollout(obs: Observed, status: ReleaseStatus, now: datetime, first: bool) -> Plan:
    """The stable Deployment takes the desired template in place: the first version of a Release
    (nothing to compare with), or any version when the Release names no policy."""
    if status.candidate_hash != obs.desired_hash:
        begin(obs, status, now, "initial" if first else "rolling")
    replicas = obs.spec.replicas
    plan = back_to_stable(obs, status)
    plan.stable = DeploymentIntent("candidate", replicas)
    if status.request:
        refuse(plan, "a direct rollout has no steps to steer")
    if obs.stable.complete(obs.desired_hash, replicas):
        status.current_step = None
        return succeed(obs, status, now, "first version" if first else "rolling update")
    limit = deadline(obs)
    waited = seconds_since(status.rollout_started_at, now)
    progress = f"{obs.stable.ready}/{replicas} pods of {obs.spec.version} ready"
    if waited > limit:
        if status.phase != Phase.FAILED:
            add_history(status, "Failed", f"not Ready within {format_duration(limit)}", now)
            plan.events.append(Event("Warning", reasons.PROGRESS_DEADLINE,
                                     f"{obs.spec.version} not Ready within {format_duration(limit)}"))
        status.phase = Phase.FAILED
        status.message = f"{obs.spec.version} not Ready within {format_duration(limit)}: {progress}"
        plan.requeue_after = POLL * 6
        return plan
    status.phase = Phase.PROGRESSING
    kind = "first version" if first else "rolling update to"
    status.message = f"{kind} {obs.spec.version}: {progress}"
    plan.requeue_after = min(POLL, limit - waited + 1)
    return plan


def steady(obs: Observed, status: ReleaseStatus, now: datetime) -> Plan:
    """The desired version is the stable one. A rollout still under way is abandoned at once:
    re-applying the stable version is a fast rollback."""
    plan = back_to_stable(obs, status)
    if status.candidate_hash is not None and status.candidate_hash != status.stable_hash:
        if status.phase in (Phase.PROGRESSING, Phase.PAUSED):
            why = f"stable version {status.stable_version} re-applied"
            add_history(status, "RolledBack", why, now)
            plan.events.append(Event(
                "Warning", reasons.FAST_ROLLBACK,
                f"rollout of {status.candidate_version} abandoned: {why}; all traffic is on {status.stable_version}",
            ))
        clear_candidate(status)
    if status.request:
        refuse(plan, f"{status.stable_version} is stable and there is no rollout to act on")
    status.phase = Phase.SUCCEEDED
    replicas = obs.spec.replicas
    ready = obs.stable.complete(status.stable_hash or "", replicas)
    status.message = f"{status.stable_version} is stable: {obs.stable.ready}/{replicas} pods ready"
    plan.requeue_after = None if ready else POLL
    return plan


def fail(obs: Observed, status: ReleaseStatus, now: datetime, reason: str, message: str,
         force_rollback: bool = False) -> Plan:
    """A rollout that cannot go on: back to stable, or frozen in place when the policy says pause."""
    assert obs.policy is not None
    candidate = status.candidate_version
    if force_rollback or obs.policy.on_failure == OnFailure.ROLLBACK:
        status.phase = Phase.ROLLED_BACK
        status.pause_reason = None
        add_history(status, "RolledBack", message, now)
        plan = back_to_stable(obs, status)
        plan.events.append(Event(
            "Warning", reasons.ROLLED_BACK,
            f"rolled back {candidate}: {message}; all traffic is on {status.stable_version}",
        ))
        status.message = f"rolled back {candidate}: {message}. `sluice retry` to try it again"
        return plan
    plan = pause(obs, status, reason,
                 f"paused on failure (onFailure: pause), traffic held at {status.canary_weight}%: "
                 f"{message}. `sluice retry`, `sluice promote` or `sluice abort`")
    plan.events.append(Event("Warning", reasons.ROLLOUT_PAUSED, f"{candidate} paused: {message}"))
    return plan


def finalize(obs: Observed, plan: Plan, now: datetime, stalled: str = "") -> Plan:
    """observedGeneration and the kstatus conditions, from the phase the plan arrived at."""
    status = plan.status
    status.observed_generation = obs.generation
    stamp = iso(now)
    gen = obs.generation
    phase = status.phase
    ready = (not stalled and phase == Phase.SUCCEEDED
             and obs.stable.complete(status.stable_hash or "", obs.spec.replicas)
             and obs.desired_hash == status.stable_hash)
    failed_pause = phase == Phase.PAUSED and status.pause_reason in (
        reasons.ANALYSIS_FAILED, reasons.PROGRESS_DEADLINE)
    stall_reason = stalled or (
        reasons.ROLLED_BACK if phase == Phase.ROLLED_BACK
        else reasons.FAILED if phase == Phase.FAILED
        else status.pause_reason if failed_pause else "")
    reconciling = not stall_reason and not ready and phase in (Phase.PENDING, Phase.PROGRESSING, Phase.SUCCEEDED)
    conditions = status.conditions
    conditions = set_condition(conditions, reasons.READY, ready,
                               reasons.ROLLED_OUT if ready else (stall_reason or phase.value),
                               status.message, stamp, gen)
    conditions = set_condition(conditions, reasons.RECONCILING, reconciling,
                               reasons.PROGRESSING if reconciling else phase.value,
                               status.message if reconciling else "", stamp, gen)
    conditions = set_condition(conditions, reasons.STALLED, bool(stall_reason), stall_reason or "None",
                               status.message if stall_reason else "", stamp, gen)
    status.conditions = conditions
    status.replicas = {"stable": obs.stable.ready, "canary": obs.canary.ready}
    return plan

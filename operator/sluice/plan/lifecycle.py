"""What every rollout shares, whatever its strategy: starting one, holding it, pausing it, failing
it, promoting it, standing still while input is broken, and the kstatus conditions every pass ends
with. The strategies (canary, bluegreen, rolling) and the driver build on these; release.plan()
chooses between them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sluice.api.durations import format_duration
from sluice.api.models import (
    HistoryEntry,
    OnFailure,
    PendingEvent,
    Phase,
    PolicySnapshot,
    ReleaseStatus,
    StableSpec,
)
from sluice.plan import changes, hooks, reasons
from sluice.plan.conditions import set_condition
from sluice.plan.types import IN_FLIGHT, DeploymentIntent, Event, Observed, Plan, deadline, iso, seconds_since

MAX_HISTORY = 10
MAX_EVENTS = 20  # the outbox keeps the last decision's events, bounded
POLL = 5.0  # seconds between passes while waiting on pods; watch events usually come sooner


def in_flight(status: ReleaseStatus) -> bool:
    """A candidate is being rolled out (it may hold traffic) and nothing has ended it yet."""
    return status.candidate_hash is not None and status.phase in IN_FLIGHT


def restart_step(status: ReleaseStatus, now: datetime) -> None:
    """The current step starts afresh: its timer, its analysis runs, no pause reason."""
    status.step_started_at = iso(now)
    status.analysis_run = None
    status.background_run = None
    status.pause_reason = None
    status.unready_since = None


def snapshot(obs: Observed) -> PolicySnapshot | None:
    """The live policy, recorded in status: the rollout runs against it to its end."""
    if obs.live_policy is None or obs.spec.policy_ref is None:
        return None
    return PolicySnapshot(
        name=obs.spec.policy_ref.name, generation=obs.policy_generation, hash=obs.policy_hash or "",
        spec=obs.live_policy.model_dump(by_alias=True, exclude_none=True, mode="json"),
    )


def begin(obs: Observed, status: ReleaseStatus, now: datetime, strategy: str) -> None:
    """Status for a fresh rollout of the desired version, under the policy as it is now."""
    status.candidate_version = obs.spec.version
    status.candidate_hash = obs.desired_hash
    status.current_step = 0
    status.rollout_started_at = iso(now)
    status.rollout_id = hooks.rollout_id(obs.desired_hash, iso(now), status.event_seq)
    status.canary_weight = 0
    status.phase = Phase.PROGRESSING
    status.strategy = strategy
    status.policy = snapshot(obs)
    status.input_problem = None
    restart_step(status, now)


def add_history(status: ReleaseStatus, outcome: str, reason: str, now: datetime,
                changed: list[str] | None = None) -> None:
    status.history.append(HistoryEntry(
        version=status.candidate_version or "", outcome=outcome,
        started_at=status.rollout_started_at or iso(now), finished_at=iso(now), reason=reason,
        template_hash=status.candidate_hash or "", changes=changed or [],
    ))
    status.history = status.history[-MAX_HISTORY:]


def clear_candidate(status: ReleaseStatus) -> None:
    status.candidate_version = None
    status.candidate_hash = None
    status.analysis_run = None
    status.background_run = None
    status.pause_reason = None
    status.canary_weight = 0
    status.policy = None
    status.unready_since = None
    status.input_problem = None


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
    """Everything stays where it is, but a candidate with no Ready pod never keeps traffic. The
    route keeps the weight in status, which may have been decided in this very pass (a setWeight
    completing just before a pause), so it is written."""
    blue_green, canary = status.strategy == "blueGreen", status.strategy == "canary"
    serving = obs.canary.ready_of(obs.desired_hash) > 0
    if canary and not serving:
        status.canary_weight = 0
    active: Literal["stable", "canary"] = "canary" if blue_green and status.canary_weight == 100 else "stable"
    if active == "canary" and not serving and obs.stable.ready > 0:
        active, status.canary_weight = "stable", 0
    weight = (status.canary_weight if canary else 0) if obs.gateway and not blue_green else None
    # A stable Deployment deleted meanwhile is rebuilt, at full size, from status.stableSpec.
    rebuild = DeploymentIntent("stable", obs.spec.replicas) if not obs.stable.exists and (canary or blue_green) \
        else None
    return Plan(status=status, weight=weight, stable_service_selects_canary=not obs.gateway and canary,
                active=active, preview=blue_green, stable=rebuild)


def pause(obs: Observed, status: ReleaseStatus, reason: str, message: str) -> Plan:
    """The rollout waits for a person (promote, resume, retry or abort), everything held in place."""
    status.phase = Phase.PAUSED
    status.pause_reason = reason
    status.message = message
    return hold(obs, status)


def back_to_stable(obs: Observed, status: ReleaseStatus) -> Plan:
    """All traffic on stable first (route weight 0 or the Service selecting stable pods only),
    then the candidate scaled to zero: the handler writes the route and Services before
    Deployments. While the stable track has no Ready pod and the candidate has, the candidate keeps
    serving (never more than now) and keeps its pods: traffic never lands on nothing."""
    before = status.canary_weight
    status.canary_weight = 0
    blue_green = status.strategy == "blueGreen"
    stable_ready = obs.stable.ready_of(status.stable_hash or "")
    if stable_ready == 0 and obs.canary.ready > 0 and obs.canary.exists:
        status.canary_weight = before
        return Plan(
            status=status, stable=DeploymentIntent("stable", obs.spec.replicas), canary=None,
            # blue-green serves through <name>'s selector alone: its route weight stays 0
            weight=(0 if blue_green else before) if obs.gateway else None,
            stable_service_selects_canary=not obs.gateway and not blue_green,
            active="canary" if blue_green and before == 100 else "stable",
            preview=blue_green, requeue_after=1.0,
        )
    return Plan(
        status=status,
        stable=DeploymentIntent("stable", obs.spec.replicas),
        canary=DeploymentIntent("candidate", 0) if obs.canary.exists else None,
        weight=0,
        stable_service_selects_canary=False,
        preview=blue_green,
    )


def succeed(obs: Observed, status: ReleaseStatus, now: datetime, why: str) -> Plan:
    """The candidate is the stable version now: history, event, and traffic on the stable track."""
    version = obs.spec.version
    changed = changes_of(obs, status)  # against the stable spec this promotion replaces
    status.stable_version, status.stable_hash = version, obs.desired_hash
    status.stable_spec = stable_spec(obs)
    status.phase = Phase.SUCCEEDED
    add_history(status, "Succeeded", why, now, changed)
    clear_candidate(status)
    status.message = f"{version} is stable: {obs.spec.replicas}/{obs.spec.replicas} pods ready"
    done = back_to_stable(obs, status)
    done.events.append(Event("Normal", reasons.PROMOTED, f"{version} promoted to stable"))
    return done


def stable_spec(obs: Observed) -> StableSpec:
    """What rebuilds the desired version's Deployment from status alone."""
    return StableSpec(version=obs.spec.version,
                      template=obs.spec.template.model_dump(by_alias=True, exclude_none=True, mode="json"))


def changes_of(obs: Observed, status: ReleaseStatus) -> list[str]:
    """What the desired version changes against the stable one (plan.changes), for history: the
    deployment report reads it after the previous template is gone from status."""
    return changes.between(status.stable_spec, obs.spec.version,
                           obs.spec.template.model_dump(by_alias=True, exclude_none=True, mode="json"))


def direct_rollout(obs: Observed, status: ReleaseStatus, now: datetime, first: bool) -> Plan:
    """The stable Deployment takes the desired template in place: the first version of a Release
    (nothing to compare with), or any version when the Release names no policy."""
    retry = status.request is not None and status.request.action == "retry" and status.phase == Phase.FAILED
    applied: list[Event] = []
    if status.candidate_hash != obs.desired_hash or retry:
        if retry:
            status.request = None
            applied.append(Event("Normal", reasons.REQUEST_APPLIED, f"retrying {obs.spec.version}"))
        begin(obs, status, now, "initial" if first else "rolling")
    replicas = obs.spec.replicas
    kind = "first version" if first else "rolling update to"
    gate = hooks.pre_rollout(obs, status, now)
    if gate is not None:  # the Deployments stay as they are until the preRollout hooks succeed
        held = Plan(status=status, events=applied)
        if status.request:
            refuse(held, "preRollout hooks are running" if not gate.failed else gate.message)
        if gate.failed:
            if status.phase != Phase.FAILED:
                add_history(status, "Failed", gate.message, now, changes_of(obs, status))
                held.events.append(Event("Warning", reasons.HOOK_FAILED, f"{obs.spec.version} not rolled out: "
                                         f"{gate.message}"))
            status.phase = Phase.FAILED
            status.message = f"{obs.spec.version} not rolled out: {gate.message}; `sluice retry` runs the hooks again"
            return held
        status.message = f"{kind} {obs.spec.version}: {gate.message}"
        held.requeue_after = POLL
        return held
    plan = back_to_stable(obs, status)
    plan.stable = DeploymentIntent("candidate", replicas)
    plan.events[:0] = applied
    if status.request:
        refuse(plan, "a direct rollout has no steps to steer")
    if obs.stable.complete(obs.desired_hash, replicas):
        status.current_step = None
        return succeed(obs, status, now, "first version" if first else "rolling update")
    limit = deadline(obs)
    waited = seconds_since(hooks.pre_rollout_done_at(status) or status.rollout_started_at, now)
    progress = f"{obs.stable.ready}/{replicas} pods of {obs.spec.version} ready"
    if waited > limit:
        if status.phase != Phase.FAILED:
            add_history(status, "Failed", f"not Ready within {format_duration(limit)}", now,
                        changes_of(obs, status))
            plan.events.append(Event("Warning", reasons.PROGRESS_DEADLINE,
                                     f"{obs.spec.version} not Ready within {format_duration(limit)}"))
        status.phase = Phase.FAILED
        status.message = f"{obs.spec.version} not Ready within {format_duration(limit)}: {progress}"
        plan.requeue_after = POLL * 6
        return plan
    status.phase = Phase.PROGRESSING
    status.message = f"{kind} {obs.spec.version}: {progress}"
    plan.requeue_after = min(POLL, limit - waited + 1)
    return plan


def steady(obs: Observed, status: ReleaseStatus, now: datetime) -> Plan:
    """The desired version is the stable one. A rollout still under way is abandoned at once:
    re-applying the stable version is a fast rollback, from any state."""
    abandoned = status.candidate_hash is not None and status.candidate_hash != status.stable_hash
    event = None
    if abandoned and status.phase in IN_FLIGHT:
        why = f"stable version {status.stable_version} re-applied"
        add_history(status, "RolledBack", why, now)
        event = Event("Warning", reasons.FAST_ROLLBACK,
                      f"rollout of {status.candidate_version} abandoned: {why}; "
                      f"all traffic is on {status.stable_version}")
    plan = back_to_stable(obs, status)
    if event:
        plan.events.append(event)
    if abandoned:
        still_serving = status.canary_weight
        clear_candidate(status)
        status.canary_weight = still_serving
    if status.stable_spec is None or status.stable_spec.version != obs.spec.version:
        status.stable_spec = stable_spec(obs)
    if status.request:
        refuse(plan, f"{status.stable_version} is stable and there is no rollout to act on")
    status.phase = Phase.SUCCEEDED
    replicas = obs.spec.replicas
    ready = obs.stable.complete(status.stable_hash or "", replicas)
    status.message = f"{status.stable_version} is stable: {obs.stable.ready}/{replicas} pods ready"
    plan.requeue_after = None if ready and obs.canary.ready == 0 else POLL
    return plan


def fail(obs: Observed, status: ReleaseStatus, now: datetime, reason: str, message: str,
         force_rollback: bool = False) -> Plan:
    """A rollout that cannot go on: back to stable, or frozen in place when the policy says pause."""
    candidate = status.candidate_version
    if force_rollback or obs.policy is None or obs.policy.on_failure == OnFailure.ROLLBACK:
        status.phase = Phase.ROLLED_BACK
        status.pause_reason = None
        status.unready_since = None
        add_history(status, "RolledBack", message, now,
                    changes_of(obs, status) if status.candidate_hash == obs.desired_hash else None)
        plan = back_to_stable(obs, status)
        next_move = git_still_asks(obs, status)
        plan.events.append(Event(
            "Warning", reasons.ROLLED_BACK,
            f"rolled back {candidate}: {message}; all traffic is on {status.stable_version}. {next_move}",
        ))
        status.message = f"rolled back {candidate}: {message}. {next_move}"
        return plan
    plan = pause(obs, status, reason,
                 f"paused on failure (onFailure: pause), traffic held at {status.canary_weight}%: "
                 f"{message}. `sluice retry`, `sluice promote` or `sluice abort`")
    plan.events.append(Event("Warning", reasons.ROLLOUT_PAUSED, f"{candidate} paused: {message}"))
    return plan


def git_still_asks(obs: Observed, status: ReleaseStatus) -> str:
    """What a person does after a rollback. The spec (Git, for a GitOps user) still names the
    rolled-back version, so Sluice will not ship it again by itself and nothing will until the
    spec changes or someone retries: say so, naming both ways out. For a spec naming 1.2.0,
    rolled back to 1.1.0: "Git still asks for 1.2.0: revert the commit to stay on 1.1.0, or
    `sluice retry` to try 1.2.0 again".
    """
    wanted = obs.spec.version
    if status.candidate_version != wanted or status.candidate_hash != obs.desired_hash:
        return "`sluice retry` to try it again"
    return (f"Git still asks for {wanted}: revert the commit to stay on {status.stable_version}, "
            f"or `sluice retry` to try {wanted} again")


def stalled(obs: Observed, status: ReleaseStatus, problem: str) -> Plan:
    """Input Sluice cannot act on. Nothing new starts; a candidate in flight can no longer be
    judged, so it loses its traffic (its pods stay warm) until the input is fixed."""
    status.message = problem
    if not in_flight(status):
        plan = Plan(status=status, preview=status.strategy == "blueGreen")
        refuse(plan, f"the Release is stalled: {problem}")
        return plan
    plan = back_to_stable(obs, status)
    plan.canary = None  # kept warm: traffic comes back when the input is fixed
    if status.canary_weight:
        status.message = f"{problem}; the candidate keeps {status.canary_weight}% until a stable pod is Ready"
    refuse(plan, f"the Release is stalled: {problem}")
    return plan


def hands_off(status: ReleaseStatus, problem: str) -> Plan:
    """An owned name belongs to someone else: write nothing to the cluster at all."""
    status.message = problem
    plan = Plan(status=status, hands_off=True)
    refuse(plan, problem)
    return plan


def record_events(plan: Plan) -> None:
    """The pass's events go into status as the outbox, each with an id that names its Event
    object, so that posting them after the status write is idempotent across restarts."""
    if not plan.events:
        return
    status = plan.status
    outbox: list[PendingEvent] = []
    for event in plan.events:
        status.event_seq += 1
        outbox.append(PendingEvent(id=str(status.event_seq), type=event.type, reason=event.reason,
                                   message=event.message[:1024]))
    status.events = outbox[-MAX_EVENTS:]


def _never_nothing(obs: Observed, plan: Plan) -> None:
    """Whatever a plan decided, serving something beats serving nothing. While the stable track
    has no Ready pod, the candidate's Ready pods are not scaled away; and the Service <name> never
    selects a track with no Ready pod while the other has some (a stable track that lost its pods
    by itself keeps the candidate serving until they are back). With no Ready pod on either
    track, it selects stable: traffic never goes to a candidate that has none. The canary track
    gains traffic only for the candidate in flight, and only if that candidate's own pods are
    Ready and alone on the track (no superseded or rolled-back version's pod is); a candidate no
    longer in flight (rolled back, failed, abandoned for the stable version) keeps the traffic it
    has, but never gains any: a rollback sticks."""
    if plan.hands_off:
        return
    if not in_flight(plan.status) and plan.weight is not None and obs.gateway:
        # a candidate no longer in flight keeps at most the route weight it has now (an act that
        # would have given it more may have been lost)
        plan.weight = min(plan.weight, obs.route_weight or 0)
        plan.status.canary_weight = min(plan.status.canary_weight or 0, plan.weight)
    if plan.canary is not None and plan.canary.replicas < obs.canary.replicas and obs.canary.ready > 0 \
            and obs.stable.ready == 0:
        plan.canary = DeploymentIntent(plan.canary.template, obs.canary.replicas)
    if plan.stable_service_selects_canary:
        return
    kept = plan.canary is None or plan.canary.replicas > 0
    ready = {"stable": obs.stable.ready, "canary": obs.canary.ready if kept else 0}
    other: Literal["stable", "canary"] = "canary" if plan.active == "stable" else "stable"
    if other == "canary" and not obs.serving_canary and (
            not in_flight(plan.status) or obs.canary.ready_only_of(plan.status.candidate_hash or "") == 0):
        return
    if ready[plan.active] == 0 and (ready[other] > 0 or plan.active == "canary"):
        plan.active = other


def finalize(obs: Observed, plan: Plan, now: datetime, stalled: str = "") -> Plan:
    """observedGeneration and the kstatus conditions, from the phase the plan arrived at.

    kstatus (what Flux's `wait` and kpt read) decides on Reconciling (InProgress) and Stalled
    (Failed) first; by its conventions an object with neither is done reconciling. So a rollout
    that waits for a person says Reconciling=True: the desired version is not serving yet, and a
    GitOps tool that waits must keep waiting. Argo CD's health check
    (integrations/argocd/health.lua) reads the same fields.

    | phase                                   | Ready | Reconciling            | Stalled |
    | Pending, Progressing                    | False | True: Progressing      | False   |
    | Pending behind a `requires` gate        | False | True: RequirementNotMet| False   |
    | Paused for a person (pause, promote     | False | True: the pause reason | False   |
    |   gate, inconclusive analysis)          |       |   (WaitingForPromote)  |         |
    | Succeeded, every stable pod Ready       | True  | False                  | False   |
    | Succeeded, pods not all Ready yet       | False | True: Progressing      | False   |
    | RolledBack, Failed, paused on failure,  | False | False                  | True    |
    |   invalid input, a write the API server |       |                        |         |
    |   refused (until one succeeds)          |       |                        |         |
    """
    status = plan.status
    status.observed_generation = obs.generation
    _never_nothing(obs, plan)
    stamp, gen, phase = iso(now), obs.generation, status.phase
    ready = (not stalled and phase == Phase.SUCCEEDED
             and obs.stable.complete(status.stable_hash or "", obs.spec.replicas)
             and obs.desired_hash == status.stable_hash)
    failed_pause = phase == Phase.PAUSED and status.pause_reason in (
        reasons.ANALYSIS_FAILED, reasons.PROGRESS_DEADLINE)
    refused = not stalled and obs.refused is not None
    stall_reason = stalled or (reasons.REFUSED_BY_API if refused else "") or (
        reasons.ROLLED_BACK if phase == Phase.ROLLED_BACK
        else reasons.FAILED if phase == Phase.FAILED
        else status.pause_reason or reasons.PAUSED if failed_pause else "")
    reconciling = not stall_reason and not ready
    waiting_reason = ((status.pause_reason or reasons.PAUSED) if phase == Phase.PAUSED
                      else reasons.REQUIREMENT_NOT_MET if phase == Phase.PENDING and obs.unmet_requirement
                      else reasons.PROGRESSING)
    message = status.message
    conditions = status.conditions
    conditions = set_condition(conditions, reasons.READY, ready,
                               reasons.ROLLED_OUT if ready else (stall_reason or waiting_reason),
                               message, stamp, gen)
    conditions = set_condition(conditions, reasons.RECONCILING, reconciling,
                               waiting_reason if reconciling else phase.value,
                               message if reconciling else "", stamp, gen)
    conditions = set_condition(conditions, reasons.STALLED, bool(stall_reason), stall_reason or phase.value,
                               (obs.refused or "") if refused else message if stall_reason else "", stamp, gen)
    status.conditions = conditions
    status.replicas = {"stable": obs.stable.ready, "canary": obs.canary.ready}
    return plan


def unreadable(status: ReleaseStatus, message: str, now: datetime, generation: int | None) -> ReleaseStatus:
    """Status for a Release the operator cannot even read (the schema should have refused it):
    Stalled, neither Ready nor Reconciling, and observedGeneration says which spec that was."""
    broken = status.model_copy(deep=True)
    broken.message = message
    broken.observed_generation = generation
    stamp = iso(now)
    phase = broken.phase.value
    broken.conditions = set_condition(broken.conditions, reasons.READY, False, reasons.INVALID_SPEC, message,
                                      stamp, generation)
    broken.conditions = set_condition(broken.conditions, reasons.RECONCILING, False, phase, "", stamp, generation)
    broken.conditions = set_condition(broken.conditions, reasons.STALLED, True, reasons.INVALID_SPEC, message,
                                      stamp, generation)
    return broken

"""Hooks: the Jobs a Release runs around a rollout (a backup and a database migration before it,
a cache purge or a smoke test after it), decided here and created by the reconcile pass.

Each hook runs once per rollout. Its Job is named from the rollout's id (status.rolloutId, new for
every rollout, retries included) and the hook, and the decision to run it is recorded in
status.hooks before the Job is created: an operator restarted at any point finds the entry and
the Job, and never runs a migration twice. Hooks of a stage run one after another, in order, and
no hook starts while a hook of an earlier rollout still runs (two migrations never overlap).

- preRollout hooks gate the rollout: no traffic moves, and no candidate pod starts, until every
  one has succeeded; a failure fails the rollout (`pre_rollout`).
- postPromotion and postRollback hooks start when a rollout ends that way (`follow`); a failure
  is reported (status, a Warning event, the report) and changes nothing else.

Every hook has a timeout (its own, or the policy's progressDeadline): the Job gets it as
activeDeadlineSeconds, and past it (and a grace period) Sluice fails the hook itself and deletes
the Job, so a Job controller that never answers cannot hold a rollout.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sluice.api.durations import format_duration, parse_duration
from sluice.api.models import Hook, HookRun, Phase, ReleaseSpec, ReleaseStatus
from sluice.plan import reasons
from sluice.plan.types import IN_FLIGHT, Event, Observed, Plan, deadline, iso, seconds_since

Stage = Literal["preRollout", "postPromotion", "postRollback"]
MAX_RUNS = 20  # status.hooks keeps the latest runs; Jobs of older ones are deleted
GRACE = 30.0  # seconds past a hook's timeout before Sluice stops waiting for the Job controller
FINISHED = ("Succeeded", "Failed")


def rollout_id(candidate_hash: str, started: str, seq: int) -> str:
    """The id of a rollout, fixed when it begins: the candidate, the time and the event sequence
    (which every ended rollout has moved on), so a retry in the same second is a new rollout."""
    return hashlib.sha256(f"{candidate_hash}/{started}/{seq}".encode()).hexdigest()[:10]


def current_rollout(status: ReleaseStatus) -> str:
    """The id of the rollout status describes; one written before ids existed gets one from its
    candidate and start time."""
    return status.rollout_id or rollout_id(status.candidate_hash or "", status.rollout_started_at or "", 0)


def job_name(release: str, stage: Stage, hook: str, rollout: str) -> str:
    """A DNS label of at most 63 characters, the same for one hook of one rollout on every pass:
    job_name("checkout", "preRollout", "migrate", "a1b2c3d4e5") == "checkout-migrate-" + 8 hex."""
    digest = hashlib.sha256(f"{stage}/{hook}/{rollout}".encode()).hexdigest()[:8]
    return f"{release[:33].rstrip('-')}-{hook}-{digest}"


def hooks_of(spec: ReleaseSpec, stage: str) -> list[Hook]:
    if spec.hooks is None:
        return []
    return {"preRollout": spec.hooks.pre_rollout, "postPromotion": spec.hooks.post_promotion,
            "postRollback": spec.hooks.post_rollback}.get(stage, [])


def find(spec: ReleaseSpec, stage: str, name: str) -> Hook | None:
    return next((hook for hook in hooks_of(spec, stage) if hook.name == name), None)


def timeout(hook: Hook | None, obs: Observed) -> float:
    """The hook's own timeout, else the policy's progressDeadline: one deadline bounds every wait."""
    if hook is not None and hook.timeout:
        return parse_duration(hook.timeout)
    return deadline(obs)


def runs(status: ReleaseStatus, rollout: str, stage: Stage) -> list[HookRun]:
    return [run for run in status.hooks if run.rollout == rollout and run.stage == stage]


def _start(obs: Observed, status: ReleaseStatus, stage: Stage, hook: Hook, rollout: str, version: str,
           now: datetime) -> HookRun:
    run = HookRun(rollout=rollout, stage=stage, hook=hook.name, version=version,
                  job=job_name(obs.name, stage, hook.name, rollout), started_at=iso(now))
    status.hooks.append(run)
    return run


def _finish(run: HookRun, state: Literal["Succeeded", "Failed"], message: str, now: datetime) -> Event:
    run.state, run.message, run.finished_at = state, message[:1024], iso(now)
    what = f"{run.stage} hook {run.hook} of {run.version} (Job {run.job})"
    if state == "Succeeded":
        return Event("Normal", reasons.HOOK_SUCCEEDED, f"{what} succeeded")
    return Event("Warning", reasons.HOOK_FAILED, f"{what} failed: {message}")


def track(obs: Observed, status: ReleaseStatus, now: datetime) -> tuple[list[Event], list[str]]:
    """Every unfinished run brought up to date with its Job: (events, Jobs to delete)."""
    events: list[Event] = []
    overdue: list[str] = []
    for run in status.hooks:
        if run.state in FINISHED:
            continue
        hook = find(obs.spec, run.stage, run.hook)
        limit = timeout(hook, obs)
        late = seconds_since(run.started_at, now) > limit + GRACE
        job = obs.jobs.get(run.job)
        if job is None:
            if run.state == "Running":
                events.append(_finish(run, "Failed", f"Job {run.job} was deleted before it finished", now))
            elif hook is None:
                events.append(_finish(run, "Failed", "the hook was removed from the Release before its Job "
                                      "was created", now))
            elif late:
                events.append(_finish(run, "Failed", f"Job {run.job} could not be created within "
                                      f"{format_duration(limit)}", now))
            continue
        if job.succeeded:
            events.append(_finish(run, "Succeeded", f"Job {run.job} succeeded", now))
        elif job.failed:
            why = f" ({job.reason})" if job.reason else ""
            tail = f"; its log ends: {job.log}" if job.log else ""
            events.append(_finish(run, "Failed", f"Job {run.job} failed{why}{tail}", now))
        elif late:
            events.append(_finish(run, "Failed", f"Job {run.job} did not finish within {format_duration(limit)}",
                                  now))
            overdue.append(run.job)
        else:
            run.state = "Running"
    return events, overdue


@dataclass(frozen=True)
class Gate:
    """preRollout hooks still keep the rollout from moving (a wait) or have failed it."""

    failed: bool
    message: str


def pre_rollout(obs: Observed, status: ReleaseStatus, now: datetime) -> Gate | None:
    """Whether the preRollout hooks let the current rollout move traffic: None once every one of
    them has succeeded (or there are none). Starts the next hook when its turn comes."""
    hooks = hooks_of(obs.spec, "preRollout")
    if not hooks:
        return None
    rollout = current_rollout(status)
    done = runs(status, rollout, "preRollout")
    for index, hook in enumerate(hooks):
        run = next((r for r in done if r.hook == hook.name), None)
        if run is None:
            earlier = next((r for r in status.hooks if r.state not in FINISHED and r.rollout != rollout), None)
            if earlier is not None:
                return Gate(False, f"preRollout hook {hook.name} waits for hook {earlier.hook} of {earlier.version} "
                                   f"(Job {earlier.job}) to finish")
            run = _start(obs, status, "preRollout", hook, rollout, status.candidate_version or obs.spec.version,
                         now)
        if run.state == "Failed":
            return Gate(True, f"preRollout hook {hook.name} failed: {run.message}")
        if run.state != "Succeeded":
            return Gate(False, f"preRollout hook {index + 1}/{len(hooks)} ({hook.name}, Job {run.job}) "
                               f"{'running' if run.state == 'Running' else 'starting'}")
    return None


def pre_rollout_done_at(status: ReleaseStatus) -> str | None:
    """When the current rollout's last preRollout hook finished (its waits count from then)."""
    finished = [r.finished_at for r in runs(status, current_rollout(status), "preRollout") if r.finished_at]
    return max(finished) if finished else None


def follow(obs: Observed, before: ReleaseStatus, plan: Plan, now: datetime, events: list[Event],
           overdue: list[str]) -> None:
    """After the planner decided, on runs `track` brought up to date (its `events` and `overdue`
    Jobs): start the post hooks of a rollout that ended in this pass (promoted, or rolled back),
    start each next hook of a post stage, and name the Jobs to create and to delete."""
    if plan.hands_off:
        return
    status = plan.status
    delete = list(overdue)
    if before.candidate_hash and before.phase in IN_FLIGHT:
        rollout, version = current_rollout(before), before.candidate_version or ""
        promoted = status.phase == Phase.SUCCEEDED and status.stable_hash == before.candidate_hash
        rolled_back = status.phase == Phase.ROLLED_BACK or (
            status.phase == Phase.SUCCEEDED and status.stable_hash != before.candidate_hash)
        stage: Stage | None = "postPromotion" if promoted else "postRollback" if rolled_back else None
        if stage is not None and not runs(status, rollout, stage):
            first = hooks_of(obs.spec, stage)[:1]
            for hook in first:
                _start(obs, status, stage, hook, rollout, version, now)
    post: tuple[Stage, ...] = ("postPromotion", "postRollback")
    for after in post:
        for rollout in dict.fromkeys(r.rollout for r in status.hooks if r.stage == after):
            started = runs(status, rollout, after)
            hooks = hooks_of(obs.spec, after)
            if all(r.state == "Succeeded" for r in started) and len(started) < len(hooks):
                _start(obs, status, after, hooks[len(started)], rollout, started[-1].version, now)
    _trim(status)
    known = {run.job for run in status.hooks}
    delete += [name for name, job in obs.jobs.items() if name not in known and not job.active]
    plan.events[:0] = events
    plan.jobs = _next(status, now)
    plan.delete_jobs = tuple(dict.fromkeys(delete))


def _next(status: ReleaseStatus, now: datetime) -> tuple[HookRun, ...]:
    """The one run whose Job may be created now: the first Pending one, if no run before it is
    still Running. One hook Job at a time per Release, whatever the stage or rollout, so that a
    postRollback restore never overlaps a migration still running. A run waiting its turn has
    not started: its timeout counts from when its turn comes."""
    running = any(run.state == "Running" for run in status.hooks)
    pending = [run for run in status.hooks if run.state == "Pending"]
    for waiting in pending[0 if running else 1:]:
        waiting.started_at = iso(now)
    return () if running or not pending else (pending[0],)


def _trim(status: ReleaseStatus) -> None:
    """The latest MAX_RUNS runs, and every unfinished one whatever its age."""
    extra = len(status.hooks) - MAX_RUNS
    if extra <= 0:
        return
    kept: list[HookRun] = []
    for index, run in enumerate(status.hooks):
        if index >= extra or run.state not in FINISHED:
            kept.append(run)
    status.hooks = kept

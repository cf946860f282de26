"""Steps every strategy shares: an analysis run at one step, and small timing helpers."""

from __future__ import annotations

from datetime import datetime

from sluice.api.durations import format_duration
from sluice.api.models import ReleaseStatus
from sluice.plan import analysis, reasons
from sluice.plan.lifecycle import POLL, fail, pause
from sluice.plan.types import Event, Observed, Plan, deadline, iso, seconds_since


def analysis_step(obs: Observed, status: ReleaseStatus, now: datetime, result: Plan, head: str,
                  index: int, names: list[str] | None, context: str = "") -> tuple[Plan, bool]:
    """An analysis step: measure `count` times at `interval`; (plan, True) once it passed.
    `context` opens the status message, e.g. "weight 20%, "."""
    assert obs.policy is not None
    spec = obs.policy.analysis
    metrics = analysis.selected(spec, names)
    if not metrics:  # refused at apply time and by judge.problems; never a pass with nothing measured
        return fail(obs, status, now, reasons.ANALYSIS_FAILED,
                    f"analysis step {index + 1} would run no metric (names: {', '.join(names or [])})"), False
    if status.analysis_run is None or status.analysis_run.step != index:
        status.analysis_run = analysis.start(index, now)
    state = analysis.evaluate(status.analysis_run, metrics, spec, now, deadline(obs))
    if state.outcome == analysis.Outcome.FAILED:
        return fail(obs, status, now, reasons.ANALYSIS_FAILED, analysis.evidence(status, state)), False
    if state.outcome == analysis.Outcome.INCONCLUSIVE:
        paused = pause(obs, status, reasons.ANALYSIS_INCONCLUSIVE, f"{head}: paused, {state.reason}")
        paused.events.append(Event("Warning", reasons.ANALYSIS_INCONCLUSIVE, state.reason))
        return paused, False
    if state.outcome == analysis.Outcome.PASSED:
        return result, True
    done = judged(status)
    status.message = (f"{head}: {context}analysis {done}/{spec.count * len(metrics)} "
                      f"measurements{last_verdict(status)}")
    result.measure = tuple(dict.fromkeys((*result.measure, *state.due)))
    result.measure_step = state.due
    result.requeue_after = soonest(result.requeue_after, 0.0 if state.due else state.next_in)
    return result, False


def failed_step(obs: Observed, status: ReleaseStatus, now: datetime, index: int,
                names: list[str] | None) -> Plan | None:
    """The failure of analysis step `index`'s own run, or None. A strategy with background analysis
    asks this first: in a pass where a step measurement failed (an abortCondition met) and a
    background one was inconclusive, the rollout fails; it is not paused for a person who might
    promote past the failure."""
    run = status.analysis_run
    if obs.policy is None or run is None or run.step != index:
        return None
    spec = obs.policy.analysis
    state = analysis.evaluate(run, analysis.selected(spec, names), spec, now, deadline(obs))
    if state.outcome != analysis.Outcome.FAILED:
        return None
    return fail(obs, status, now, reasons.ANALYSIS_FAILED, analysis.evidence(status, state))


def waiting_for_pods(obs: Observed, status: ReleaseStatus, now: datetime, result: Plan, late: str,
                     progress: str) -> tuple[Plan, bool]:
    """Pods are not where the step needs them: wait, within progressDeadline from the moment
    they were first seen short (status.unreadySince), not from the step's start, so a pod that
    flaps late in a long pause gets the whole deadline to recover. `late` completes
    "... within <deadline>", `progress` is the status message meanwhile."""
    limit = deadline(obs)
    if status.unready_since is None:
        status.unready_since = iso(now)
    waited = seconds_since(status.unready_since, now)
    if waited > limit:
        return fail(obs, status, now, reasons.PROGRESS_DEADLINE, late.format(deadline=format_duration(limit))), False
    status.message = progress
    result.requeue_after = soonest(result.requeue_after, min(POLL, limit - waited + 0.5))
    return result, False


def waiting_for_stable(obs: Observed, status: ReleaseStatus, now: datetime, result: Plan, doing: str) -> Plan:
    """The stable Deployment is taking the candidate's template (a promotion finishing), within
    progressDeadline. `doing` opens the status message: "promoting", "finalizing"."""
    total = obs.spec.replicas
    counts = f"{obs.stable.updated}/{total} updated, {obs.stable.ready}/{total} ready"
    waiting, _ = waiting_for_pods(
        obs, status, now, result,
        f"stable Deployment not rolled out to {obs.spec.version} within {{deadline}} ({counts})",
        f"{doing} {obs.spec.version}: stable Deployment {counts}")
    return waiting


def in_place(status: ReleaseStatus) -> None:
    """The pods are where the step needs them: a later shortfall gets a fresh deadline."""
    status.unready_since = None


def judged(status: ReleaseStatus) -> int:
    run = status.analysis_run
    if run is None:
        return 0
    return sum(c.successful + c.failed + c.inconclusive for c in run.metrics.values())


def last_verdict(status: ReleaseStatus) -> str:
    mine = [m for m in status.analysis if m.version == status.candidate_version]
    if not mine:
        return ""
    last = mine[-1]
    value = "" if last.value is None else f" = {last.value:g}"
    return f", last {last.metric}{value} {last.verdict.value}"


def soonest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)



"""The bake (RolloutPolicy spec.bake): after the candidate took all the traffic, keep judging it
for `bake.duration` before it becomes the stable version, with the previous version kept warm so
that a breach puts the traffic back on pods that are already Ready.

The bake is a step of its own, the last before promotion: after a canary's last step (the
candidate on the canary track at full size and 100%, the stable Deployment at full size beside
it, serving nothing), after blue-green's switch and postPromotionAnalysis (scaleDownDelay starts
after it), and after a rolling update (which keeps nothing warm: a breach rolls back in place).
`sluice get` lists it as "bake 10m"; the Release is not Succeeded before it ends.

Its clock starts when the candidate takes 100% (the step's analysis run starts then), and starts
again if the candidate loses its Ready pods meanwhile, or its traffic (input the operator could not
use stalled the Release, which withdraws it). Its metrics (bake.metrics; absent: all)
are measured every interval and counted like any analysis run (failureLimit,
consecutiveErrorLimit, noData, minSamples, abortCondition, progressDeadline), but `count` does
not end it: its duration does. At the end every metric needs a last look, a Successful
measurement taken at or after the end; a run with any Inconclusive measurement pauses for a
person instead. A breach fails the rollout (onFailure applies). `sluice promote` ends a bake
early, `sluice abort` rolls back, `sluice pause` / `resume` start it again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sluice.api.durations import format_duration, parse_duration
from sluice.api.models import AnalysisRun, Bake, Metric, ReleaseStatus, RolloutPolicySpec, Verdict
from sluice.plan import analysis, reasons, steps
from sluice.plan.lifecycle import fail, pause, restart_step
from sluice.plan.types import Event, Observed, Plan, deadline, parse_time, seconds_since


def name(bake: Bake) -> str:
    """The bake as `sluice get` lists it among the steps: name(Bake(duration="10m")) == "bake 10m"."""
    return f"bake {bake.duration}"


def names(policy: RolloutPolicySpec) -> list[str]:
    """The bake's step name, or none: what a strategy adds to its steps."""
    return [name(policy.bake)] if policy.bake is not None else []


def metrics(policy: RolloutPolicySpec) -> list[Metric]:
    """The metrics a bake runs: those bake.metrics names, all of the policy's when it names none."""
    assert policy.bake is not None
    return analysis.selected(policy.analysis, policy.bake.metrics)


def ends_at(run: AnalysisRun, bake: Bake) -> datetime:
    """When a bake ends: its duration after its run started, i.e. after the candidate took 100%.
    ends_at(AnalysisRun(step=5, started_at="2026-11-28T12:00:00Z"), Bake(duration="10m")) is 12:10:00."""
    return parse_time(run.started_at) + timedelta(seconds=parse_duration(bake.duration))


def last_look(status: ReleaseStatus, metric: str, index: int, end: datetime) -> Verdict | None:
    """The verdict of the latest measurement of `metric` at bake step `index` for the candidate,
    if it was taken at or after `end`; None if there is none yet (or it fell out of the bounded
    status.analysis: the metric is then measured again, never waived). With measurements of
    error-rate at 12:09:30 (Successful) and 12:10:00 (Failed) and end 12:10:00, it is Failed;
    with only the one at 12:09:30, None."""
    for measurement in reversed(status.analysis):
        if measurement.metric == metric and measurement.step == index \
                and measurement.version == status.candidate_version:
            return measurement.verdict if parse_time(measurement.at) >= end else None
    return None


def unsettled(status: ReleaseStatus, run: AnalysisRun, chosen: list[Metric], index: int,
              end: datetime) -> list[str]:
    """The metrics without their last look yet at the end of a bake: no Successful measurement
    at or after the end that the run counted, with nothing pending (waiting for data, or errors
    in a row) after it. A bake never ends on data Sluice does not have."""
    out = []
    for metric in chosen:
        counts = run.metrics.get(metric.name)
        settled = (counts is not None and counts.successful > 0 and counts.waiting_since is None
                   and counts.consecutive_errors == 0 and counts.last_measured_at is not None
                   and parse_time(counts.last_measured_at) >= end
                   and last_look(status, metric.name, index, end) == Verdict.SUCCESSFUL)
        if not settled:
            out.append(metric.name)
    return out


def failed(obs: Observed, status: ReleaseStatus, now: datetime, index: int) -> Plan | None:
    """The failure of the bake's own run at step `index`, or None: asked first, like
    steps.failed_step, so a breach is never paused for a person by an inconclusive background run."""
    run = status.analysis_run
    if obs.policy is None or obs.policy.bake is None or run is None or run.step != index:
        return None
    state = analysis.evaluate(run, metrics(obs.policy), obs.policy.analysis, now, deadline(obs), bake=True)
    if state.outcome != analysis.Outcome.FAILED:
        return None
    return _breach(obs, status, now, run, state)


def _breach(obs: Observed, status: ReleaseStatus, now: datetime, run: AnalysisRun,
            state: analysis.RunState) -> Plan:
    assert obs.policy is not None and obs.policy.bake is not None
    baked = format_duration(seconds_since(run.started_at, now))
    return fail(obs, status, now, reasons.ANALYSIS_FAILED,
                f"bake ({baked} of {obs.policy.bake.duration} at 100%): {analysis.evidence(status, state)}")


def step(obs: Observed, status: ReleaseStatus, now: datetime, result: Plan, head: str, index: int,
         warm: str, serving: bool = True) -> tuple[Plan, bool]:
    """The bake at step `index`, with the candidate taking all traffic in `result` (the strategy
    put it there); (plan, True) once it ended well. `warm` says what a rollback goes back to, e.g.
    "1.4.1 kept warm" or "nothing kept warm: a breach rolls back in place". `serving`: the cluster
    as observed sends the candidate all traffic; a bake begun in an earlier pass that finds it not
    so (a stall withdrew it, an act was lost) begins again: its time counts at 100% only.

    With duration 10m and interval 1m: measured as it starts (12:00:00), every minute after; at
    12:10:00 every metric is measured once more whatever its interval, and if that last look is
    Successful the step is complete in the same pass. A Failed last look within failureLimit is
    looked at again an interval later; a metric waiting for data waits within progressDeadline.
    """
    policy = obs.policy
    assert policy is not None and policy.bake is not None
    chosen = metrics(policy)
    if not chosen:  # refused at apply time (CEL, the models): never a bake with nothing measured
        return fail(obs, status, now, reasons.ANALYSIS_FAILED, "the bake would run no metric"), False
    version = obs.spec.version
    run = status.analysis_run
    if run is not None and run.step == index and not serving and seconds_since(run.started_at, now) > 0:
        restart_step(status, now)
        result.events.append(Event(
            "Warning", reasons.TRAFFIC_WITHDRAWN,
            f"{version} was found without all traffic during the bake: the bake starts again as it gets it back"))
    if status.analysis_run is None or status.analysis_run.step != index:
        status.analysis_run = analysis.start(index, now)
        result.events.append(Event(
            "Normal", reasons.BAKE_STARTED,
            f"{version} takes all traffic: baking {policy.bake.duration} with {', '.join(m.name for m in chosen)} "
            f"before promotion; {warm}"))
    run = status.analysis_run
    state = analysis.evaluate(run, chosen, policy.analysis, now, deadline(obs), bake=True)
    if state.outcome == analysis.Outcome.FAILED:
        return _breach(obs, status, now, run, state), False
    if state.outcome == analysis.Outcome.INCONCLUSIVE:  # no data past progressDeadline, noData: inconclusive
        paused = pause(obs, status, reasons.ANALYSIS_INCONCLUSIVE, f"{head}: bake paused, {state.reason}")
        paused.events.append(Event("Warning", reasons.ANALYSIS_INCONCLUSIVE, "bake: " + state.reason))
        return paused, False
    end = ends_at(run, policy.bake)
    left = (end - now).total_seconds()
    due = state.due
    if left <= 0:
        inconclusive = [m.name for m in chosen if m.name in run.metrics and run.metrics[m.name].inconclusive]
        if inconclusive:
            why = (f"the bake of {policy.bake.duration} was inconclusive for {', '.join(inconclusive)}: no data or "
                   "neither condition held; promote to accept, retry to bake again, or abort")
            paused = pause(obs, status, reasons.ANALYSIS_INCONCLUSIVE, f"{head}: paused, {why}")
            paused.events.append(Event("Warning", reasons.ANALYSIS_INCONCLUSIVE, why))
            return paused, False
        pending = unsettled(status, run, chosen, index, end)
        if not pending:
            return result, True
        # The last look: a metric not measured since the end is measured now, whatever its interval.
        late = [name for name in pending
                if (counts := run.metrics.get(name)) is None or counts.last_measured_at is None
                or parse_time(counts.last_measured_at) < end]
        due = tuple(dict.fromkeys((*due, *late)))
        status.message = (f"{head}: baked {policy.bake.duration} at 100%; waiting for a last Successful look "
                          f"at {', '.join(pending)}{steps.last_verdict(status)}; {warm}")
    else:
        status.message = (f"{head}: baking {version} at 100%, {format_duration(left)} left, "
                          f"{steps.judged(status)} measurements{steps.last_verdict(status)}; {warm}")
    result.measure = tuple(dict.fromkeys((*result.measure, *due)))
    result.measure_step = due
    wake = 0.0 if due else state.next_in
    result.requeue_after = steps.soonest(result.requeue_after, steps.soonest(wake, left if left > 0 else None))
    return result, False

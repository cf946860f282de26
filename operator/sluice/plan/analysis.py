"""Analysis runs as pure bookkeeping: which metrics are due, folding results in, the outcome.

Counters live in status (AnalysisRun), so a restart neither repeats nor forgets a measurement.
The judge (sluice.analysis.judge) turns a query result into a verdict; this module only counts.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sluice.api.durations import format_duration, parse_duration
from sluice.api.models import Analysis, AnalysisRun, Measurement, Metric, MetricRun, NoData, ReleaseStatus, Verdict
from sluice.plan.types import Plan, Result, iso, seconds_since, show

MAX_MEASUREMENTS = 30  # status.analysis keeps the most recent ones, across metrics
FIRST_POLL = 2.0  # seconds between measurements of a metric with nothing judged yet (at most the interval)


class Outcome(StrEnum):
    RUNNING = "Running"
    PASSED = "Passed"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"


@dataclass(frozen=True)
class RunState:
    outcome: Outcome
    reason: str  # a sentence for status.message when the run failed or is inconclusive
    due: tuple[str, ...]  # metrics to measure now
    next_in: float | None  # seconds until the next metric is due
    waiting: bool  # nothing judged yet: every measurement so far was Waiting
    metric: str | None = None  # the metric that failed the run
    tripped: bool = False  # ...by meeting its abortCondition: the reason names the value already


def selected(analysis: Analysis, names: list[str] | None) -> list[Metric]:
    """The metrics an analysis step names; all of them when it names none."""
    if not names:
        return list(analysis.metrics)
    return [m for m in analysis.metrics if m.name in names]


def start(step: int, now: datetime) -> AnalysisRun:
    return AnalysisRun(step=step, started_at=iso(now))


def period(counts: MetricRun, interval: float) -> float:
    """Seconds from a metric's last measurement to its next. Until the metric has a judged
    measurement (all so far Waiting: no data yet, or below minSamples) it is polled every
    FIRST_POLL seconds, so its first verdict comes as soon as the data exists; from then on,
    every interval. An Error does not quicken it: consecutiveErrorLimit counts errors an
    interval apart, so a Prometheus restart is not four errors in six seconds.
    period(MetricRun(), 30) == 2.0; period(MetricRun(successful=1), 30) == 30;
    period(MetricRun(consecutive_errors=1), 30) == 30; period(MetricRun(), 1) == 1. A job metric's Job
    still running is looked at every FIRST_POLL seconds: period(MetricRun(successful=1, job="j"), 30) == 2.0."""
    judged = counts.successful + counts.failed + counts.inconclusive
    if counts.job is None and (judged or counts.consecutive_errors):
        return interval
    return min(FIRST_POLL, interval)  # nothing judged yet, or a Job of a job metric still running


def evaluate(run: AnalysisRun, metrics: list[Metric], analysis: Analysis, now: datetime,
             deadline: float, background: bool = False, bake: bool = False) -> RunState:
    """Where a run stands. A step run passes after `count` judged measurements of every metric
    (a measurement with no data that noData: fail counts as a failure is not one of them: a step
    never completes on data Sluice does not have); a background run never passes: it fails, or is
    inconclusive at its first inconclusive result. A bake run (`bake`) neither passes nor is
    inconclusive here: it measures every interval until its duration ends, and sluice.plan.bake
    judges it then; it fails like any other.
    A metric is first measured as soon as its run starts, polled every FIRST_POLL seconds while it
    has nothing judged, then measured every interval (see period()); background runs alike, so a
    promotion that waits for background analysis waits for data, not for an interval.
    A metric waiting for data (or traffic) longer than `deadline` gets its noData verdict:
    inconclusive pauses the run for a person, hold and fail fail it. A failure of any metric
    beats another's inconclusive: a person asked to accept an inconclusive result is never
    asked to accept a failure with it.
    One measurement that met a metric's abortCondition fails any run at once, before any other
    rule, whatever failureLimit says."""
    tripped = _tripped(run, metrics)
    if tripped is not None:
        return tripped
    interval = parse_duration(analysis.interval)
    due: list[str] = []
    next_in: float | None = None
    judged_any = False
    inconclusive: list[str] = []
    late: RunState | None = None  # a metric past the deadline with noData: inconclusive
    finished = True
    for metric in metrics:
        counts = run.metrics.get(metric.name, MetricRun())
        if counts.failed > metric.failure_limit:
            return RunState(
                Outcome.FAILED,
                f"metric {metric.name} failed {counts.failed} time(s), more than failureLimit "
                f"{metric.failure_limit}", (), None, False, metric.name,
            )
        if counts.consecutive_errors >= metric.consecutive_error_limit:
            return RunState(
                Outcome.FAILED,
                f"metric {metric.name} could not be measured {counts.consecutive_errors} times in a row "
                f"(consecutiveErrorLimit {metric.consecutive_error_limit})", (), None, False, metric.name,
            )
        waited = seconds_since(counts.waiting_since, now) if counts.waiting_since else 0.0
        if waited > deadline:
            limit = format_duration(deadline)
            if counts.waiting_for_traffic:
                return RunState(Outcome.FAILED, f"metric {metric.name}: no usable data for {limit} (progressDeadline): "
                                "too little traffic to judge (minSamples)", (), None, False, metric.name)
            why = (f"metric {metric.name}: no usable data for {limit} (progressDeadline): the query returned "
                   f"no data (noData: {metric.no_data.value})")
            if metric.no_data == NoData.INCONCLUSIVE:
                late = late or RunState(Outcome.INCONCLUSIVE,
                                        why + "; promote to accept, retry to measure again, or abort",
                                        (), None, False, metric.name)
                continue
            return RunState(Outcome.FAILED, why, (), None, False, metric.name)
        judged = counts.successful + counts.failed - counts.failed_no_data + counts.inconclusive
        judged_any = judged_any or judged > 0
        if counts.inconclusive:
            inconclusive.append(metric.name)
        if background or bake or judged < analysis.count:
            finished = False
            wait = 0.0 if counts.last_measured_at is None else \
                period(counts, interval) - seconds_since(counts.last_measured_at, now)
            if wait <= 0:
                due.append(metric.name)
            else:
                next_in = wait if next_in is None else min(next_in, wait)
    if late is not None:
        return late
    if inconclusive and (finished or background):
        return RunState(
            Outcome.INCONCLUSIVE,
            f"analysis was inconclusive for {', '.join(inconclusive)}: no data or neither condition "
            "held; promote to accept, retry to measure again, or abort", (), None, False,
        )
    if finished:
        return RunState(Outcome.PASSED, "", (), None, False)
    return RunState(Outcome.RUNNING, "", tuple(due), next_in, not judged_any)


def _tripped(run: AnalysisRun, metrics: list[Metric]) -> RunState | None:
    """The failed state of a run in which a metric met its abortCondition, or None, e.g.
    "metric error-rate met its abortCondition `result > 0.5` (value 0.93): one such measurement is
    enough, without waiting for failureLimit 2"."""
    for metric in metrics:
        value = run.metrics[metric.name].tripped_by if metric.name in run.metrics else None
        if value is None:
            continue
        condition = f" `{metric.abort_condition}`" if metric.abort_condition else ""
        limit = f", without waiting for failureLimit {metric.failure_limit}" if metric.failure_limit else ""
        return RunState(Outcome.FAILED, f"metric {metric.name} met its abortCondition{condition} (value {value}): "
                        f"one such measurement is enough{limit}", (), None, False, metric.name, tripped=True)
    return None


def judged_well(run: AnalysisRun | None, metrics: list[Metric]) -> list[str]:
    """The metrics of a background run not yet fit to promote on: none Successful yet, or waiting."""
    counts = run.metrics if run else {}
    return [m.name for m in metrics
            if m.name not in counts or counts[m.name].successful == 0 or counts[m.name].waiting_since]


def record(status: ReleaseStatus, run: AnalysisRun, results: list[Result], now: datetime,
           version: str, step: int | None) -> AnalysisRun:
    """The run with `results` counted, and each result appended to status.analysis (bounded).
    No data before any data was seen in the run is Waiting, not a verdict: a metric that starts
    returning data a scrape or two after its version starts serving is not held against it."""
    metrics = {name: counts.model_copy() for name, counts in run.metrics.items()}
    for result in results:
        counts = metrics.setdefault(result.metric, MetricRun())
        counts.last_measured_at = iso(now)
        counts.job = result.job if result.running else None
        if result.running:  # a job metric's Job runs: no verdict, nothing counted, looked at again soon
            continue
        verdict, message = result.verdict, result.message
        if result.missing and not counts.data_seen and verdict != Verdict.ERROR:
            verdict, message = Verdict.WAITING, f"{message}; waiting for the first data (noData applies after it)"
        if verdict == Verdict.ERROR:
            counts.errors += 1
            counts.consecutive_errors += 1
        else:
            counts.consecutive_errors = 0
        if verdict == Verdict.WAITING:
            counts.waiting_since = counts.waiting_since or iso(now)
            counts.waiting_for_traffic = not result.missing
        elif verdict != Verdict.ERROR:
            counts.waiting_since = None
        if verdict in (Verdict.SUCCESSFUL, Verdict.FAILED, Verdict.INCONCLUSIVE) and not result.missing:
            counts.data_seen = True
        if verdict == Verdict.SUCCESSFUL:
            counts.successful += 1
        elif verdict == Verdict.FAILED:
            counts.failed += 1
            counts.failed_no_data += result.missing
            if result.tripped and result.value is not None and counts.tripped_by is None:
                counts.tripped_by = show(result.value)
        elif verdict == Verdict.INCONCLUSIVE:
            counts.inconclusive += 1
        value = result.value if result.value is not None and math.isfinite(result.value) else None
        if verdict == Verdict.WAITING:
            _drop_last_waiting(status, result.metric, version, step)
        status.analysis.append(Measurement(
            metric=result.metric, verdict=verdict, value=value, message=message,
            step=step, version=version, at=iso(now),
        ))
    status.analysis = status.analysis[-MAX_MEASUREMENTS:]
    return run.model_copy(update={"metrics": metrics})


def _drop_last_waiting(status: ReleaseStatus, metric: str, version: str, step: int | None) -> None:
    """A Waiting measurement replaces the one before it when that was Waiting too (same metric,
    version and step): polled every FIRST_POLL seconds, a wait for data would otherwise push every
    verdict out of status.analysis within a minute. The latest stands for them all (its metric's
    waitingSince in the run says since when)."""
    for index in range(len(status.analysis) - 1, -1, -1):
        last = status.analysis[index]
        if last.metric == metric:
            if last.verdict == Verdict.WAITING and last.version == version and last.step == step:
                del status.analysis[index]
            return


def evidence(status: ReleaseStatus, state: RunState) -> str:
    """The run's failure reason with the last measurement of the failing metric, e.g.
    "metric error-rate failed 2 time(s), more than failureLimit 1 (last: 0.31: result < 0.05 does not hold)".
    A tripped abortCondition's reason names its value already."""
    if state.tripped:
        return state.reason
    last = next((m for m in reversed(status.analysis)
                 if m.metric == state.metric and m.version == (status.candidate_version or m.version)
                 and m.verdict in (Verdict.FAILED, Verdict.ERROR)), None)
    return state.reason if last is None else f"{state.reason} (last: {last.message})"


def fold(result: Plan, results: list[Result], now: datetime) -> None:
    """Count measurements into the runs that asked for them (step and/or background)."""
    status = result.status
    version = status.candidate_version or ""
    step = status.current_step
    if status.analysis_run is not None and result.measure_step:
        mine = [r for r in results if r.metric in result.measure_step]
        status.analysis_run = record(status, status.analysis_run, mine, now, version, step)
    if status.background_run is not None and result.measure_background:
        mine = [r for r in results if r.metric in result.measure_background and r.metric not in result.measure_step]
        shared = [r for r in results if r.metric in result.measure_background and r.metric in result.measure_step]
        run = record(status, status.background_run, mine, now, version, step)
        # A result both runs asked for is listed in status.analysis once, but counted in both.
        status.background_run = record(ReleaseStatus(), run, shared, now, version, step)


def job_name(release: str, status: ReleaseStatus, metric: str, background: bool) -> str:
    """The Job of a job metric's next measurement (or of the one in flight) in the step's run or
    the background run: named from the rollout, the run and the measurement's index, the same on
    every pass until its verdict is in, and a new one for the next measurement."""
    run = status.background_run if background else status.analysis_run
    counts = run.metrics.get(metric) if run else None
    if counts is not None and counts.job:
        return counts.job
    index = 0 if counts is None else counts.successful + counts.failed + counts.inconclusive + counts.errors
    key = "/".join(str(part) for part in (status.rollout_id, status.candidate_hash, run.step if run else None,
                                          run.started_at if run else None, metric, index, background))
    return f"{release[:30].rstrip('-')}-{metric[:20].rstrip('-')}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"

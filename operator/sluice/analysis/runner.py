"""Measures a plan's metrics: render the query, ask the provider, let the judge decide."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

from sluice.analysis import judge, template
from sluice.analysis.jobs import JobMeasurer
from sluice.analysis.prometheus import MetricProvider, ProviderError, QueryRejected
from sluice.api.durations import parse_duration
from sluice.api.models import Metric, RolloutPolicySpec, Verdict
from sluice.plan.types import Result, show


@dataclass(frozen=True)
class Subject:
    """What is being judged: the template variables of one Release's candidate."""

    release: str
    namespace: str
    version: str
    stable_version: str
    args: dict[str, str]
    service: str = ""  # the Service that reaches the candidate's pods (for job metrics)

    def job_env(self, track: str) -> dict[str, str]:
        """What a job metric's pod finds in its environment."""
        return {"SLUICE_RELEASE": self.release, "SLUICE_NAMESPACE": self.namespace, "SLUICE_VERSION": self.version,
                "SLUICE_STABLE_VERSION": self.stable_version, "SLUICE_TRACK": track,
                "SLUICE_SERVICE": self.service or self.release}

    def values(self, track: str, baseline: bool = False) -> dict[str, str]:
        """Template variables for the candidate on `track`, or for the stable version (baseline)."""
        version = self.stable_version if baseline else self.version
        return {**self.args, "release": self.release, "namespace": self.namespace, "version": version,
                "track": track, "stable_version": self.stable_version}


class Rejected(Exception):
    """A query the provider refuses or a template that does not render: bad input, Stalled."""


async def _one(provider: MetricProvider | None, metric: Metric, subject: Subject, window: float, track: str,
               jobs: JobMeasurer | None, job_names: dict[str, str]) -> Result:
    """One measurement. Every query of the metric is asked each time, even when minSamples says to
    wait, so a query the provider refuses is found at the first measurement, not once traffic comes."""
    if metric.job is not None:
        if jobs is None or metric.name not in job_names:
            raise Rejected(f"metric {metric.name}: a job metric cannot be measured here")
        return await jobs.measure(metric, job_names[metric.name], subject.job_env(track))
    assert provider is not None, "a query or compare metric is measured with a provider"
    try:
        waiting: Result | None = None
        if metric.min_samples is not None:
            seen = await provider.query(template.render(metric.min_samples.query, subject.values(track)))
            if seen is None or math.isnan(seen) or seen < metric.min_samples.at_least:
                count = 0 if seen is None or math.isnan(seen) else seen
                waiting = Result(metric.name, Verdict.WAITING, None,
                                 f"waiting for traffic: {show(count)} of {metric.min_samples.at_least:g} "
                                 "samples (minSamples)")
        if metric.compare is not None:
            step = max(2.0, window / 15)
            canary = await provider.query_range(
                template.render(metric.compare.query, subject.values(track)), window, step)
            stable = await provider.query_range(
                template.render(metric.compare.query, subject.values("stable", baseline=True)), window, step)
            return waiting or judge.compare(metric, metric.compare, canary, stable)
        if metric.query is None:
            raise Rejected(f"metric {metric.name}: this operator cannot measure a web metric yet")
        value = await provider.query(template.render(metric.query, subject.values(track)))
    except (QueryRejected, template.TemplateError) as error:
        raise Rejected(f"metric {metric.name}: {error}") from error
    except ProviderError as error:
        return Result(metric.name, Verdict.ERROR, None, f"{error}")
    return waiting or judge.judge(metric, value)


async def measure(provider: MetricProvider | None, policy: RolloutPolicySpec, names: tuple[str, ...],
                  subject: Subject, track: str = "canary", jobs: JobMeasurer | None = None,
                  job_names: dict[str, str] | None = None) -> list[Result]:
    """Results for the named metrics, measured concurrently. Raises Rejected on bad input."""
    metrics = [m for m in policy.analysis.metrics if m.name in names]
    window = max(30.0, 2 * parse_duration(policy.analysis.interval))
    return list(await asyncio.gather(*(_one(provider, m, subject, window, track, jobs, job_names or {})
                                       for m in metrics)))

"""Job metrics: a measurement that runs a pod, smoke tests against the candidate's Service,
judged by its exit code.

A measurement spans passes: the first creates the Job and answers "running"; later ones read it
from the watch cache until it has finished (exit 0: Successful; otherwise Failed, with the end of
its log, the pod's termination message, as the measurement's message). The Job is named from the
rollout, the analysis run and the measurement's index (sluice.plan.analysis.job_name), so a pass
repeated after a restart finds the Job instead of running the tests twice. A Job that outlives its
timeout and a grace period is failed by Sluice and deleted, whatever the Job controller says.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from kubernetes.client import ApiException

from sluice.api.durations import format_duration, parse_duration
from sluice.api.models import Metric, Verdict
from sluice.kube import objects
from sluice.plan.types import Result, parse_time

Body = dict[str, Any]
GRACE = 30.0  # seconds past its timeout before Sluice stops waiting for the Job controller
KEEP_FINISHED = 3600  # seconds a finished measurement Job is kept (the Job controller's TTL)
METRIC = "sluice.dev/metric"  # on a measurement Job: the metric's name


class Writes(Protocol):
    async def create(self, body: Body) -> Body: ...

    async def delete(self, api_version: str, kind: str, name: str, namespace: str) -> None: ...

    async def list(self, api_version: str, kind: str, namespace: str | None = None,
                   label_selector: str | None = None) -> list[Body]: ...


class Reads(Protocol):
    async def get(self, api_version: str, kind: str, name: str, namespace: str) -> Body | None: ...


def job(release: Body, metric: Metric, name: str, env: dict[str, str], timeout: float) -> Body:
    """The Job of one measurement, owned by the Release; its pods carry none of the labels the
    Release's Services select on, and learn what they test from their environment."""
    assert metric.job is not None
    meta = release["metadata"]
    template = objects.job_pod(metric.job.template.model_dump(by_alias=True, exclude_none=True),
                               {objects.RELEASE: meta["name"], METRIC: metric.name}, env)
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": meta["namespace"],
                     "labels": {objects.RELEASE: meta["name"], METRIC: metric.name, objects.MANAGED_BY: "sluice"},
                     "ownerReferences": [objects.owner(release)]},
        "spec": {"backoffLimit": 0, "activeDeadlineSeconds": max(1, int(timeout)),
                 "ttlSecondsAfterFinished": KEEP_FINISHED, "template": template},
    }


class JobMeasurer:
    """Measures job metrics for one pass of one Release."""

    def __init__(self, writes: Writes, reads: Reads, release: Body, deadline: float, now: datetime) -> None:
        self.writes, self.reads, self.release = writes, reads, release
        self.deadline, self.now = deadline, now

    async def measure(self, metric: Metric, name: str, env: dict[str, str]) -> Result:
        assert metric.job is not None
        namespace = self.release["metadata"]["namespace"]
        timeout = parse_duration(metric.job.timeout) if metric.job.timeout else self.deadline
        found = await self.reads.get("batch/v1", "Job", name, namespace)
        if found is None:
            try:
                await self.writes.create(job(self.release, metric, name, env, timeout))
            except ApiException as error:
                if error.status != 409:  # 409: this measurement's Job exists already
                    return Result(metric.name, Verdict.ERROR, None,
                                  f"Job {name} could not be created: {error.reason}", job=name)
            return Result(metric.name, Verdict.WAITING, None, f"Job {name} started", job=name, running=True)
        _, succeeded, failed, reason = objects.job_state(found)
        if succeeded:
            return Result(metric.name, Verdict.SUCCESSFUL, 0.0, f"Job {name} succeeded", job=name)
        if failed:
            tail = await failure_tail(self.writes, found, namespace)
            why = f" ({reason})" if reason else ""
            return Result(metric.name, Verdict.FAILED, None,
                          f"Job {name} failed{why}" + (f"; its log ends: {tail}" if tail else ""), job=name)
        created = found["metadata"].get("creationTimestamp")
        age = (self.now - parse_time(created)).total_seconds() if created else 0.0
        if age > timeout + GRACE:
            await self.writes.delete("batch/v1", "Job", name, namespace)
            return Result(metric.name, Verdict.FAILED, None,
                          f"Job {name} did not finish within {format_duration(timeout)}", job=name)
        return Result(metric.name, Verdict.WAITING, None, f"Job {name} running", job=name, running=True)



class Pods(Protocol):
    async def list(self, api_version: str, kind: str, namespace: str | None = None,
                   label_selector: str | None = None) -> list[Body]: ...


async def failure_tail(pods: Pods, found: Body, namespace: str) -> str:
    """The end of a failed Job's log: its latest pod's termination message, from the pods the Job
    itself controls (by uid), no other. The pods are asked of the API server (the caches hold only
    Sluice's tracks), once, by the pass that records the failure."""
    uid = found["metadata"].get("uid")
    mine = [pod for pod in await pods.list("v1", "Pod", namespace,
                                           f"batch.kubernetes.io/job-name={found['metadata']['name']}")
            if objects.controller_uid(pod) == uid]
    if not mine:
        return ""
    last = max(mine, key=lambda pod: pod["metadata"].get("creationTimestamp") or "")
    return objects.clean_log(objects.failure_message(last))

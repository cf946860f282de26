"""Job metrics: the bookkeeping of a measurement that spans passes (sluice.plan.analysis), and the
measurer's reading of a Job (sluice.analysis.jobs) over a small in-memory store of objects."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sluice.analysis.jobs import GRACE, JobMeasurer, job
from sluice.api.models import AnalysisRun, Metric, MetricRun, ReleaseStatus, Verdict
from sluice.plan import analysis
from sluice.plan.types import Plan, Result

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
RELEASE = {"apiVersion": "sluice.dev/v1alpha1", "kind": "Release",
           "metadata": {"name": "shop", "namespace": "prod", "uid": "u-1"}}
SMOKE = Metric.model_validate({"name": "smoke", "job": {"timeout": "1m", "template": {"spec": {
    "containers": [{"name": "t", "image": "tools:1", "command": ["sh", "-c", "exit 0"]}]}}}})


class Store:
    """Objects by (kind, name), as the watch caches and the API server would hold them."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.created: list[str] = []
        self.deleted: list[str] = []

    async def get(self, api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        return self.objects.get((kind, name))

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        body["metadata"]["creationTimestamp"] = "2026-11-28T12:00:00Z"
        body["metadata"]["uid"] = "job-uid"
        self.objects[(body["kind"], body["metadata"]["name"])] = body
        self.created.append(body["metadata"]["name"])
        return body

    async def delete(self, api_version: str, kind: str, name: str, namespace: str) -> None:
        self.objects.pop((kind, name), None)
        self.deleted.append(name)

    async def list(self, api_version: str, kind: str, namespace: str | None = None,
                   label_selector: str | None = None) -> list[dict[str, Any]]:
        return [body for (k, _), body in self.objects.items() if k == kind]


def measure(store: Store, name: str = "shop-smoke-1", at: datetime = NOW) -> Result:
    measurer = JobMeasurer(store, store, RELEASE, deadline=300, now=at)
    return asyncio.run(measurer.measure(SMOKE, name, {"SLUICE_SERVICE": "shop-preview"}))


def finish(store: Store, condition: str, reason: str = "", message: str = "") -> None:
    body = store.objects[("Job", "shop-smoke-1")]
    body["status"] = {"conditions": [{"type": condition, "status": "True", "reason": reason}]}
    store.objects[("Pod", "shop-smoke-1-x")] = {"metadata": {
        "name": "shop-smoke-1-x", "creationTimestamp": "2026-11-28T12:00:01Z",
        "ownerReferences": [{"controller": True, "uid": "job-uid"}]},
        "status": {"containerStatuses": [{"state": {"terminated": {"exitCode": 1, "message": message}}}]}}


def test_the_first_measurement_starts_the_job_and_waits_for_it() -> None:
    store = Store()
    first = measure(store)
    assert first.running and first.verdict == Verdict.WAITING and store.created == ["shop-smoke-1"]
    again = measure(store)
    assert again.running and store.created == ["shop-smoke-1"], "the same Job, not a second one"


@pytest.mark.parametrize(("condition", "reason", "verdict", "said"), [
    ("Complete", "", Verdict.SUCCESSFUL, "Job shop-smoke-1 succeeded"),
    ("Failed", "BackoffLimitExceeded", Verdict.FAILED,
     "Job shop-smoke-1 failed (BackoffLimitExceeded); its log ends: testing shop-preview | GET /: 500"),
])
def test_the_exit_code_is_the_verdict_and_a_failure_shows_the_end_of_the_log(
        condition: str, reason: str, verdict: Verdict, said: str) -> None:
    store = Store()
    measure(store)
    finish(store, condition, reason, "testing shop-preview\nGET /: 500\n")
    result = measure(store)
    assert (result.verdict, result.message, result.running) == (verdict, said, False)


def test_a_job_past_its_timeout_fails_the_measurement_and_is_deleted() -> None:
    store = Store()
    measure(store)
    assert measure(store, at=NOW + timedelta(seconds=60 + GRACE - 1)).running
    late = measure(store, at=NOW + timedelta(seconds=60 + GRACE + 1))
    assert late.verdict == Verdict.FAILED and "did not finish within 1m" in late.message
    assert store.deleted == ["shop-smoke-1"]


def test_the_job_carries_what_it_tests_and_none_of_the_service_labels() -> None:
    body = job(RELEASE, SMOKE, "shop-smoke-1", {"SLUICE_SERVICE": "shop-preview"}, 60)
    pod = body["spec"]["template"]
    assert pod["spec"]["restartPolicy"] == "Never" and body["spec"]["activeDeadlineSeconds"] == 60
    assert {"name": "SLUICE_SERVICE", "value": "shop-preview"} in pod["spec"]["containers"][0]["env"]
    assert "app.kubernetes.io/name" not in pod["metadata"]["labels"]
    assert body["metadata"]["ownerReferences"][0]["uid"] == "u-1"


def test_a_running_job_counts_nothing_and_is_looked_at_again_soon() -> None:
    status = ReleaseStatus(rollout_id="r1", candidate_hash="h2", analysis_run=AnalysisRun(step=1, started_at="t"))
    name = analysis.job_name("shop", status, "smoke", background=False)
    plan = Plan(status=status, measure=("smoke",), measure_step=("smoke",))
    analysis.fold(plan, [Result("smoke", Verdict.WAITING, None, "running", job=name, running=True)], NOW)
    counts = status.analysis_run.metrics["smoke"]  # type: ignore[union-attr]
    assert counts.job == name and counts.successful == 0 and status.analysis == []
    assert analysis.period(counts, 30) == analysis.FIRST_POLL
    assert analysis.job_name("shop", status, "smoke", background=False) == name, "the same Job until its verdict"
    analysis.fold(plan, [Result("smoke", Verdict.SUCCESSFUL, 0.0, "ok", job=name)], NOW)
    counts = status.analysis_run.metrics["smoke"]  # type: ignore[union-attr]
    assert counts.job is None and counts.successful == 1 and analysis.period(counts, 30) == 30
    assert analysis.job_name("shop", status, "smoke", background=False) != name, "the next measurement's own Job"


def test_job_names_differ_by_rollout_and_fit_a_label() -> None:
    def named(rollout: str) -> str:
        status = ReleaseStatus(rollout_id=rollout, analysis_run=AnalysisRun(step=0, started_at="t",
                                                                            metrics={"smoke": MetricRun()}))
        return analysis.job_name("x" * 55, status, "m" * 63, background=True)
    assert named("r1") != named("r2") and len(named("r1")) <= 63

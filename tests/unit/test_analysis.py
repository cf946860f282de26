"""Templates, the CEL judge, the statistical comparison and analysis-run bookkeeping."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from sluice.analysis import template
from sluice.analysis.judge import compare, judge, problems
from sluice.api.models import AnalysisRun, Compare, Metric, MetricRun, ReleaseStatus, Verdict
from sluice.plan import analysis
from sluice.plan.types import Result, iso
from tests.unit.world import T0, policy_spec


def metric(**fields: object) -> Metric:
    return Metric.model_validate({"name": "error-rate", "query": "q", **fields})


@pytest.mark.parametrize(("value", "fields", "verdict"), [
    pytest.param(0.01, {"successCondition": "result < 0.05"}, Verdict.SUCCESSFUL, id="success holds"),
    pytest.param(0.2, {"successCondition": "result < 0.05"}, Verdict.FAILED, id="success does not hold"),
    pytest.param(0.2, {"failureCondition": "result > 0.1"}, Verdict.FAILED, id="failure holds"),
    pytest.param(0.05, {"failureCondition": "result > 0.1"}, Verdict.SUCCESSFUL, id="failure does not hold"),
    pytest.param(0.07, {"successCondition": "result < 0.05", "failureCondition": "result > 0.1"},
                 Verdict.INCONCLUSIVE, id="between the two"),
    pytest.param(None, {"successCondition": "result < 0.05"}, Verdict.INCONCLUSIVE, id="empty is not a pass"),
    pytest.param(math.nan, {"successCondition": "result < 0.05"}, Verdict.INCONCLUSIVE, id="NaN is not a pass"),
    pytest.param(None, {"successCondition": "result < 0.05", "noData": "fail"}, Verdict.FAILED, id="noData fail"),
    pytest.param(None, {"successCondition": "result < 0.05", "noData": "hold"}, Verdict.WAITING, id="noData hold"),
    pytest.param(1.0, {"successCondition": "result"}, Verdict.ERROR, id="condition not a boolean"),
    pytest.param(3.0, {"successCondition": "result >= 2.0 && result <= 4.0"}, Verdict.SUCCESSFUL, id="CEL logic"),
])
def test_judge(value: float | None, fields: dict[str, object], verdict: Verdict) -> None:
    assert judge(metric(**fields), value).verdict == verdict


def test_judge_message_names_the_value_and_the_condition() -> None:
    result = judge(metric(successCondition="result < 0.05"), 0.31)
    assert result.message == "0.31: result < 0.05 does not hold" and result.value == 0.31


def test_conditions_are_cel_not_python() -> None:
    evil = judge(metric(successCondition="__import__('os').system('false')"), 1.0)
    assert evil.verdict == Verdict.ERROR, "CEL has no such function: nothing runs"
    found = problems(policy_spec([{"setWeight": 10}], analysis={"metrics": [
        {"name": "broken", "query": "q", "successCondition": "result <"}]}))
    assert found and found[0].startswith("metric broken: successCondition is not valid CEL")


def test_problems_find_broken_templates_and_unknown_variables() -> None:
    policy = policy_spec([{"setWeight": 10}], analysis={"metrics": [
        {"name": "a", "query": "up{app=\"{{release}\"}", "successCondition": "result > 0"},
        {"name": "b", "query": "up{app=\"{{service}}\"}", "successCondition": "result > 0"}]})
    found = problems(policy, {})
    assert any("metric a: query has a '{{' or '}}'" in p for p in found)
    assert any("metric b: query uses unknown variable(s) service" in p for p in found)
    assert problems(policy, {"service": "checkout"})[1:] == []


@pytest.mark.parametrize(("value", "rendered"), [
    pytest.param("checkout", 'up{app="checkout"}', id="plain"),
    pytest.param('x"} or vector(1) #', 'up{app="x\\"} or vector(1) #"}', id="quote cannot break out"),
    pytest.param("a\\b", 'up{app="a\\\\b"}', id="backslash"),
    pytest.param("a\nb", 'up{app="a\\nb"}', id="newline"),
])
def test_values_are_escaped_for_promql_strings(value: str, rendered: str) -> None:
    assert template.render('up{app="{{release}}"}', {"release": value}) == rendered


def test_template_spaces_and_unknown_variables() -> None:
    assert template.render("{{ version }}", {"version": "1.2.3"}) == "1.2.3"
    with pytest.raises(template.TemplateError, match="unknown variable"):
        template.render("{{nope}}", {"version": "1"})


def test_compare_flags_a_regression_and_passes_a_lookalike() -> None:
    spec = Compare(query="q", maxIncrease="10%", confidence=0.95)
    stable = [100.0 + i % 5 for i in range(30)]
    slower = [150.0 + i % 5 for i in range(30)]
    same = [101.0 + i % 5 for i in range(30)]
    m = metric(query=None, compare={"query": "q"})
    assert compare(m, spec, slower, stable).verdict == Verdict.FAILED
    assert compare(m, spec, same, stable).verdict == Verdict.SUCCESSFUL
    assert compare(m, spec, [1.0], stable).verdict == Verdict.INCONCLUSIVE


def test_run_measures_every_interval_and_passes_after_count() -> None:
    policy = policy_spec([{"analysis": {}}])
    run = analysis.start(0, T0)
    metrics = list(policy.analysis.metrics)
    state = analysis.evaluate(run, metrics, policy.analysis, T0 + timedelta(seconds=10))
    assert state.due == () and state.next_in == pytest.approx(20)
    status = ReleaseStatus()
    for i in (1, 2):
        now = T0 + timedelta(seconds=30 * i)
        assert analysis.evaluate(run, metrics, policy.analysis, now).due == ("error-rate",)
        run = analysis.record(status, run, [Result("error-rate", Verdict.SUCCESSFUL, 0.0, "")], now, "1.1.0", 0)
    assert analysis.evaluate(run, metrics, policy.analysis, T0).outcome == analysis.Outcome.PASSED
    assert len(status.analysis) == 2


def test_status_measurements_are_bounded() -> None:
    status = ReleaseStatus()
    run = AnalysisRun(step=0, started_at=iso(T0), metrics={"error-rate": MetricRun()})
    for _ in range(50):
        run = analysis.record(status, run, [Result("error-rate", Verdict.SUCCESSFUL, 0.0, "")], T0, "1", 0)
    assert len(status.analysis) == analysis.MAX_MEASUREMENTS
    assert run.metrics["error-rate"].successful == 50

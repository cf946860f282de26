"""Templates, the CEL judge, the statistical comparison and analysis-run bookkeeping."""

from __future__ import annotations

import base64
import dataclasses
import logging
import math
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest

from sluice.analysis import template
from sluice.analysis.judge import compare, judge, problems, warnings
from sluice.analysis.prometheus import Connection, Prometheus
from sluice.analysis.providers import Providers
from sluice.analysis.runner import Rejected, Sources, Subject, measure
from sluice.api.models import (
    Analysis,
    AnalysisRun,
    AnalysisStep,
    CanaryStep,
    Compare,
    Metric,
    MetricRun,
    PrometheusConfig,
    ReleaseStatus,
    RolloutPolicySpec,
    SecretKeyRef,
    TLSConfig,
    Verdict,
)
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


ABORT = {"successCondition": "result < 0.05", "abortCondition": "result > 0.3"}


@pytest.mark.parametrize(("value", "fields", "verdict", "tripped", "message"), [
    pytest.param(0.5, ABORT, Verdict.FAILED, True, "0.5: abortCondition result > 0.3 holds: the analysis fails at once",
                 id="abortCondition holds: Failed, tripped"),
    pytest.param(0.2, ABORT, Verdict.FAILED, False, "0.2: result < 0.05 does not hold",
                 id="a failure short of the abortCondition: not tripped"),
    pytest.param(0.01, ABORT, Verdict.SUCCESSFUL, False, "0.01: result < 0.05", id="a success"),
    pytest.param(math.inf, ABORT, Verdict.FAILED, True, "+Inf: abortCondition result > 0.3 holds",
                 id="+Inf is data: it trips"),
    pytest.param(None, ABORT, Verdict.INCONCLUSIVE, False, "no data", id="no data never trips"),
    pytest.param(math.nan, {**ABORT, "noData": "fail"}, Verdict.FAILED, False, "no data", id="NaN never trips"),
    pytest.param(0.5, {"successCondition": "result > 0.4", "abortCondition": "result > 0.3"}, Verdict.FAILED, True,
                 "abortCondition", id="abortCondition is tried before the others"),
    pytest.param(0.5, {"successCondition": "result < 1.0", "abortCondition": "result"}, Verdict.ERROR, False,
                 "'result' gives a double, not true or false", id="an abortCondition that cannot say is an Error"),
])
def test_judge_abort_condition(value: float | None, fields: dict[str, object], verdict: Verdict, tripped: bool,
                               message: str) -> None:
    result = judge(metric(**fields), value)
    assert (result.verdict, result.tripped) == (verdict, tripped)
    assert message in result.message


@pytest.mark.parametrize(("condition", "problem"), [
    pytest.param("result >", "metric error-rate: abortCondition is not valid CEL over result", id="not CEL"),
    pytest.param("result + 1.0", "metric error-rate: abortCondition gives a double, not true or false",
                 id="not a boolean"),
    pytest.param("result == 1", "metric error-rate: abortCondition is not valid CEL over result (a number)",
                 id="no equality of int and double"),
])
def test_problems_refuse_a_bad_abort_condition(condition: str, problem: str) -> None:
    policy = policy_spec([{"analysis": {}}], analysis={"metrics": [
        {"name": "error-rate", "query": "q", "successCondition": "result < 0.05", "abortCondition": condition}]})
    found = problems(policy)
    assert len(found) == 1 and found[0].startswith(problem), found


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


def test_run_measures_at_once_then_every_interval_and_passes_after_count() -> None:
    policy = policy_spec([{"analysis": {}}])
    run = analysis.start(0, T0)
    metrics = list(policy.analysis.metrics)
    assert analysis.evaluate(run, metrics, policy.analysis, T0, 300).due == ("error-rate",)
    status = ReleaseStatus()
    for i in (0, 1):
        now = T0 + timedelta(seconds=30 * i)
        assert analysis.evaluate(run, metrics, policy.analysis, now, 300).due == ("error-rate",)
        run = analysis.record(status, run, [Result("error-rate", Verdict.SUCCESSFUL, 0.0, "")], now, "1.1.0", 0)
        if i == 0:
            state = analysis.evaluate(run, metrics, policy.analysis, T0 + timedelta(seconds=10), 300)
            assert state.due == () and state.next_in == pytest.approx(20)
    assert analysis.evaluate(run, metrics, policy.analysis, T0, 300).outcome == analysis.Outcome.PASSED
    assert len(status.analysis) == 2


# When a metric is measured: at once when its run starts; every FIRST_POLL seconds while nothing
# of it is judged (no data yet, too little traffic); every interval after its first verdict.
# (counts at T0, seconds after T0, interval) -> (due now, seconds until it is due)
STARTED = iso(T0)
WAITING = MetricRun(last_measured_at=STARTED, waiting_since=STARTED)


@pytest.mark.parametrize(("counts", "after", "interval", "due", "next_in"), [
    pytest.param(None, 0, "30s", True, None, id="first measurement at the start of the run"),
    pytest.param(None, 45, "30s", True, None, id="first measurement due however late the pass"),
    pytest.param(WAITING, 1, "30s", False, 1.0, id="Waiting for data: polled after FIRST_POLL, not the interval"),
    pytest.param(WAITING, 2, "30s", True, None, id="Waiting for data: due FIRST_POLL after the last look"),
    pytest.param(WAITING.model_copy(update={"waiting_for_traffic": True}), 1, "30s", False, 1.0,
                 id="minSamples not met: polled quickly too"),
    pytest.param(MetricRun(last_measured_at=STARTED, successful=1), 2, "30s", False, 28.0,
                 id="after the first judged result: the interval"),
    pytest.param(MetricRun(last_measured_at=STARTED, inconclusive=1), 29, "30s", False, 1.0,
                 id="an Inconclusive result is judged: the interval"),
    pytest.param(MetricRun(last_measured_at=STARTED, successful=1, waiting_since=STARTED), 2, "30s", False, 28.0,
                 id="Waiting after a verdict: the interval"),
    pytest.param(MetricRun(last_measured_at=STARTED, errors=1, consecutive_errors=1), 2, "30s", False, 28.0,
                 id="a provider error before any verdict: the interval (consecutiveErrorLimit counts intervals)"),
    pytest.param(WAITING, 1, "1s", True, None, id="an interval shorter than FIRST_POLL wins"),
])
def test_when_a_metric_is_measured(counts: MetricRun | None, after: float, interval: str, due: bool,
                                   next_in: float | None) -> None:
    policy = policy_spec([{"analysis": {}}], analysis={"interval": interval})
    run = AnalysisRun(step=0, started_at=STARTED, metrics={"error-rate": counts} if counts else {})
    state = analysis.evaluate(run, list(policy.analysis.metrics), policy.analysis, T0 + timedelta(seconds=after), 300)
    assert state.outcome == analysis.Outcome.RUNNING
    assert (state.due == ("error-rate",), state.next_in) == (due, pytest.approx(next_in) if next_in else None)


def test_first_poll_is_short() -> None:
    assert analysis.FIRST_POLL == 2.0
    assert analysis.period(MetricRun(), 30) == 2.0 and analysis.period(MetricRun(successful=1), 30) == 30
    described = Analysis.model_fields["interval"].description or ""
    assert f"polled every {analysis.FIRST_POLL:g}s" in described, "kubectl explain says what the planner does"


@pytest.mark.parametrize(("counts", "outcome", "says"), [
    pytest.param(WAITING, analysis.Outcome.INCONCLUSIVE, "the query returned no data (noData: inconclusive)",
                 id="no data yet: the deadline still applies"),
    pytest.param(WAITING.model_copy(update={"waiting_for_traffic": True}), analysis.Outcome.FAILED,
                 "too little traffic to judge (minSamples)", id="too little traffic: the deadline still applies"),
])
def test_quick_polling_is_still_bounded_by_the_deadline(counts: MetricRun, outcome: analysis.Outcome,
                                                        says: str) -> None:
    policy = policy_spec([{"analysis": {}}])
    later = counts.model_copy(update={"last_measured_at": iso(T0 + timedelta(seconds=300))})
    run = AnalysisRun(step=0, started_at=STARTED, metrics={"error-rate": later})
    state = analysis.evaluate(run, list(policy.analysis.metrics), policy.analysis, T0 + timedelta(seconds=301), 300)
    assert state.outcome == outcome and says in state.reason


def test_a_waiting_metric_is_polled_until_its_data_comes_then_measured_every_interval() -> None:
    """A story through record(): Waiting at 0 s and 2 s, data at 4 s, then 34 s, and passed; the
    polls leave one Waiting entry in status.analysis, not one each."""
    policy = policy_spec([{"analysis": {}}], analysis={"metrics": [
        {"name": "error-rate", "query": "q", "successCondition": "result < 0.05", "noData": "hold"}]})
    metrics, spec = list(policy.analysis.metrics), policy.analysis
    status, run = ReleaseStatus(), analysis.start(0, T0)
    empty = Result("error-rate", Verdict.WAITING, None, "no data", missing=True)
    good = Result("error-rate", Verdict.SUCCESSFUL, 0.01, "0.01: result < 0.05")
    taken = []
    for second in range(60):
        now = T0 + timedelta(seconds=second)
        state = analysis.evaluate(run, metrics, spec, now, 300)
        if state.outcome == analysis.Outcome.PASSED:
            break
        if state.due:
            taken.append(second)
            run = analysis.record(status, run, [empty if second < 4 else good], now, "1.1.0", 0)
    assert taken == [0, 2, 4, 34] and state.outcome == analysis.Outcome.PASSED
    shown = [(m.verdict, m.at) for m in status.analysis]
    at = [iso(T0 + timedelta(seconds=s)) for s in (2, 4, 34)]
    assert shown == [(Verdict.WAITING, at[0]), (Verdict.SUCCESSFUL, at[1]), (Verdict.SUCCESSFUL, at[2])], \
        "one Waiting entry stands for the polls"


def test_status_measurements_are_bounded() -> None:
    status = ReleaseStatus()
    run = AnalysisRun(step=0, started_at=iso(T0), metrics={"error-rate": MetricRun()})
    for _ in range(50):
        run = analysis.record(status, run, [Result("error-rate", Verdict.SUCCESSFUL, 0.0, "")], T0, "1", 0)
    assert len(status.analysis) == analysis.MAX_MEASUREMENTS
    assert run.metrics["error-rate"].successful == 50


# --- issue 7: ±Inf is data, no data is marked missing, remote answers stay out of status -------

INF = math.inf


def prometheus(handler: Callable[[httpx.Request], httpx.Response]) -> Prometheus:
    return Prometheus(Connection(address="http://prometheus.test:9090", timeout=1.0),
                      transport=httpx.MockTransport(handler))


def vector(*values: str) -> Callable[[httpx.Request], httpx.Response]:
    result = [{"metric": {"i": str(i)}, "value": [1700000000, v]} for i, v in enumerate(values)]
    return lambda request: httpx.Response(200, json={"status": "success",
                                                     "data": {"resultType": "vector", "result": result}})


def answer(status: int, error_type: str, error: str) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, json={"status": "error", "errorType": error_type, "error": error})


SUBJECT = Subject(release="checkout", namespace="shop", version="1.1.0", stable_version="1.0.0", args={})


async def measure_one(handler: Callable[[httpx.Request], httpx.Response], subject: Subject = SUBJECT,
                      **fields: object) -> Result:
    policy = policy_spec([{"analysis": {}}], analysis={"metrics": [
        {"name": "p99", "query": "histogram_quantile(0.99, x)", "successCondition": "result < 0.5", **fields}]})
    client = prometheus(handler)
    try:
        [result] = await measure(Sources(client), policy, ("p99",), subject)
    finally:
        await client.close()
    return result


@pytest.mark.parametrize(("text", "verdict", "message"), [
    pytest.param("+Inf", Verdict.FAILED, "+Inf: result < 0.5 does not hold", id="+Inf: latency past the last bucket"),
    pytest.param("-Inf", Verdict.SUCCESSFUL, "-Inf: result < 0.5", id="-Inf is data too"),
    pytest.param("0.2", Verdict.SUCCESSFUL, "0.2: result < 0.5", id="a number"),
])
async def test_infinity_is_data_and_reaches_the_condition(text: str, verdict: Verdict, message: str) -> None:
    result = await measure_one(vector(text))
    assert (result.verdict, result.message, result.missing) == (verdict, message, False)
    assert result.value == float(text)


@pytest.mark.parametrize(("handler", "no_data", "verdict", "says"), [
    pytest.param(vector(), "inconclusive", Verdict.INCONCLUSIVE,
                 "no data: the query returned no series; if an empty result means zero, end it with `or vector(0)` "
                 "(noData: inconclusive)", id="empty vector"),
    pytest.param(vector("NaN"), "hold", Verdict.WAITING, "no data: the query returned NaN (noData: hold)", id="NaN"),
    pytest.param(vector(), "fail", Verdict.FAILED, "(noData: fail)", id="empty, noData fail"),
])
async def test_no_data_is_missing_and_follows_no_data(handler: Callable[[httpx.Request], httpx.Response],
                                                      no_data: str, verdict: Verdict, says: str) -> None:
    result = await measure_one(handler, noData=no_data)
    assert result.missing and result.verdict == verdict and result.value is None
    assert says in result.message


def test_judge_marks_only_missing_data_as_missing() -> None:
    m = metric(successCondition="result < 0.05")
    assert judge(m, None).missing and judge(m, math.nan).missing
    assert not judge(m, INF).missing and judge(m, INF).verdict == Verdict.FAILED
    assert judge(metric(failureCondition="result > 1.0"), -INF).message == "-Inf: result > 1.0 does not hold"


def test_compare_keeps_infinite_samples() -> None:
    spec = Compare(query="q", maxIncrease="10%", confidence=0.95)
    stable = [0.1 + i % 5 / 100 for i in range(30)]
    m = metric(query=None, compare={"query": "q"})
    past_the_last_bucket = compare(m, spec, [INF] * 30 + [math.nan], stable)
    assert past_the_last_bucket.verdict == Verdict.FAILED and "canary median +Inf" in past_the_last_bucket.message
    assert compare(m, spec, [0.1] * 30, [INF] * 30).verdict == Verdict.SUCCESSFUL  # no NaN from Inf - Inf


async def test_range_queries_keep_infinity_and_drop_nan() -> None:
    series = [{"metric": {}, "values": [[1, "0.1"], [2, "+Inf"], [3, "NaN"], [4, "-Inf"]]}]
    client = prometheus(lambda request: httpx.Response(
        200, json={"status": "success", "data": {"resultType": "matrix", "result": series}}))
    assert await client.query_range("q", 60, 2) == [0.1, INF, -INF]
    await client.close()


SECRET = "<remote text: parse error at char 5: unexpected identifier>"


async def test_bad_promql_is_rejected_without_echoing_prometheus(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="sluice")
    with pytest.raises(Rejected) as refused:
        await measure_one(answer(400, "bad_data", SECRET))
    assert str(refused.value) == ("metric p99: Prometheus at http://prometheus.test:9090 refused the query as "
                                  "invalid (HTTP 400, errorType bad_data); check its PromQL (Prometheus' own words "
                                  "are logged at debug level)")
    said = [r for r in caplog.records if SECRET in r.getMessage()]
    assert said and all(r.levelno == logging.DEBUG for r in said), "what Prometheus said: at debug level only"


@pytest.mark.parametrize(("handler", "says"), [
    pytest.param(answer(422, "execution", SECRET), "could not execute the query (HTTP 422, errorType execution)",
                 id="422 is data-dependent"),
    pytest.param(vector("0.1", "0.2"), "the query gave 2 series, not one", id="several series"),
    pytest.param(answer(503, "unavailable", SECRET), "answered HTTP 503 Service Unavailable, errorType unavailable",
                 id="503"),
    pytest.param(lambda request: httpx.Response(500, text=SECRET),
                 "answered HTTP 500 Internal Server Error without a result", id="not JSON"),
    pytest.param(answer(422, SECRET, SECRET), "(HTTP 422)", id="an errorType we do not know is not repeated"),
    pytest.param(lambda request: httpx.Response(200, json={"status": "success", "data": {
        "resultType": "vector", "result": [{"value": [1, {"x": SECRET}]}]}}), "gave an answer that is not a number",
        id="not a number"),
])
async def test_data_dependent_failures_are_measurement_errors(
        handler: Callable[[httpx.Request], httpx.Response], says: str) -> None:
    result = await measure_one(handler)
    assert result.verdict == Verdict.ERROR and says in result.message
    assert "remote text" not in result.message and SECRET not in result.message


async def test_a_huge_query_is_refused_before_it_is_sent() -> None:
    sent: list[httpx.Request] = []
    huge = dataclasses.replace(SUBJECT, args={"selector": "x" * 100_000})  # 100 KB once rendered
    with pytest.raises(Rejected, match="is 100010 characters long once rendered; the limit is 16384"):
        await measure_one(lambda request: sent.append(request) or httpx.Response(500), huge,
                          query='up{app="{{selector}}"}')
    assert sent == []


def test_problems_find_analyses_that_would_measure_nothing() -> None:
    policy = policy_spec([{"setWeight": 10}, {"analysis": {"metrics": ["error-rate"]}}])
    canary = policy.strategy.canary
    assert canary is not None
    steps = [*canary.steps, CanaryStep.model_construct(analysis=AnalysisStep.model_construct(metrics=["error-rat"])),
             CanaryStep.model_construct(analysis=AnalysisStep.model_construct(metrics=[]))]
    typo = policy.model_copy(update={"strategy": policy.strategy.model_copy(
        update={"canary": canary.model_copy(update={"steps": steps})})})
    assert problems(typo) == ["analysis step 3 names unknown metric error-rat; known: error-rate",
                              "analysis step 4 names no metric: it would run none"]
    empty = policy_spec([{"analysis": {}}], analysis={"metrics": []})
    assert problems(empty) == ["analysis step 1 would run no metric: spec.analysis.metrics is empty"]
    assert problems(policy) == []


@pytest.mark.parametrize(("query", "warned"), [
    pytest.param('sum(rate(r{app="a",code=~"5.."}[1m])) / sum(rate(r{app="a"}[1m]))', True, id="bare numerator"),
    pytest.param('(sum(rate(r{app="a",code=~"5.."}[1m])) or vector(0)) / sum(rate(r{app="a"}[1m]))', False,
                 id="or vector(0)"),
    pytest.param('(sum(rate(r{code=~"5.."}[1m])) or on() vector(0))\n  / sum(rate(r[1m]))', False, id="or on()"),
    pytest.param('(sum(rate(r{code=~"5.."}[1m]))) / sum(rate(r[1m]))', True, id="parentheses alone"),
    pytest.param('1 - sum(rate(r{code=~"5.."}[1m])) / sum(rate(r[1m]))', True, id="inside a difference"),
    pytest.param('sum(rate(d_sum{app="a"}[1m])) / sum(rate(d_count{app="a"}[1m]))', False, id="a mean"),
    pytest.param('histogram_quantile(0.99, sum by (le) (rate(b{app="a"}[1m])))', False, id="no ratio"),
    pytest.param('sum(rate(r{path="/a/b"}[1m]))', False, id="a slash in a string"),
])
def test_warnings_on_a_ratio_whose_numerator_can_be_empty(query: str, warned: bool) -> None:
    policy = policy_spec([{"analysis": {}}], analysis={"metrics": [
        {"name": "error-rate", "query": query, "successCondition": "result < 0.05"}]})
    found = warnings(policy)
    assert bool(found) == warned
    assert all("(numerator or vector(0)) / denominator" in w for w in found)


# --- issue 7 item 19: a provider's inputs raise Rejected with a plain message, nothing else ------


class Secrets:
    """The one Kubernetes read Providers makes, from a dict of Secret data (raw bytes)."""

    def __init__(self, **data: bytes) -> None:
        self.data = {key: base64.b64encode(value).decode() for key, value in data.items()}

    async def get(self, api_version: str, kind: str, name: str, namespace: str) -> dict[str, object] | None:
        return {"metadata": {"labels": {"sluice.dev/analysis-credential": "true"}}, "data": self.data} \
            if kind == "Secret" and name == "prometheus" else None


def with_prometheus(**config: object) -> RolloutPolicySpec:
    policy = policy_spec([{"analysis": {}}])
    prom = PrometheusConfig.model_construct(**{**PrometheusConfig().model_dump(), **config})
    return policy.model_copy(update={"analysis": policy.analysis.model_copy(update={"prometheus": prom})})


TOKEN = SecretKeyRef(name="prometheus", key="token")
CA = TLSConfig(caSecretRef=SecretKeyRef(name="prometheus", key="ca.crt"))


@pytest.mark.parametrize(("config", "secrets", "says"), [
    pytest.param({"address": "http://[::1"}, {}, "'http://[::1' is not a usable Prometheus address: it is not a "
                 "valid URL", id="unclosed IPv6 bracket"),
    pytest.param({"address": "http://prometheus:99999"}, {}, "the port must be between 1 and 65535", id="port 99999"),
    pytest.param({"address": "http://prometheus:9090\n"}, {}, "it is not a valid URL", id="trailing newline"),
    pytest.param({"address": "http://prometheus:9090/?x=1"}, {}, "must not have a query", id="a query string"),
    pytest.param({"address": "http://"}, {}, "it has no valid host name", id="no host"),
    pytest.param({"bearer_token_secret_ref": TOKEN}, {"token": b"\xff\xfe token"}, "Secret prometheus, key token, "
                 "in namespace shop is not UTF-8 text", id="non-UTF-8 token"),
    pytest.param({"bearer_token_secret_ref": TOKEN}, {"token": "tökén".encode()}, "has characters an HTTP header "
                 "cannot carry", id="non-ASCII token"),
    pytest.param({"bearer_token_secret_ref": TOKEN}, {"token": b"a\r\nX-Injected: 1"}, "has characters an HTTP "
                 "header cannot carry", id="a line break in the token"),
    pytest.param({"bearer_token_secret_ref": TOKEN}, {}, "Secret prometheus with key token not found",
                 id="missing key"),
    pytest.param({"tls": CA}, {"ca.crt": b"garbage"}, "the CA bundle in Secret prometheus, key ca.crt, is not a PEM "
                 "certificate bundle", id="garbage CA"),
    pytest.param({"tls": CA}, {"ca.crt": b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
                 "is not a PEM certificate bundle", id="a broken certificate"),
])
async def test_bad_provider_inputs_are_rejected_plainly(config: dict[str, object], secrets: dict[str, bytes],
                                                        says: str) -> None:
    providers = Providers(Secrets(**secrets))
    with pytest.raises(Rejected) as refused:
        await providers.get(with_prometheus(**config), "shop")
    assert says in str(refused.value)
    assert providers.clients == {}


async def test_providers_reuse_one_client_per_connection() -> None:
    providers = Providers(Secrets(token=b"s3cret\n"))
    policy = with_prometheus(address="https://prometheus:9090/", bearer_token_secret_ref=TOKEN)
    first = await providers.get(policy, "shop")
    assert await providers.get(policy, "shop") is first and len(providers.clients) == 1
    assert isinstance(first, Prometheus) and first.client.headers["Authorization"] == "Bearer s3cret"
    assert first.address == "https://prometheus:9090"
    await providers.close()


async def test_a_refused_query_is_found_while_min_samples_still_waits() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "increase" in request.url.params["query"]:  # minSamples: too little traffic yet
            return vector("3")(request)
        return answer(400, "bad_data", "1:10: parse error: unclosed left parenthesis")(request)
    with pytest.raises(Rejected, match=r"metric p99: .*HTTP 400"):
        await measure_one(handler, minSamples={"query": "sum(increase(x[1m]))", "atLeast": 100})


async def test_min_samples_waits_whatever_the_main_query_says() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return vector("3" if "increase" in request.url.params["query"] else "0.9")(request)
    result = await measure_one(handler, minSamples={"query": "sum(increase(x[1m]))", "atLeast": 100})
    assert result.verdict == Verdict.WAITING and "3 of 100 samples" in result.message


# --- abortCondition: one measurement fails the run, whatever failureLimit says ------------------

def _tripwire(failure_limit: int = 2) -> RolloutPolicySpec:
    return policy_spec([{"analysis": {}}], analysis={"count": 5, "metrics": [
        {"name": "error-rate", "query": "q", "successCondition": "result < 0.05", "failureLimit": failure_limit,
         "abortCondition": "result > 0.3"}]})


@pytest.mark.parametrize("background", [False, True], ids=["step run", "background run"])
def test_a_measurement_meeting_the_abort_condition_fails_the_run_at_once(background: bool) -> None:
    policy = _tripwire()
    metrics, spec = list(policy.analysis.metrics), policy.analysis
    status, run = ReleaseStatus(candidate_version="1.1.0"), analysis.start(-1 if background else 0, T0)
    run = analysis.record(status, run, [judge(metrics[0], 0.01)], T0, "1.1.0", 0)
    run = analysis.record(status, run, [judge(metrics[0], 0.5)], T0 + timedelta(seconds=30), "1.1.0", 0)
    # a restart in between: the run is read back from status as the API server stores it
    run = AnalysisRun.model_validate(run.model_dump(by_alias=True, mode="json"))
    assert run.metrics["error-rate"].tripped_by == "0.5" and run.metrics["error-rate"].failed == 1
    state = analysis.evaluate(run, metrics, spec, T0 + timedelta(seconds=31), 300, background=background)
    assert state.outcome == analysis.Outcome.FAILED and state.metric == "error-rate"
    assert state.reason == ("metric error-rate met its abortCondition `result > 0.3` (value 0.5): one such "
                            "measurement is enough, without waiting for failureLimit 2")
    assert analysis.evidence(status, state) == state.reason, "the reason names the value already"
    assert status.analysis[-1].message == "0.5: abortCondition result > 0.3 holds: the analysis fails at once"


def test_a_failure_short_of_the_abort_condition_still_waits_for_failure_limit() -> None:
    policy = _tripwire()
    metrics = list(policy.analysis.metrics)
    run = analysis.record(ReleaseStatus(), analysis.start(0, T0), [judge(metrics[0], 0.2)], T0, "1.1.0", 0)
    state = analysis.evaluate(run, metrics, policy.analysis, T0 + timedelta(seconds=1), 300)
    assert state.outcome == analysis.Outcome.RUNNING and run.metrics["error-rate"].tripped_by is None


def test_a_tripped_abort_condition_with_failure_limit_zero_says_no_limit() -> None:
    policy = _tripwire(failure_limit=0)
    metrics = list(policy.analysis.metrics)
    run = analysis.record(ReleaseStatus(), analysis.start(0, T0), [judge(metrics[0], math.inf)], T0, "1.1.0", 0)
    state = analysis.evaluate(run, metrics, policy.analysis, T0, 300)
    assert state.reason == ("metric error-rate met its abortCondition `result > 0.3` (value +Inf): one such "
                            "measurement is enough")

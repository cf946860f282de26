"""CEL conditions (issue 7, items 5, 19 and 22): refused before they run when they cannot work,
evaluated as the CEL spec says when they can, and never an exception out of a pass."""

from __future__ import annotations

import math

import pytest

from sluice.analysis import cel
from sluice.analysis.judge import judge, problems
from sluice.api.models import Metric, NoData, Verdict
from tests.unit.world import policy_spec


def policy_with(condition: str) -> list[str]:
    return problems(policy_spec([{"analysis": {}}], analysis={"metrics": [
        {"name": "error-rate", "query": "q", "successCondition": condition}]}))


@pytest.mark.parametrize(("condition", "says"), [
    pytest.param("has(result)", "has() argument must be a field selection", id="has() misuse (item 22)"),
    pytest.param("has(result.x)", "", id="a double has no fields"),
    pytest.param("result == 0", "result is a double: write 0.0, not 0", id="== int (item 5)"),
    pytest.param("result != 0", "result is a double: write 0.0, not 0", id="!= int (item 5)"),
    pytest.param("result in [0, 1]", "result is a double: write 0.0, not 0", id="in a list of ints (item 5)"),
    pytest.param("latency < 0.5", "undeclared reference to 'latency'", id="unknown variable"),
    pytest.param("result", "gives a double, not true or false", id="not a bool"),
    pytest.param("dyn(result)", "could not be evaluated for result = 0.5: gave 0.5, not true or false",
                 id="not a bool at run time: the sample evaluation"),
    pytest.param("result <", "is not valid CEL", id="syntax"),
    pytest.param("(" * 500 + "result" + ")" * 500 + " < 1.0", "is nested too deeply", id="deep nesting"),
])
def test_conditions_that_cannot_work_are_refused_by_problems(condition: str, says: str) -> None:
    [problem] = policy_with(condition)
    assert problem.startswith("metric error-rate: successCondition ") and says in problem


@pytest.mark.parametrize(("condition", "value", "holds"), [
    pytest.param("result < 1", 0.5, True, id="int/double ordering is CEL"),
    pytest.param("result >= 1", 0.5, False, id="int/double ordering, false"),
    pytest.param("result == 0.0", 0.0, True, id="double equality"),
    pytest.param("result in [0.0, 1.0]", 1.0, True, id="double in"),
    pytest.param("result < 0.5", math.inf, False, id="+Inf is not small"),
    pytest.param("result > 0", math.inf, True, id="+Inf is large"),
    pytest.param("result > -1.0", -math.inf, False, id="-Inf is small"),
    pytest.param("[0.1, 0.2].exists(x, result < x)", 0.15, True, id="macros"),
    pytest.param("false && 1 / 0 > 0", 0.5, False, id="errors absorbed"),
])
def test_conditions_evaluate_as_cel_says(condition: str, value: float, holds: bool) -> None:
    assert policy_with(condition) == []
    assert cel.condition(condition).evaluate(value) is holds


def test_has_result_no_longer_promotes() -> None:
    """cel-python evaluated `has(result)` to true: every measurement passed."""
    result = judge(Metric(name="error-rate", query="q", successCondition="has(result)"), 0.9)
    assert result.verdict == Verdict.ERROR and "has() argument must be a field selection" in result.message


def test_a_data_dependent_failure_is_an_error_not_an_exception() -> None:
    metric = Metric(name="error-rate", query="q", successCondition="int(result) < 5")
    assert judge(metric, 1.0).verdict == Verdict.SUCCESSFUL
    failed = judge(metric, math.inf)
    assert failed.verdict == Verdict.ERROR and "could not be evaluated for result = +Inf" in failed.message


@pytest.mark.parametrize("condition", [
    pytest.param("(" * 5000 + "result" + ")" * 5000 + " < 1.0", id="parentheses"),
    pytest.param("!" * 5000 + "(result < 1.0)", id="negations"),
    pytest.param("[" * 5000 + "]" * 5000 + " == []", id="lists"),
    pytest.param("result" + " + 1.0" * 20_000 + " > 0.0", id="120 KB"),
])
def test_huge_conditions_never_raise_out_of_the_judge(condition: str) -> None:
    """Longer than the CRD allows (the operator may still meet one): an answer or an Error."""
    metric = Metric.model_construct(name="m", query="q", success_condition=condition, failure_condition=None,
                                    no_data=NoData.INCONCLUSIVE)
    assert judge(metric, 0.5).verdict in (Verdict.ERROR, Verdict.SUCCESSFUL)


@pytest.mark.parametrize(("rule", "value", "holds"), [
    pytest.param("[has(self.canary), has(self.rolling)].filter(x, x).size() == 1", {"canary": {}}, True, id="has"),
    pytest.param("self.metadata.name.size() <= 55", {"metadata": {"name": "x" * 60}}, False, id="size"),
    pytest.param("self.all(m, self.exists_one(n, n.name == m.name))", [{"name": "a"}, {"name": "a"}], False,
                 id="macros"),
    pytest.param("type(self) == int ? self >= 1 : self.size() > 0", 0, False, id="int-or-string"),
    pytest.param("duration(self) <= duration('24h')", "48h", False, id="duration"),
    pytest.param("isURL(self)", "http://x", None, id="Kubernetes' own function: left to the API server"),
    pytest.param("duration(self) <= duration('24h')", "99999999999999999999h", None, id="an error: left too"),
])
def test_crd_rules_for_lint(rule: str, value: object, holds: bool | None) -> None:
    assert cel.rule_holds(rule, value) is holds

"""The one judge: a measured value (or its absence) and a metric's conditions -> a verdict.

Conditions are CEL over `result`, evaluated by cel-python; never Python's eval. Missing data
is never a pass: an empty result or NaN follows the metric's noData; an error is an Error.
"""

from __future__ import annotations

import math
import statistics
from functools import lru_cache
from typing import Any

import celpy
from celpy import celtypes
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

from sluice.analysis import template
from sluice.api.models import Compare, Metric, NoData, RolloutPolicySpec, Verdict
from sluice.plan.types import Result

_ENV = celpy.Environment()


class ConditionError(ValueError):
    """A condition that does not compile."""


@lru_cache(maxsize=256)
def _program(expression: str) -> Any:
    try:
        return _ENV.program(_ENV.compile(expression))
    except CELParseError as error:
        raise ConditionError(f"is not valid CEL: {str(error).splitlines()[0]}") from error


def holds(expression: str, value: float) -> bool:
    """Whether a CEL condition holds for `result` = value; raises ValueError when it cannot say."""
    try:
        outcome = _program(expression).evaluate({"result": celtypes.DoubleType(value)})
    except CELEvalError as error:
        outcome = error
    if isinstance(outcome, CELEvalError):
        why = str(outcome.args[0] if outcome.args else outcome).split(" (in activation")[0]
        raise ValueError(f"{expression!r} could not be evaluated: {why}")
    if not isinstance(outcome, celtypes.BoolType):
        raise ValueError(f"{expression!r} gave {outcome!r}, not true or false")
    return bool(outcome)


def _no_data(metric: Metric, what: str) -> Result:
    verdict = {
        NoData.INCONCLUSIVE: Verdict.INCONCLUSIVE, NoData.FAIL: Verdict.FAILED, NoData.HOLD: Verdict.WAITING,
    }[metric.no_data]
    return Result(metric.name, verdict, None, f"{what} (noData: {metric.no_data.value})")


def judge(metric: Metric, value: float | None) -> Result:
    """Verdict for one query result. judge(m, None) follows noData; NaN is no data too."""
    if value is None or math.isnan(value):
        return _no_data(metric, "no data: the query returned an empty result or NaN")
    try:
        if metric.failure_condition and holds(metric.failure_condition, value):
            return Result(metric.name, Verdict.FAILED, value, f"{value:g}: {metric.failure_condition} holds")
        if metric.success_condition:
            if holds(metric.success_condition, value):
                return Result(metric.name, Verdict.SUCCESSFUL, value, f"{value:g}: {metric.success_condition}")
            if metric.failure_condition:
                return Result(metric.name, Verdict.INCONCLUSIVE, value,
                              f"{value:g}: neither {metric.success_condition} nor {metric.failure_condition}")
            return Result(metric.name, Verdict.FAILED, value, f"{value:g}: {metric.success_condition} does not hold")
    except ValueError as error:
        return Result(metric.name, Verdict.ERROR, value, str(error))
    return Result(metric.name, Verdict.SUCCESSFUL, value, f"{value:g}: {metric.failure_condition} does not hold")


def percent(text: str) -> float:
    return float(text.rstrip("%")) / 100


def compare(metric: Metric, spec: Compare, canary: list[float], stable: list[float]) -> Result:
    """Candidate against stable with a one-sided Mann-Whitney U test: a regression is a canary
    median above the stable's by more than maxIncrease, significant at `confidence`."""
    from scipy.stats import mannwhitneyu  # heavy import, only when a comparison is configured

    canary = [v for v in canary if not math.isnan(v)]
    stable = [v for v in stable if not math.isnan(v)]
    if len(canary) < 3 or len(stable) < 3:
        return _no_data(metric, f"too few samples to compare ({len(canary)} canary, {len(stable)} stable)")
    limit = statistics.median(stable) * (1 + percent(spec.max_increase))
    shifted = [v - (limit - statistics.median(stable)) for v in canary]
    p_value = float(mannwhitneyu(shifted, stable, alternative="greater").pvalue)
    median = statistics.median(canary)
    detail = (f"canary median {median:g} vs stable {statistics.median(stable):g} "
              f"(limit {limit:g}, p={p_value:.3f})")
    if p_value < 1 - spec.confidence:
        return Result(metric.name, Verdict.FAILED, median, "regression: " + detail)
    return Result(metric.name, Verdict.SUCCESSFUL, median, detail)


def problems(policy: RolloutPolicySpec, args: dict[str, str] | None = None) -> list[str]:
    """What the API server cannot check in a policy: conditions that do not compile, query
    templates that do not render. With `args`, unknown variables are problems too."""
    found: list[str] = []
    known = set(template.BUILTIN) | set(args or {})
    for metric in policy.analysis.metrics:
        for field, expression in (("successCondition", metric.success_condition),
                                  ("failureCondition", metric.failure_condition)):
            if expression:
                try:
                    _program(expression)
                except ConditionError as error:
                    found.append(f"metric {metric.name}: {field} {error}")
        queries = [("query", metric.query), ("compare.query", metric.compare.query if metric.compare else None),
                   ("minSamples.query", metric.min_samples.query if metric.min_samples else None)]
        for field, query in queries:
            if not query:
                continue
            try:
                used = template.variables(query)
            except template.TemplateError as error:
                found.append(f"metric {metric.name}: {field} {error}")
                continue
            unknown = sorted(used - known) if args is not None else []
            if unknown:
                found.append(f"metric {metric.name}: {field} uses unknown variable(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(known))}")
    return found

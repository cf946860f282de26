"""The one judge: a measured value (or its absence) and a metric's conditions -> a verdict.

Conditions are CEL over `result` (a double), through sluice.analysis.cel; never Python's eval.
±Inf is data (histogram_quantile gives +Inf exactly when latency is past the largest bucket)
and goes to the condition. Only an empty result or NaN is no data, which is never a pass: it
follows the metric's noData and is marked missing. A condition that cannot say is an Error.
abortCondition is tried first: a value that meets it is Failed and marked `tripped`, which
fails the analysis at once, whatever failureLimit says (sluice.plan.analysis).
"""

from __future__ import annotations

import json
import math
import re
import statistics
from urllib.parse import urlsplit

from sluice.analysis import cel, jsonpath, mannwhitney, template
from sluice.api.models import Compare, Metric, NoData, RolloutPolicySpec, Verdict, WebMetric
from sluice.plan.types import Result, show

ConditionError = cel.ConditionError

EMPTY = "the query returned no series; if an empty result means zero, end it with `or vector(0)`"
NOT_A_NUMBER = "the query returned NaN"
SAMPLE = 0.5  # the double every condition is tried on before it is accepted


def holds(expression: str, value: float) -> bool:
    """Whether a CEL condition holds for `result` = value; raises ValueError when it cannot say."""
    try:
        return cel.condition(expression).evaluate(value)
    except cel.ConditionError as error:
        raise ValueError(f"{expression!r} {error}") from error
    except cel.EvaluationError as error:
        raise ValueError(f"{expression!r} could not be evaluated for result = {show(value)}: {error}") from error


def _no_data(metric: Metric, what: str) -> Result:
    verdict = {
        NoData.INCONCLUSIVE: Verdict.INCONCLUSIVE, NoData.FAIL: Verdict.FAILED, NoData.HOLD: Verdict.WAITING,
    }[metric.no_data]
    return Result(metric.name, verdict, None, f"no data: {what} (noData: {metric.no_data.value})", missing=True)


def judge(metric: Metric, value: float | None, empty: str = EMPTY, nan: str = NOT_A_NUMBER) -> Result:
    """Verdict for one query result: None is an empty result, NaN no data too; both follow noData.
    `empty` and `nan` say what no data was, in the provider's words."""
    if value is None:
        return _no_data(metric, empty)
    if math.isnan(value):
        return _no_data(metric, nan)
    shown = show(value)
    try:
        if metric.abort_condition and holds(metric.abort_condition, value):
            return Result(metric.name, Verdict.FAILED, value,
                          f"{shown}: abortCondition {metric.abort_condition} holds: the analysis fails at once",
                          tripped=True)
        if metric.failure_condition and holds(metric.failure_condition, value):
            return Result(metric.name, Verdict.FAILED, value, f"{shown}: {metric.failure_condition} holds")
        if metric.success_condition:
            if holds(metric.success_condition, value):
                return Result(metric.name, Verdict.SUCCESSFUL, value, f"{shown}: {metric.success_condition}")
            if metric.failure_condition:
                return Result(metric.name, Verdict.INCONCLUSIVE, value,
                              f"{shown}: neither {metric.success_condition} nor {metric.failure_condition}")
            return Result(metric.name, Verdict.FAILED, value, f"{shown}: {metric.success_condition} does not hold")
    except ValueError as error:
        return Result(metric.name, Verdict.ERROR, value, str(error))
    return Result(metric.name, Verdict.SUCCESSFUL, value, f"{shown}: {metric.failure_condition} does not hold")


def percent(text: str) -> float:
    return float(text.rstrip("%")) / 100


def compare(metric: Metric, spec: Compare, canary: list[float], stable: list[float]) -> Result:
    """Candidate against stable with a one-sided Mann-Whitney U test (scipy's p-values, see
    sluice.analysis.mannwhitney): a regression is a canary median above the stable's by more than
    maxIncrease, significant at `confidence`.
    +Inf samples are data (a request past the largest bucket); only NaN is dropped."""
    canary = [v for v in canary if not math.isnan(v)]
    stable = [v for v in stable if not math.isnan(v)]
    if len(canary) < 3 or len(stable) < 3:
        return _no_data(metric, f"too few samples to compare ({len(canary)} canary, {len(stable)} stable)")
    baseline = statistics.median(stable)
    margin = baseline * percent(spec.max_increase)
    if not math.isfinite(margin):  # an infinite stable median: no room to shift by
        margin = 0.0
    shifted = [v - margin for v in canary]
    p_value = mannwhitney.greater(shifted, stable)
    median = statistics.median(canary)
    detail = (f"canary median {show(median)} vs stable {show(baseline)} "
              f"(limit {show(baseline + margin)}, p={p_value:.3f})")
    if p_value < 1 - spec.confidence:
        return Result(metric.name, Verdict.FAILED, median, "regression: " + detail)
    return Result(metric.name, Verdict.SUCCESSFUL, median, detail)


def _condition_problem(expression: str) -> str | None:
    """Why a condition cannot judge, or None: refused by the checker, or failing on a sample double."""
    try:
        cel.condition(expression).evaluate(SAMPLE)
    except cel.ConditionError as error:
        return str(error)
    except cel.EvaluationError as error:
        return f"could not be evaluated for result = {show(SAMPLE)}: {error}"
    return None


def _analysis_problems(policy: RolloutPolicySpec) -> list[str]:
    """Analyses that would run an unknown metric, or none: never a pass with zero measurements."""
    known = [m.name for m in policy.analysis.metrics]
    listed = ", ".join(known) if known else "none (spec.analysis.metrics is empty)"
    found: list[str] = []
    strategy = policy.strategy
    if strategy.canary is not None:
        for index, step in enumerate(strategy.canary.steps):
            if step.analysis is None:
                continue
            names = step.analysis.metrics
            where = f"analysis step {index + 1}"
            unknown = [n for n in names or [] if n not in known]
            for name in unknown:
                found.append(f"{where} names unknown metric {name}; known: {listed}")
            if names is not None and not names:
                found.append(f"{where} names no metric: it would run none")
            elif not unknown and not (names or known):
                found.append(f"{where} would run no metric: spec.analysis.metrics is empty")
    if not known:
        analyses = [
            ("backgroundAnalysis", strategy.canary is not None and strategy.canary.background_analysis is not None),
            ("prePromotionAnalysis", strategy.blue_green is not None and strategy.blue_green.pre_promotion_analysis),
            ("postPromotionAnalysis", strategy.blue_green is not None and strategy.blue_green.post_promotion_analysis),
            ("postAnalysis", strategy.rolling is not None and strategy.rolling.post_analysis),
        ]
        found += [f"{name} would run no metric: spec.analysis.metrics is empty" for name, on in analyses if on]
    return found


# Headers a policy may not set: they would name another site behind the same address (Host),
# or make the request's framing disagree with its body.
RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive", "te",
                              "trailer", "upgrade", "expect", "proxy-authorization", "proxy-connection"})
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP header name (RFC 9110 token)


def web_problems(web: WebMetric, known: set[str] | None) -> list[str]:
    """What a web metric's spec cannot do, known without sending it: a jsonPath that does not
    parse, a body that does not render or is not JSON once rendered (a {{variable}} belongs inside
    a JSON string), headers HTTP cannot carry or that Sluice sets itself. With `known`, unknown
    variables are problems too. Whether its URL is allowed is the operator's to say, at run time."""
    found: list[str] = []
    try:
        jsonpath.compiled(web.json_path)
    except jsonpath.PathError as error:
        found.append(str(error))
    if web.body is not None:
        try:
            used = template.variables(web.body)
        except template.TemplateError as error:
            found.append(f"body {error}")
        else:
            unknown = sorted(used - known) if known is not None else []
            if unknown:
                found.append(f"body uses unknown variable(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(known or ()))}")
            try:
                json.loads(template.render(web.body, {name: "x" for name in used}, template.escape_json))
            except ValueError:
                found.append("body is not JSON once rendered; a {{variable}} is substituted as the contents of a "
                             'JSON string, so it belongs inside quotes: {"app": "{{release}}"}')
    for name, value in web.headers.items():
        if not _TOKEN.match(name):
            found.append(f"header {name!r} is not a valid HTTP header name")
        elif name.lower() in RESERVED_HEADERS:
            found.append(f"header {name} cannot be set by a policy (Sluice sends the request as its URL says)")
        elif name.lower() == "authorization" and web.bearer_token_secret_ref is not None:
            found.append("header Authorization and bearerTokenSecretRef both set the Authorization header; keep one")
        if not all(" " <= char <= "~" or char == "\t" for char in value):
            found.append(f"header {name!r} has a value HTTP cannot carry (line breaks or non-ASCII)")
    if "@" in urlsplit(web.url).netloc and web.bearer_token_secret_ref is not None:
        found.append("url carries a user name and bearerTokenSecretRef sets a token too; keep one")
    return found


def problems(policy: RolloutPolicySpec, args: dict[str, str] | None = None) -> list[str]:
    """What the API server cannot check in a policy: conditions that do not type-check against
    `result: double` or cannot give true or false, query templates and web bodies that do not
    render, jsonPaths that do not parse, analyses that name unknown metrics or would run none.
    With `args`, unknown variables are problems too."""
    found = _analysis_problems(policy)
    known = set(template.BUILTIN) | set(args or {})
    for metric in policy.analysis.metrics:
        for field, expression in (("successCondition", metric.success_condition),
                                  ("failureCondition", metric.failure_condition),
                                  ("abortCondition", metric.abort_condition)):
            if expression:
                problem = _condition_problem(expression)
                if problem:
                    found.append(f"metric {metric.name}: {field} {problem}")
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
        if metric.web is not None:
            found += [f"metric {metric.name}: web {problem}"
                      for problem in web_problems(metric.web, known if args is not None else None)]
    return found


# --- warnings: legal policies that probably do not mean what they say ----------------------------

_GUARDED = re.compile(r"\bor\s+(?:on\s*\(\s*\)\s*)?vector\(\s*0(?:\.0*)?\s*\)\s*$")
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')")
_LOWER = re.compile(r"\s(?:or|and|unless)\s|==|!=|<=|>=|[<>+-]")  # binds looser than `/`


def _depths(query: str) -> list[int | None]:
    """Bracket depth after each character; None inside a string literal."""
    depths: list[int | None] = []
    depth, quote, escaped = 0, "", False
    for char in query:
        if quote:
            depths.append(None)
            escaped, quote = (not escaped and char == "\\"), ("" if char == quote and not escaped else quote)
            continue
        if char in "\"'`":
            quote = char
            depths.append(None)
            continue
        depth += char in "([{"
        depth -= char in ")]}"
        depths.append(depth)
    return depths


def _top_level(query: str) -> list[tuple[int, str]]:
    """(position, character) of every character outside brackets and string literals."""
    return [(i, query[i]) for i, depth in enumerate(_depths(query)) if depth == 0 and query[i] not in ")]}"]


def _operands(query: str, slash: int) -> tuple[str, str]:
    """The operands of the top-level `/` at `slash`: up to the nearest looser operator each side."""
    outside = dict(_top_level(query))
    mask = "".join(query[i] if i in outside else "x" for i in range(len(query)))  # brackets hidden
    left_cut = max((m.end() for m in _LOWER.finditer(mask, 0, slash)), default=0)
    right = _LOWER.search(mask, slash + 1)
    return query[left_cut:slash].strip(), query[slash + 1:right.start() if right else len(query)].strip()


def _wrapped_in_or_vector(operand: str) -> bool:
    """`(... or vector(0))`: the whole operand in one pair of parentheses, ending in `or vector(0)`."""
    if not (operand.startswith("(") and operand.endswith(")")):
        return False
    inner = operand[1:-1]
    closes_early = any(depth is not None and depth < 0 for depth in _depths(inner))  # `(a) or (b)`
    return not closes_early and bool(_GUARDED.search(inner.strip()))


def ratio_can_be_empty(query: str) -> bool:
    """A top-level ratio whose numerator selects series the denominator does not (an extra label
    matcher such as code=~"5..") and is not wrapped in `(... or vector(0))`: with no such series
    the numerator is an empty vector, and so is the ratio, which reads as no data, not zero."""
    for position, char in _top_level(query):
        if char != "/":
            continue
        numerator, denominator = _operands(query, position)
        extra = set(_MATCHER.findall(numerator)) - set(_MATCHER.findall(denominator))
        if extra and not _wrapped_in_or_vector(numerator):
            return True
    return False


def warnings(policy: RolloutPolicySpec) -> list[str]:
    """What is legal in a policy but probably a trap; for `sluice lint` to print as warnings."""
    return [f"metric {m.name}: query is a ratio whose numerator can have no series (e.g. no 5xx yet), which "
            f"reads as no data, not zero; write it as (numerator or vector(0)) / denominator"
            for m in policy.analysis.metrics if m.query and ratio_can_be_empty(m.query)]

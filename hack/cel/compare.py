"""Which CEL library should judge Sluice's conditions? Run the cases that matter to us on each.

    .venv/bin/pip install cel-python common-expression-language cel-expr-python
    .venv/bin/python hack/cel/compare.py

Each case is a condition over `result` (declared as a double where the library can declare
types) with the answers cel-spec allows (tests/simple/testdata in google/cel-spec: macros,
comparisons, fp_math, integer_math, parse). Sluice needs one more thing than the spec: a
condition that is refused must be refused before it runs, never fail at every measurement,
so "compiles, then errors at run time" is wrong for a condition that can never work.
cel-expr-python is shown twice: plain (NewEnv with result: double) and as sluice.analysis.cel
configures it (the checker also declares int/double ordering, which the spec defines).
Every (library, case) runs in its own process: a library that crashes the interpreter
(a segfault on a deep expression) crashes only that case and shows as "crash".
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass

# An outcome is ("value", v), ("refused", why) at compile/check time, ("error", why) at run
# time, or ("crash", why) for anything that escapes as another exception or kills the process.
Outcome = tuple[str, object]


@dataclass(frozen=True)
class Case:
    name: str
    expression: str
    result: float
    right: tuple[Outcome, ...]  # any of these is right; ("refused", None) matches any refusal
    why: str


REFUSED: Outcome = ("refused", None)
ERROR: Outcome = ("error", None)
TRUE: Outcome = ("value", True)
FALSE: Outcome = ("value", False)
DEEP = 2000

CASES = [
    # macros (cel-spec macros.textproto)
    Case("all", "[1, 2, 3].all(x, x > 0)", 0.5, (TRUE,), "macro all"),
    Case("exists", "[1, 2, 3].exists(x, x > 2)", 0.5, (TRUE,), "macro exists"),
    Case("exists_one", "[1, 2, 3].exists_one(x, x > 1)", 0.5, (FALSE,), "two match: false"),
    Case("map", "[1, 2, 3].map(x, x * 2) == [2, 4, 6]", 0.5, (TRUE,), "macro map"),
    Case("filter", "[1, 2, 3].filter(x, x > 1).size() == 2", 0.5, (TRUE,), "macro filter"),
    Case("has field", "has({'a': 1}.a)", 0.5, (TRUE,), "has() on a map field"),
    Case("has absent", "has({'a': 1}.b)", 0.5, (FALSE,), "has() on an absent key"),
    # has() misuse (issue 7 item 22): not CEL at all, a parse error in the spec
    Case("has(result)", "has(result)", 0.5, (REFUSED,), "has() needs a field selection"),
    Case("has(result.x)", "has(result.x)", 0.5, (REFUSED,), "a double has no fields: a type error"),
    # int/double: equality (cel-spec: the checker has no (double, int) ==; unchecked, 0.0 == 0)
    Case("result == 0", "result == 0", 0.0, (REFUSED, TRUE), "refuse before run time, or true"),
    Case("result != 0", "result != 0", 0.5, (REFUSED, TRUE), "refuse before run time, or true"),
    Case("result in [0, 1]", "result in [0, 1]", 1.0, (REFUSED, TRUE), "heterogeneous in: refuse, or true"),
    Case("result in [0.0, 1.0]", "result in [0.0, 1.0]", 1.0, (TRUE,), "homogeneous in"),
    Case("result == 0.0", "result == 0.0", 0.0, (TRUE,), "double equality"),
    # int/double: ordering (cel-spec comparisons: cross-type numeric ordering is defined)
    Case("result < 1", "result < 1", 0.5, (TRUE,), "cross-type numeric ordering"),
    Case("result > 0 (+Inf)", "result > 0", math.inf, (TRUE,), "+Inf is larger than any int"),
    Case("result < 0.5 (+Inf)", "result < 0.5", math.inf, (FALSE,), "+Inf is not below 0.5"),
    Case("result > -1.0 (-Inf)", "result > -1.0", -math.inf, (FALSE,), "-Inf is below everything"),
    Case("result < 1.0 (NaN)", "result < 1.0", math.nan, (FALSE,), "NaN compares false"),
    Case("range", "result >= 2.0 && result <= 4.0", 3.0, (TRUE,), "logic"),
    # errors (cel-spec integer_math, fp_math, logic)
    Case("1 / 0", "1 / 0 > 0", 0.5, (ERROR,), "integer division by zero is an error"),
    Case("result / 0.0", "result / 0.0 > 1.0", 0.5, (TRUE,), "IEEE: x / 0.0 is +Inf"),
    Case("int overflow", "9223372036854775807 + 1 > 0", 0.5, (ERROR,), "int64 overflow is an error"),
    Case("error absorbed &&", "false && 1 / 0 > 0", 0.5, (FALSE,), "commutative logic absorbs errors"),
    Case("error absorbed ||", "1 / 0 > 0 || true", 0.5, (TRUE,), "commutative logic absorbs errors"),
    Case("undeclared", "latency < 0.5", 0.5, (REFUSED,), "undeclared reference: refuse before run time"),
    Case("unknown function", "foo(result)", 0.5, (REFUSED,), "undeclared function: refuse before run time"),
    Case("string + int", "'a' + 1 == 'a1'", 0.5, (REFUSED,), "no such overload: refuse before run time"),
    Case("size(double)", "result.size() > 0", 0.5, (REFUSED,), "no such overload: refuse before run time"),
    Case("python", "__import__('os').system('true') == 0", 0.5, (REFUSED,), "CEL, not Python"),
    # type-checking against result: double (a condition must be able to give a bool)
    Case("not a bool", "result", 0.5, (REFUSED, ("value", 0.5)), "a double; refused only with a checker"),
    Case("parse error", "result <", 0.5, (REFUSED,), "syntax error"),
    # deep nesting: an answer or a refusal, never a crash (RecursionError, segfault)
    Case("deep parens", "(" * DEEP + "result" + ")" * DEEP + " < 1.0", 0.5, (REFUSED, TRUE), "no crash"),
    Case("deep not", "!" * DEEP + "(result < 1.0)", 0.5, (REFUSED, TRUE), "no crash"),
    Case("deep sum", "result" + " + 1.0" * DEEP + " > 0.0", 0.5, (REFUSED, TRUE), "no crash"),
    Case("deep lists", "[" * DEEP + "]" * DEEP + " == []", 0.5, (REFUSED, TRUE), "no crash"),
    Case("long sum", "result" + " + 1.0" * 15000 + " > 0.0", 0.5, (REFUSED, TRUE), "90 KB: no crash"),
]


def _cel_python(expression: str, value: float) -> Outcome:
    import celpy
    from celpy import celtypes
    from celpy.celparser import CELParseError
    from celpy.evaluation import CELEvalError

    env = celpy.Environment()
    try:
        program = env.program(env.compile(expression))
    except CELParseError as error:
        return ("refused", str(error).splitlines()[0])
    try:
        outcome = program.evaluate({"result": celtypes.DoubleType(value)})
    except CELEvalError as error:
        return ("error", str(error)[:80])
    if isinstance(outcome, CELEvalError):
        return ("error", str(outcome)[:80])
    return ("value", bool(outcome) if isinstance(outcome, celtypes.BoolType) else float(outcome))


def _common_expression_language(expression: str, value: float) -> Outcome:
    import cel

    try:
        program = cel.compile(expression)
    except ValueError as error:
        return ("refused", str(error).splitlines()[0])
    try:
        outcome = program.execute({"result": value})
    except (ValueError, TypeError, RuntimeError, ZeroDivisionError, OverflowError) as error:
        return ("error", str(error)[:80])
    return ("value", outcome)


def _cel_expr_python_raw(expression: str, value: float) -> Outcome:
    import cel_expr_python.cel as cel

    env = cel.NewEnv(variables={"result": cel.Type.DOUBLE})
    try:
        program = env.compile(expression)
    except RuntimeError as error:
        return ("refused", str(error).splitlines()[0])
    outcome = program.eval(data={"result": value})
    if outcome.type() == cel.Type.ERROR:
        return ("error", str(outcome.value())[:80])
    return ("value", outcome.value())


def _cel_expr_python(expression: str, value: float) -> Outcome:
    # As Sluice uses it: through sluice.analysis.cel, result declared as a double.
    sys.path.insert(0, "operator")
    from sluice.analysis import cel

    try:
        condition = cel.Condition(expression)
    except cel.ConditionError as error:
        return ("refused", str(error))
    try:
        return ("value", condition.evaluate(value))
    except cel.EvaluationError as error:
        return ("error", str(error)[:80])


LIBRARIES = {
    "cel-python": _cel_python,
    "common-expression-language": _common_expression_language,
    "cel-expr-python (plain)": _cel_expr_python_raw,
    "cel-expr-python (Sluice)": _cel_expr_python,
}


def _matches(outcome: Outcome, right: tuple[Outcome, ...]) -> bool:
    kind, value = outcome
    for want_kind, want_value in right:
        if kind != want_kind:
            continue
        if want_value is None or value is want_value or value == want_value:
            return True
    return False


def _run_one(library: str, index: int) -> None:
    """Child process: one case on one library, printed as JSON."""
    case = CASES[index]
    try:
        outcome = LIBRARIES[library](case.expression, case.result)
    except BaseException as error:  # the point: anything that escapes is a crash
        outcome = ("crash", f"{type(error).__name__}: {str(error)[:60]}")
    value = outcome[1]
    if isinstance(value, float) and not math.isfinite(value):
        value = repr(value)
    print(json.dumps([outcome[0], value]))


def _outcome(library: str, index: int) -> Outcome:
    child = subprocess.run([sys.executable, __file__, "--one", library, str(index)],
                           capture_output=True, text=True, timeout=120)
    if child.returncode != 0:
        return ("crash", f"exit code {child.returncode}")
    kind, value = json.loads(child.stdout.strip().splitlines()[-1])
    return (kind, value)


def main() -> int:
    libraries = list(LIBRARIES)
    width = max(len(c.name) for c in CASES) + 2
    print(f"{'case':<{width}}" + "".join(f"{name:<30}" for name in libraries) + "expected")
    wrong = dict.fromkeys(libraries, 0)
    for index, case in enumerate(CASES):
        cells = []
        for library in libraries:
            outcome = _outcome(library, index)
            right = _matches(outcome, case.right)
            wrong[library] += not right
            shown = outcome[1] if outcome[0] == "value" else outcome[0]
            cells.append(f"{('right' if right else 'WRONG') + f' ({shown})':<30}")
        expected = " or ".join(k if v is None else f"{v}" for k, v in case.right)
        print(f"{case.name:<{width}}" + "".join(cells) + f"{expected}: {case.why}")
    print(f"{'wrong':<{width}}" + "".join(f"{wrong[name]:<30}" for name in libraries))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        _run_one(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(main())

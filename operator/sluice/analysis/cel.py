"""CEL, behind one small module: nothing else in Sluice imports the CEL library.

The library is cel-expr-python (Google's cel-cpp), chosen by hack/cel/compare.py: it parses
and type-checks as the CEL spec says, so `has(result)` and `result == 0` are refused before
they run instead of passing (cel-python) or failing at every measurement, and it bounds the
nesting of an expression instead of crashing the interpreter on it.

Conditions are type-checked with `result` declared a double. One addition to the checker:
ordering across int and double (`result < 1`), which the spec defines, cel-go's checker (and
so Kubernetes) accepts, and cel-cpp's runtime implements but its checker does not declare.
Equality across int and double (`result == 0`) stays refused, as in every CEL checker.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache
from typing import Any

import cel_expr_python.cel as _cel


class ConditionError(ValueError):
    """A condition refused before it runs: not CEL, not type-correct, or not a bool."""


class EvaluationError(ValueError):
    """A condition that could not say true or false for one value."""


_ORDERING = {"_<_": "less", "_<=_": "less_equals", "_>_": "greater", "_>=_": "greater_equals"}


@cache
def _condition_env() -> Any:
    t = _cel.Type
    kinds = {"int64": t.INT, "uint64": t.UINT, "double": t.DOUBLE, "string": t.STRING, "bytes": t.BYTES,
             "bool": t.BOOL, "timestamp": t.TIMESTAMP, "duration": t.DURATION}
    numbers = ("int64", "uint64", "double")
    # The standard ordering overloads, redeclared with the cross-numeric ones added (a
    # function cannot be declared twice, so the standard declaration is excluded first).
    excluded = "".join(f'    - name: "{op}"\n' for op in _ORDERING)
    config = _cel.NewEnvConfigFromYaml("stdlib:\n  exclude_functions:\n" + excluded)
    declarations = []
    for op, name in _ORDERING.items():
        overloads = [_cel.Overload(id=f"{name}_{kind}", return_type=t.BOOL, parameters=[type_, type_])
                     for kind, type_ in kinds.items()]
        overloads += [_cel.Overload(id=f"{name}_{a}_{b}", return_type=t.BOOL, parameters=[kinds[a], kinds[b]])
                      for a in numbers for b in numbers if a != b]
        declarations.append(_cel.FunctionDecl(op, overloads))
    return _cel.NewEnv(config=config, variables={"result": t.DOUBLE}, functions=declarations)


@cache
def _rule_env() -> Any:
    return _cel.NewEnv(variables={"self": _cel.Type.DYN})


_LOCATION = re.compile(r"^(?:[A-Z_]+: )?(?:ERROR: )?<input>:(-?\d+):(-?\d+): ")


def _plain(error: Exception) -> str:
    """The library's first line, without its status code and location prefix."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if "recursion" in first.lower():
        return "is nested too deeply"
    if "exceeds codepoint limit" in first:
        return "is too long"
    match = _LOCATION.match(first)
    if match:
        first = f"at column {int(match.group(2)) + 1}: {first[match.end():]}"
    first = re.sub(r"^[A-Z_]+: ", "", first)
    return re.sub(r" \[[A-Z_]+\]$", "", first)


def _hint(why: str) -> str:
    if "(double, int)" in why or "(int, double)" in why or "(double, list(int))" in why:
        return why + " (result is a double: write 0.0, not 0)"
    return why


class Condition:
    """A success or failure condition: CEL over `result`, a double, giving true or false."""

    def __init__(self, expression: str) -> None:
        try:
            self._expression = _condition_env().compile(expression)
        except Exception as error:  # the library raises RuntimeError for every refusal
            raise ConditionError(f"is not valid CEL over result (a number): {_hint(_plain(error))}") from error
        kind = self._expression.return_type()
        if kind != _cel.Type.BOOL and kind != _cel.Type.DYN:
            raise ConditionError(f"gives a {kind.name().lower()}, not true or false")

    def evaluate(self, value: float) -> bool:
        """Whether the condition holds for result = value; raises EvaluationError if it cannot say."""
        try:
            outcome = self._expression.eval(data={"result": float(value)})
        except Exception as error:
            raise EvaluationError(_plain(error)) from error
        if outcome.type() == _cel.Type.ERROR:
            raise EvaluationError(_plain(RuntimeError(str(outcome.value()))))
        answer = outcome.value()
        if not isinstance(answer, bool):
            raise EvaluationError(f"gave {answer!r}, not true or false")
        return answer


@lru_cache(maxsize=256)
def condition(expression: str) -> Condition:
    """The compiled condition, cached; raises ConditionError when it is refused."""
    return Condition(expression)


def rule_holds(rule: str, value: Any) -> bool | None:
    """A CRD's x-kubernetes-validations rule on `value` (as `self`): True or False, or None when it
    cannot be evaluated offline (Kubernetes' own functions such as isURL; a value that errors)."""
    try:
        outcome = _rule_env().compile(rule).eval(data={"self": value})
    except Exception:  # left to the API server, which has the whole Kubernetes CEL library
        return None
    if outcome.type() != _cel.Type.BOOL:
        return None
    return bool(outcome.value())

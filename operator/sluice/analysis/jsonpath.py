"""JSONPath for web metrics: where the number is in an endpoint's JSON answer.

Pure (no HTTP), so `sluice lint` and the judge can check a path without sending anything. The
dialect is jsonpath-ng's extended one (filters such as `$.items[?(@.name == "errors")].value`).
A path is parsed once per process; the library may raise anything on odd input, so every failure
to parse is a PathError with the path quoted, never a traceback.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import Any

from jsonpath_ng import JSONPath
from jsonpath_ng.ext.parser import parse as _parse

log = logging.getLogger(__name__)


class PathError(ValueError):
    """A jsonPath that does not parse."""


@functools.lru_cache(maxsize=256)
def compiled(path: str) -> JSONPath:
    """The parsed path, or PathError: compiled("$.data.errorRate") finds 0.01 in
    {"data": {"errorRate": 0.01}}; compiled("$.data[") is refused."""
    try:
        return _parse(path)
    except Exception as error:  # the parser's exceptions are many, and not all its own
        log.debug("jsonPath %r does not parse: %r", path, error)
        raise PathError(f"jsonPath {path!r} is not a valid JSONPath (such as $.data.errorRate)") from None


@dataclass(frozen=True)
class Found:
    """What a path found in an answer: a number, no value (absent or null), or why not a number.
    `problem` never quotes the answer: only the path and the JSON type found there."""

    value: float | None = None
    problem: str | None = None


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return "not a number"


def find(path: str, document: Any) -> Found:
    """The number at `path` in a parsed JSON document:
    find("$.a", {"a": 0.5}) == Found(0.5); {"a": None} or {} -> Found() (no data);
    {"a": "0.5"} -> a problem ("a string, not a number"); {"a": [1, 2]} with "$.a[*]" -> "several values".
    NaN (Python's json reads it) is returned as NaN, ±Infinity as ±inf; an integer too large for a
    double as ±inf, as JSON's 1e400 is."""
    try:
        matches = [match.value for match in compiled(path).find(document)]
    except PathError:
        raise
    except Exception as error:  # a filter on odd data, say
        log.debug("jsonPath %r could not be applied: %r", path, error)
        return Found(problem=f"jsonPath {path} could not be applied to the answer")
    values = [value for value in matches if value is not None]
    if len(matches) > 1:
        return Found(problem=f"several values at {path} ({len(matches)}); the path must select one")
    if not values:
        return Found()
    value = values[0]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return Found(problem=f"the value at {path} is {_kind(value)}, not a number")
    if isinstance(value, int):
        try:
            return Found(float(value))
        except OverflowError:
            return Found(math.inf if value > 0 else -math.inf)
    return Found(value)

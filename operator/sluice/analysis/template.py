"""Query and body templates: {{release}}, {{namespace}}, {{version}}, {{track}} and a Release's
analysisArgs.

Substituted values are escaped for the string literal they stand in, so a value cannot break out
of its quotes and change what is sent. Two escapings, one renderer: PromQL string literals for
queries (`{{release}}` = 'x"} or vector(1) #' stays one string), and JSON string contents for a web
metric's POST body (`{{release}}` = 'x", "admin": true, "y": "' stays one string too).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t", "`": "\\`"}

Escape = Callable[[str], str]


class TemplateError(ValueError):
    """A template that cannot be rendered: unbalanced braces or an unknown variable."""


def escape(value: str) -> str:
    """A value made safe inside a PromQL string literal: escape('a"b') == 'a\\\\"b'."""
    return "".join(_ESCAPES.get(char, char) for char in value)


def escape_json(value: str) -> str:
    """A value made safe inside a JSON string: escape_json('a"b\\n') == 'a\\\\"b\\\\n'. Control
    characters and everything outside ASCII become \\u escapes, so the body stays valid JSON (and
    valid UTF-8) whatever the value holds."""
    return json.dumps(value)[1:-1]


def variables(template: str) -> set[str]:
    """The variable names a template uses; raises TemplateError when its braces do not pair up."""
    stripped = _VARIABLE.sub("", template)
    if "{{" in stripped or "}}" in stripped:
        raise TemplateError("has a '{{' or '}}' that is not part of a {{variable}}")
    return set(_VARIABLE.findall(template))


def render(template: str, values: dict[str, str], escaping: Escape = escape) -> str:
    """The template with every variable replaced by its value, escaped by `escaping` (PromQL by default)."""
    missing = sorted(variables(template) - values.keys())
    if missing:
        known = ", ".join(sorted(values))
        raise TemplateError(f"uses unknown variable(s) {', '.join(missing)} (known: {known})")
    return _VARIABLE.sub(lambda m: escaping(values[m.group(1)]), template)


BUILTIN = ("release", "namespace", "version", "track", "stable_version")

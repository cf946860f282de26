"""Query templates: {{release}}, {{namespace}}, {{version}}, {{track}} and a Release's analysisArgs.

Substituted values are escaped for PromQL string literals, so a label value cannot break out
of its quotes and change the query (`{{release}}` = 'x"} or vector(1) #' stays one string).
"""

from __future__ import annotations

import re

_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t", "`": "\\`"}


class TemplateError(ValueError):
    """A template that cannot be rendered: unbalanced braces or an unknown variable."""


def escape(value: str) -> str:
    """A value made safe inside a PromQL string literal: escape('a"b') == 'a\\\\"b'."""
    return "".join(_ESCAPES.get(char, char) for char in value)


def variables(template: str) -> set[str]:
    """The variable names a template uses; raises TemplateError when its braces do not pair up."""
    stripped = _VARIABLE.sub("", template)
    if "{{" in stripped or "}}" in stripped:
        raise TemplateError("has a '{{' or '}}' that is not part of a {{variable}}")
    return set(_VARIABLE.findall(template))


def render(template: str, values: dict[str, str]) -> str:
    missing = sorted(variables(template) - values.keys())
    if missing:
        known = ", ".join(sorted(values))
        raise TemplateError(f"uses unknown variable(s) {', '.join(missing)} (known: {known})")
    return _VARIABLE.sub(lambda m: escape(values[m.group(1)]), template)


BUILTIN = ("release", "namespace", "version", "track", "stable_version")

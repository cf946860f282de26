"""Go-style durations ("30s", "2m", "1h30m"), as users write them in Kubernetes manifests."""

from __future__ import annotations

import re

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration: parse_duration("1m30s") == 90.0; parse_duration("250ms") == 0.25."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration such as 30s, 2m or 1h30m")
    return sum(float(number) * _UNIT[unit] for number, unit in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """The short human form: format_duration(90) == "1m30s"; format_duration(3600) == "1h"."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts) or "0s"

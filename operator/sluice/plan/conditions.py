"""kstatus conditions: Ready, Reconciling, Stalled, computed purely from a phase."""

from __future__ import annotations

from typing import Literal

from sluice.api.models import Condition


def set_condition(
    conditions: list[Condition], type_: str, status: bool, reason: str, message: str,
    now: str, generation: int | None,
) -> list[Condition]:
    """Conditions with `type_` set; lastTransitionTime moves only when the status flips."""
    value: Literal["True", "False"] = "True" if status else "False"
    previous = next((c for c in conditions if c.type == type_), None)
    since = previous.last_transition_time if previous and previous.status == value else now
    updated = Condition(
        type=type_, status=value, reason=reason, message=message,
        last_transition_time=since, observed_generation=generation,
    )
    return [c for c in conditions if c.type != type_] + [updated]

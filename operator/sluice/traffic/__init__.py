"""Traffic routers: how a weight becomes traffic. One module per router, one Protocol."""

from __future__ import annotations

from typing import Any, Protocol

from sluice.plan.types import Plan


class Reads(Protocol):
    async def get(self, api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any] | None: ...


class Router(Protocol):
    async def check(self) -> str | None:
        """A problem that stops the rollout (the route does not exist), or None."""

    async def route(self, plan: Plan, services: dict[str, dict[str, Any] | None]) -> None:
        """The plan's Services (`services`: as observed, by name), and its canary weight where the
        router has one (None: leave it)."""


def changed(observed: dict[str, Any] | None, desired: dict[str, Any], fields: tuple[str, ...]) -> bool:
    """Whether an owned object needs writing: missing, or differing in the fields Sluice sets."""
    if observed is None:
        return True
    for path in fields:
        have: Any = observed
        want: Any = desired
        for part in path.split("."):
            have = (have or {}).get(part) if isinstance(have, dict) else None
            want = (want or {}).get(part) if isinstance(want, dict) else None
        if have != want:
            return True
    return False

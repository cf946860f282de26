"""Gateway API: the canary weight is written to the backendRefs of an existing HTTPRoute.

The route belongs to the user (often to GitOps); Sluice changes only the weights of the
backendRefs naming its own Services, with the route's resourceVersion as a precondition.
"""

from __future__ import annotations

from typing import Any

from sluice.api.models import ReleaseSpec
from sluice.kube import objects
from sluice.kube.client import Conflict, Kube
from sluice.plan.types import Plan
from sluice.traffic import Reads
from sluice.traffic.replicas import apply_services

API_VERSION = "gateway.networking.k8s.io/v1"


class GatewayRoute:
    def __init__(self, kube: Kube, reads: Reads, release: dict[str, Any], spec: ReleaseSpec, route: str) -> None:
        self.kube, self.reads, self.release, self.spec, self.name = kube, reads, release, spec, route
        self.namespace = release["metadata"]["namespace"]

    async def _read(self, fresh: bool = False) -> dict[str, Any] | None:
        """The route from the watch cache; from the API server after a conflict (the cache may
        not have the other writer's change yet)."""
        source = self.kube if fresh else self.reads
        return await source.get(API_VERSION, "HTTPRoute", self.name, self.namespace)

    async def check(self) -> str | None:
        route = await self._read()
        if route is None:
            return f"HTTPRoute {self.name} does not exist in namespace {self.namespace}"
        _, problem = objects.route_weights(route, self.release["metadata"]["name"], 0)
        return problem

    async def route(self, plan: Plan, services: dict[str, dict[str, Any] | None]) -> None:
        # Under a route, <name> always selects a single track; the route splits the traffic.
        await apply_services(self.kube, self.release, self.spec, plan, False, services, canary=True)
        weight = plan.weight
        if weight is None:
            return
        for attempt in range(3):
            route = await self._read(fresh=attempt > 0)
            if route is None:
                return
            updated, _problem = objects.route_weights(route, self.release["metadata"]["name"], weight)
            if updated is None:
                return
            try:
                await self.kube.replace(updated)
                return
            except Conflict:
                continue  # someone else wrote the route meanwhile: read it again
        raise Conflict(f"HTTPRoute {self.name} kept changing under three writes")

"""Replica ratio: no mesh. Weights are approximated by pod counts (the planner sizes the
Deployments); the Service <name> selects both tracks while a rollout runs, and only the stable
pods otherwise, which is how a rollback takes traffic off the canary at once. No <name>-canary
Service: nothing routes to it, and on a cluster with a small Service range every Service counts.
(One that an earlier Sluice created stays until its Release goes: Sluice may not delete Services.)"""

from __future__ import annotations

from typing import Any

from sluice.api.models import ReleaseSpec
from sluice.kube import objects
from sluice.kube.client import Kube
from sluice.plan.types import Plan
from sluice.traffic import changed

SERVICE_FIELDS = ("spec.selector", "spec.ports", "metadata.ownerReferences")


class ReplicaRatio:
    def __init__(self, kube: Kube, release: dict[str, Any], spec: ReleaseSpec) -> None:
        self.kube, self.release, self.spec = kube, release, spec

    async def check(self) -> str | None:
        return None

    async def route(self, plan: Plan, services: dict[str, dict[str, Any] | None]) -> None:
        await apply_services(self.kube, self.release, self.spec, plan, plan.stable_service_selects_canary, services,
                             canary=False)


async def apply_services(kube: Kube, release: dict[str, Any], spec: ReleaseSpec, plan: Plan,
                         selects_canary: bool, observed: dict[str, dict[str, Any] | None], canary: bool) -> None:
    """Write the Services the plan and router use (`observed`: as read, by name)."""
    for body in objects.services(release, spec, selects_canary, plan.active, plan.preview, plan.preview_track,
                                 canary):
        current = observed.get(body["metadata"]["name"])
        if changed(current, body, SERVICE_FIELDS):
            if current is not None:  # a precondition: never a write over a state this pass did not see
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            await kube.write(body, exists=current is not None)

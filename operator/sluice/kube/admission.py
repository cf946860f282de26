"""Server-side dry-runs of the pod templates a Release asks for.

The Release's schema passes its pod template through, so the API server is the one judge of it.
A dry-run create of the Deployment, once per template, turns its refusal (a container named
`Bad_Name`, `cpu: lots`, an unknown field) into a Stalled condition in one pass, before anything
moves; and the defaulted template it returns is what a live Deployment is compared with, so an
edit made behind Sluice's back (`kubectl set image`) is seen and undone.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from kubernetes.client import ApiException

from sluice.kube import objects
from sluice.kube.client import Kube
from sluice.loop import refusal

Body = dict[str, Any]
CACHED = 4096  # templates remembered; each is a few dozen bytes


@dataclass(frozen=True)
class Admitted:
    refusal: str | None = None  # the API server's own sentence when it refuses the template
    normalized: str | None = None  # objects.normalized_hash of the template as the server stores it


class Admission:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.known: OrderedDict[tuple[str, str], Admitted] = OrderedDict()

    async def check(self, release: Body, version: str, template: Body, digest: str) -> Admitted:
        """The verdict on `template` (a version's pod template as the Release spec writes it)."""
        key = (release["metadata"]["namespace"], digest)
        if key in self.known:
            self.known.move_to_end(key)
            return self.known[key]
        pod = objects.pod_template_of(release["metadata"]["name"], version, template, "canary", digest)
        body = objects.deployment(release, "canary", 0, pod, digest)
        del body["metadata"]["name"]
        body["metadata"]["generateName"] = f"{release['metadata']['name'][:40]}-dry-run-"
        try:
            created = await self.kube.dry_run_create(body)
        except ApiException as error:
            if error.status in (400, 422):
                verdict = Admitted(refusal=refusal(error))
                self._remember(key, verdict)
                return verdict
            raise
        verdict = Admitted(normalized=objects.normalized_hash(created["spec"]["template"]))
        self._remember(key, verdict)
        return verdict

    def _remember(self, key: tuple[str, str], verdict: Admitted) -> None:
        self.known[key] = verdict
        while len(self.known) > CACHED:
            self.known.popitem(last=False)

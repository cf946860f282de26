"""kopf wiring only: watch events start or wake a Release's reconcile loop (sluice.loop).

Only event handlers are used: they add no finalizer and write nothing to the watched objects,
so a Release stays exactly as GitOps applied it, with Sluice's word in `status` alone.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from sluice import GROUP, VERSION, metrics
from sluice.analysis.providers import Providers
from sluice.kube.client import Kube
from sluice.kube.objects import NAME, RELEASE, TRACK
from sluice.loop import Loops
from sluice.reconcile import Context, reconcile

log = logging.getLogger("sluice")
state: dict[str, Any] = {}


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.peering.standalone = True  # one replica; leader election is the chart's concern
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # one line per event is noise
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per query too
    kube = await asyncio.to_thread(Kube)  # discovery is HTTP: not on the event loop
    context = Context(kube=kube, providers=Providers(kube))
    state["context"] = context
    state["loops"] = Loops(lambda namespace, name: reconcile(context, namespace, name))
    log.info("sluice operator started")


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    await state["loops"].stop()
    await state["context"].providers.close()


@kopf.on.event(GROUP, VERSION, "releases")  # type: ignore[arg-type]
async def release_event(type: str | None, namespace: str, name: str, **_: Any) -> None:
    if type == "DELETED":
        state["loops"].forget(namespace, name)
    else:
        state["loops"].poke(namespace, name)


@kopf.on.event(GROUP, VERSION, "rolloutpolicies")  # type: ignore[arg-type]
async def policy_event(namespace: str, **_: Any) -> None:
    state["loops"].poke_namespace(namespace)


@kopf.on.event("apps", "v1", "deployments", labels={RELEASE: kopf.PRESENT})  # type: ignore[arg-type]
async def deployment_event(labels: dict[str, str], namespace: str, **_: Any) -> None:
    state["loops"].poke(namespace, labels[RELEASE])


@kopf.on.event("", "v1", "pods", labels={TRACK: kopf.PRESENT, NAME: kopf.PRESENT})  # type: ignore[arg-type]
async def pod_event(labels: dict[str, str], namespace: str, **_: Any) -> None:
    # A pod gone or Ready decides when a switch is safe; the Deployment's status may not change.
    state["loops"].poke(namespace, labels[NAME])


def run(namespaces: list[str], verbose: bool, metrics_address: str | None = None,
        health_address: str | None = None) -> None:
    """Run the operator until interrupted: all namespaces, or only `namespaces`. Optionally
    serve /metrics and kopf's liveness probe (/healthz) on host:port addresses."""
    kopf.configure(verbose=verbose)
    if metrics_address:
        metrics.serve(metrics_address)
    liveness = f"http://{health_address}/healthz" if health_address else None
    asyncio.run(kopf.operator(clusterwide=not namespaces, namespaces=namespaces, standalone=True,
                              liveness_endpoint=liveness))

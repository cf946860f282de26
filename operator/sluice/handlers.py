"""kopf wiring only: the operator's lifecycle (startup, cleanup, probes), the watch caches, and
the wake-ups they send to each Release's reconcile loop (sluice.loop).

kopf's own watches filter labels in Python, on cluster-wide streams; the caches
(sluice.kube.cache) select on the server, and a pass reads them instead of the API server. No
kopf resource handler is registered: nothing adds a finalizer or writes to the watched objects,
so a Release stays exactly as GitOps applied it, with Sluice's word in `status` alone.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import kopf

from sluice import metrics
from sluice.analysis.addresses import WEB, Allowlist
from sluice.analysis.providers import Providers
from sluice.kube.cache import Cache, kinds
from sluice.kube.client import Kube, load_configuration
from sluice.leader import Elector, Timing
from sluice.loop import CONCURRENCY, Loops
from sluice.reconcile import Context, reconcile
from sluice.wakeups import woken

log = logging.getLogger("sluice")
state: dict[str, Any] = {}
STUCK_PASS = 300.0  # seconds: far beyond any pass whose calls all time out in turn


@dataclass(frozen=True)
class Options:
    namespaces: list[str] = field(default_factory=list)
    verbose: bool = False
    metrics_address: str | None = None
    health_address: str | None = None
    leader_election: bool = False
    lease_namespace: str = "default"
    lease_name: str = "sluice-leader"
    timing: Timing = field(default_factory=Timing)
    prometheus_allow: Allowlist = field(default_factory=Allowlist.from_environment)
    web_allow: Allowlist = field(default_factory=lambda: Allowlist.from_environment(WEB))
    concurrency: int = CONCURRENCY


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    options: Options = state["options"]
    settings.peering.standalone = True  # no kopf peering: the Lease below decides who acts
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330  # a half-open watch is dropped and re-opened
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.networking.connect_timeout = 10
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # one line per event is noise
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per query too
    configuration = await asyncio.to_thread(load_configuration)
    elector: Elector | None = None
    if options.leader_election:
        # Its own client: one thread and short timeouts, so busy passes never delay a renewal.
        timing = options.timing
        lease_kube = await asyncio.to_thread(functools.partial(
            Kube, configuration, workers=1, timeout=(timing.retry_period, timing.renew_deadline / 2)))
        identity = f"{os.environ['POD_ID']}_{uuid.uuid4().hex[:8]}"
        elector = Elector(lease_kube, options.lease_namespace, options.lease_name, identity, timing)
    kube = await asyncio.to_thread(Kube, configuration, fence=elector.fence if elector else None)
    # Standby replicas keep their caches warm too: a takeover starts from memory, not from a list.
    cache = await asyncio.to_thread(Cache, configuration, kinds(), options.namespaces, kube)
    kube.watch_writes(cache.written)
    providers = Providers(cache, options.prometheus_allow, web_allowed=options.web_allow)
    context = Context(kube=kube, providers=providers, reads=cache)
    loops = Loops(lambda namespace, name: reconcile(context, namespace, name), active=elector is None,
                  concurrency=options.concurrency)
    state.update(context=context, loops=loops, elector=elector, cache=cache)
    cache.subscribe(functools.partial(_wake, cache, loops))
    await cache.start()
    await cache.synced()
    log.info("watch caches filled: %s", ", ".join(f"{n} {k}" for k, n in cache.sizes().items()))
    for namespace, name in cache.keys("Release"):
        loops.poke(namespace, name)
    if elector:
        elector.on_start, elector.on_stop = loops.activate, loops.deactivate
        state["election"] = asyncio.create_task(elector.run(), name="leader election")
        log.info("sluice operator started as %s; it acts once it holds lease %s/%s", elector.identity,
                 options.lease_namespace, options.lease_name)
    else:
        log.info("sluice operator started")


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    if state.get("elector"):
        state["election"].cancel()
        await state["elector"].release()
    await state["loops"].stop()
    state["cache"].stop()
    await state["context"].providers.close()


@kopf.on.probe(id="progress")
async def progress(**_: Any) -> dict[str, Any]:
    """Liveness that means something: /healthz fails when a reconcile pass has been stuck for
    minutes, or when leader election stopped trying, not only when the process is gone."""
    loops: Loops = state["loops"]
    elector: Elector | None = state.get("elector")
    stuck = loops.oldest_pass()
    if stuck > STUCK_PASS:
        raise kopf.PermanentError(f"a reconcile pass has been running for {stuck:.0f}s")
    if elector:
        task: asyncio.Task[None] = state["election"]
        quiet = time.monotonic() - elector.last_try
        if task.done() or quiet > max(30.0, 5 * elector.timing.retry_period):
            raise kopf.PermanentError(f"leader election has not tried for {quiet:.0f}s")
    return {"leading": elector.leading() if elector else True, "releases": len(loops.known),
            "oldestPassSeconds": round(stuck, 1)}


def _wake(cache: Cache, loops: Loops, kind: str, before: Any, after: Any, own: bool) -> None:
    """A cache change: wake the loops of the Releases it concerns (sluice.wakeups decides)."""
    wake = woken(kind, before, after, own, cache.stores["Release"].objects.values())
    if wake.gone is not None:
        loops.forget(*wake.gone)
    for namespace, name in wake.releases:
        if cache.peek("Release", name, namespace) is not None:
            loops.poke(namespace, name)


def run(options: Options) -> None:
    """Run the operator until interrupted: all namespaces, or only `options.namespaces`.
    Optionally serve /metrics and the liveness probe (/healthz) on host:port addresses."""
    # kopf names itself after POD_ID, else after the user, and a container's user (65532) may
    # have no passwd entry: getpass would raise. The host name is the pod's name.
    os.environ.setdefault("POD_ID", socket.gethostname())
    state["options"] = options
    kopf.configure(verbose=options.verbose)
    if options.metrics_address:
        metrics.serve(options.metrics_address)
    liveness = f"http://{options.health_address}/healthz" if options.health_address else None
    asyncio.run(kopf.operator(clusterwide=not options.namespaces, namespaces=options.namespaces,
                              standalone=True, liveness_endpoint=liveness))

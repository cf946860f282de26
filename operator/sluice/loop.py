"""One reconcile loop per Release, woken by watch events or by the planner's requeue delay.

kopf's daemons and timers would add a finalizer to every Release (so deleting one would hang
while the operator is down); a task per object woken by plain watch events adds nothing to
the user's objects. Each loop runs one pass at a time: a pass is never concurrent with itself.

A pass that fails is retried after a backoff that watch events do not cut short: a Release
whose pass keeps failing (or keeps conflicting) costs the API server a few requests a minute,
however busy its Deployments and pods are. A wake-up that arrives meanwhile is kept and served
by the retry.

At most `concurrency` passes run at once (the rest wait their turn, so a thousand Releases
created together do not stampede the API server), and a pass woken by a watch event starts
`settle` seconds later: a burst of events (a Deployment scaling, its pods coming up) becomes one
pass.

Only the replica that leads runs loops. A standby remembers which Releases exist (the watch
events reach it too) and starts their loops the moment it takes over; a leader that loses the
lease stops them all at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable

from sluice import metrics
from sluice.kube.client import NotLeader

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)
Pass = Callable[[str, str], Awaitable[float | None]]
GONE = -1.0  # what a pass returns when the Release does not exist: its loop ends

IDLE = 300.0  # a settled Release is looked at again this often, as a safety net (from the caches)
CONCURRENCY = 32  # passes at once
SETTLE = 0.05  # seconds a wake-up waits for the rest of its burst
FIRST_RETRY = 0.2  # a conflict usually means the Release just changed: look again almost at once
BACKOFF_BASE = 0.5
MAX_BACKOFF = 60.0
REFUSED = (400, 403, 404, 409, 422)  # the API server said no: its sentence is the whole story


def backoff(failures: int, jitter: float) -> float:
    """Seconds to wait before retrying after `failures` failed passes in a row (>= 1).

    The first retry is quick; then the delay doubles, capped at MAX_BACKOFF, and `jitter`
    (uniform in [0, 1)) spreads it over its upper half so that many Releases failing together
    (an API server restart) do not retry in lock step. Failures 1, 2, 3, 4 ... wait
    0.2 s, then 0.25-0.5 s, 0.5-1 s, 1-2 s ... and from the 10th on 30-60 s.
    """
    if failures <= 1:
        return FIRST_RETRY
    ceiling = min(MAX_BACKOFF, BACKOFF_BASE * 2.0 ** min(failures - 2, 32))
    return ceiling / 2 + ceiling / 2 * jitter


def refusal(error: Exception) -> str:
    """The API server's own sentence for a refusal, e.g. "... because it is being terminated";
    the loop logs it, and a refused dry-run shows it in a Stalled condition."""
    try:
        return str(json.loads(getattr(error, "body", "") or "{}").get("message") or getattr(error, "reason", error))
    except (TypeError, ValueError):
        return str(getattr(error, "reason", error))


class Loops:
    def __init__(self, reconcile: Pass, jitter: Callable[[], float] = random.random,
                 active: bool = True, clock: Callable[[], float] = time.monotonic,
                 concurrency: int = CONCURRENCY, settle: float = SETTLE) -> None:
        self.reconcile = reconcile
        self.slots = asyncio.Semaphore(max(1, concurrency))
        self.settle = settle
        self.jitter = jitter
        self.clock = clock
        self.active = active  # False on a standby: remember Releases, run nothing
        self.known: set[Key] = set()
        self.wakeups: dict[Key, asyncio.Event] = {}
        self.tasks: dict[Key, asyncio.Task[None]] = {}
        self.running: dict[Key, float] = {}  # passes under way, since when (self.clock)

    def activate(self) -> None:
        """This replica leads now: run every Release's loop."""
        self.active = True
        for key in sorted(self.known):
            self.poke(*key)

    def deactivate(self) -> None:
        """This replica no longer leads: stop every loop at once (the write fence already
        refuses their writes; this stops their reads too)."""
        self.active = False
        for task in self.tasks.values():
            task.cancel()
        self.tasks.clear()
        self.wakeups.clear()
        self.running.clear()

    def oldest_pass(self) -> float:
        """Seconds the longest pass under way has been running (0 if none): a pass is bounded
        by its calls' timeouts, so one that runs far longer means the loop is stuck."""
        return max((self.clock() - since for since in self.running.values()), default=0.0)

    def poke(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self.known.add(key)
        if not self.active:
            return
        if key not in self.tasks or self.tasks[key].done():
            self.wakeups[key] = asyncio.Event()
            self.tasks[key] = asyncio.create_task(self._run(key), name=f"release {namespace}/{name}")
        self.wakeups[key].set()

    def poke_namespace(self, namespace: str) -> None:
        for ns, name in sorted(self.known):
            if ns == namespace:
                self.poke(ns, name)

    def forget(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self.known.discard(key)
        self.running.pop(key, None)
        task = self.tasks.pop(key, None)
        self.wakeups.pop(key, None)
        if task:
            task.cancel()

    async def stop(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        self.tasks.clear()

    def _end(self, key: Key, wakeup: asyncio.Event) -> bool:
        """End this loop after a pass found the Release gone, unless a wake-up came during that
        pass (the Release re-created meanwhile): then the loop runs again. No await between the
        check and the removal, so no poke can fall in between."""
        if wakeup.is_set():
            return False
        if self.tasks.get(key) is asyncio.current_task():  # forget() + poke() may have replaced us
            del self.tasks[key]
            self.wakeups.pop(key, None)
            self.known.discard(key)
        return True

    async def _once(self, key: Key) -> float | Exception | None:
        """One pass in one of the slots: its requeue delay, or the error it failed with."""
        async with self.slots:
            started = time.monotonic()
            self.running[key] = self.clock()
            try:
                return await self.reconcile(*key)
            except (asyncio.CancelledError, NotLeader):
                raise
            except Exception as error:  # a pass that fails is retried with backoff, never fatal
                return error
            finally:
                self.running.pop(key, None)
                metrics.PASS_SECONDS.observe(time.monotonic() - started)

    async def _run(self, key: Key) -> None:
        wakeup = self.wakeups[key]
        failures = 0
        while True:
            if self.settle:
                await asyncio.sleep(self.settle)
            wakeup.clear()
            try:
                delay = await self._once(key)
            except NotLeader:  # the lease lapsed mid-pass: deactivate() is about to stop us
                log.info("reconcile of %s/%s: stopped, this replica no longer leads", *key)
                return
            if isinstance(delay, Exception):
                error = delay
                conflict = type(error).__name__ == "Conflict"
                metrics.PASSES.labels("conflict" if conflict else "error").inc()
                failures += 1
                retry = backoff(failures, self.jitter())
                status = getattr(error, "status", None)
                if conflict:  # the Release changed under the pass: nothing to report
                    log.debug("reconcile of %s/%s: conflict %d in a row (retry in %.1fs)", *key, failures, retry)
                elif status in REFUSED or type(error).__name__ == "Refused":  # the API server said no: one line
                    log.warning("reconcile of %s/%s: %s (retry in %.1fs)", *key,
                                getattr(error, "message", None) or f"the API server refused: {refusal(error)}", retry)
                else:
                    log.error("reconcile of %s/%s failed (retry in %.1fs)", *key, retry, exc_info=error)
                await asyncio.sleep(retry)  # a watch event does not cut a backoff short: it waits for it
                continue
            failures = 0
            metrics.PASSES.labels("ok").inc()
            if delay == GONE:
                if self._end(key, wakeup):
                    return
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), timeout=IDLE if delay is None else max(delay, 0.05))

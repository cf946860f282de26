"""One reconcile loop per Release, woken by watch events or by the planner's requeue delay.

kopf's daemons and timers would add a finalizer to every Release (so deleting one would hang
while the operator is down); a task per object woken by plain watch events adds nothing to
the user's objects. Each loop runs one pass at a time: a pass is never concurrent with itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable

from sluice import metrics

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)
Pass = Callable[[str, str], Awaitable[float | None]]
GONE = -1.0  # what a pass returns when the Release does not exist: its loop ends

IDLE = 300.0  # a settled Release is looked at again this often, as a safety net
MAX_BACKOFF = 60.0


def _refusal(error: Exception) -> str:
    """The API server's own sentence for a refusal, e.g. "... because it is being terminated"."""
    try:
        return str(json.loads(getattr(error, "body", "") or "{}").get("message") or getattr(error, "reason", error))
    except ValueError:
        return str(getattr(error, "reason", error))


class Loops:
    def __init__(self, reconcile: Pass) -> None:
        self.reconcile = reconcile
        self.wakeups: dict[Key, asyncio.Event] = {}
        self.tasks: dict[Key, asyncio.Task[None]] = {}

    def poke(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        if key not in self.tasks or self.tasks[key].done():
            self.wakeups[key] = asyncio.Event()
            self.tasks[key] = asyncio.create_task(self._run(key), name=f"release {namespace}/{name}")
        self.wakeups[key].set()

    def poke_namespace(self, namespace: str) -> None:
        for ns, name in list(self.tasks):
            if ns == namespace:
                self.poke(ns, name)

    def forget(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        task = self.tasks.pop(key, None)
        self.wakeups.pop(key, None)
        if task:
            task.cancel()

    async def stop(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        self.tasks.clear()

    async def _run(self, key: Key) -> None:
        wakeup = self.wakeups[key]
        failures = 0
        while True:
            wakeup.clear()
            started = time.monotonic()
            try:
                delay = await self.reconcile(*key)
                failures = 0
                metrics.PASSES.labels("ok").inc()
                if delay == GONE:
                    self.tasks.pop(key, None)
                    self.wakeups.pop(key, None)
                    return
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a pass that fails is retried with backoff, never fatal
                metrics.PASSES.labels("conflict" if type(error).__name__ == "Conflict" else "error").inc()
                failures += 1
                delay = min(MAX_BACKOFF, 0.5 * 2 ** failures)
                status = getattr(error, "status", None)
                if type(error).__name__ == "Conflict":
                    delay = 0.2  # the Release changed under the pass: look again at once
                elif status in (403, 404, 409, 422):  # refused by the API server: say so in one line
                    log.warning("reconcile of %s/%s: the API server refused: %s (retry in %.1fs)", *key,
                                _refusal(error), delay)
                else:
                    log.exception("reconcile of %s/%s failed (retry in %.1fs)", *key, delay)
            metrics.PASS_SECONDS.observe(time.monotonic() - started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), timeout=IDLE if delay is None else max(delay, 0.05))

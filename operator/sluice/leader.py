"""Leader election on a coordination.k8s.io/v1 Lease: two replicas, one acts.

The chart runs two replicas. Both watch (so the standby is warm), but only the holder of the
Lease runs reconcile passes, and every write the operator sends passes `Elector.fence()`.

Safety rests on two monotonic clocks that are never compared with each other, as in client-go:
- The leader holds the lease until `sent + renew_deadline` on its own clock, where `sent` is
  when it began its last successful renewal. `fence()` refuses every write after that, even
  from a pass already running, and even if the process was frozen (SIGSTOP, a paused VM) in
  between: a monotonic clock keeps counting while the process is stopped.
- A standby takes the Lease only when its record has not changed for the record's
  `leaseDurationSeconds`, counted on its own clock from when it *saw* the last change. It can
  only see a renewal after the leader began it, so the old leader stops writing at least
  `lease_duration - renew_deadline` seconds before anyone else may start.
A leader that shuts down cleanly releases the Lease (an empty holder), and a standby takes it
at its next try instead of a lease duration later.

The elector talks to the API server through its own client (one worker thread, short
timeouts): reconcile passes filling the operator's executor cannot delay a renewal.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sluice import metrics
from sluice.kube.client import Conflict, NotLeader

log = logging.getLogger(__name__)
Body = dict[str, Any]
LEASE = "coordination.k8s.io/v1"


class LeaseStore(Protocol):
    """The three calls the elector makes (sluice.kube.client.Kube has them)."""

    async def get(self, api_version: str, kind: str, name: str, namespace: str) -> Body | None: ...
    async def create(self, body: Body) -> Body: ...
    async def replace(self, body: Body, status: bool = False) -> Body: ...


@dataclass(frozen=True)
class Timing:
    """Seconds. Takeover after a leader dies takes about lease_duration + retry_period;
    after a clean shutdown, about retry_period."""

    lease_duration: float = 8.0
    renew_deadline: float = 5.0
    retry_period: float = 2.0

    def problem(self) -> str | None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            return ("leader election needs 0 < retry period < renew deadline < lease duration, got "
                    f"{self.retry_period:g} < {self.renew_deadline:g} < {self.lease_duration:g}")
        return None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Elector:
    def __init__(self, store: LeaseStore, namespace: str, name: str, identity: str,
                 timing: Timing = Timing(), *, on_start: Callable[[], None] = lambda: None,
                 on_stop: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.monotonic,
                 jitter: Callable[[], float] = random.random) -> None:
        self.store = store
        self.namespace, self.name, self.identity = namespace, name, identity
        self.timing = timing
        self.on_start, self.on_stop = on_start, on_stop
        self.clock, self.jitter = clock, jitter
        self.leading_until = -math.inf  # on self.clock
        self.acting = False  # on_start called and on_stop not yet
        self.last_try = clock()  # liveness: the elector itself must keep going
        self._seen: tuple[Any, ...] | None = None  # the Lease record as last seen...
        self._seen_at = -math.inf  # ...and when it was first seen so, on self.clock

    def leading(self) -> bool:
        return self.clock() < self.leading_until

    def fence(self) -> None:
        """Raise NotLeader unless this replica holds the lease now: every write calls it."""
        if not self.leading():
            raise NotLeader(f"{self.identity} does not hold lease {self.namespace}/{self.name}")

    async def run(self) -> None:
        """Try to take or renew the lease every retry period, forever (until cancelled)."""
        while True:
            await self.step()
            wait = self.timing.retry_period * (1.0 if self.acting else 0.8 + 0.4 * self.jitter())
            if self.acting:  # wake at the deadline too: stop acting the moment the lease lapses
                wait = max(0.0, min(wait, self.leading_until - self.clock()))
            await asyncio.sleep(wait)

    async def step(self) -> None:
        """One try, then start or stop acting as the outcome says."""
        sent = self.clock()
        self.last_try = sent
        try:
            held = await self._try()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the API server unreachable or slow: the deadline decides
            log.warning("leader election: could not reach lease %s/%s: %s", self.namespace, self.name, error)
            held = False
        if held:
            self.leading_until = sent + self.timing.renew_deadline
        if self.leading() and not self.acting:
            self.acting = True
            metrics.LEADER.set(1)
            log.info("leader election: %s now leads (lease %s/%s)", self.identity, self.namespace, self.name)
            self.on_start()
        elif not self.leading() and self.acting:
            self.acting = False
            metrics.LEADER.set(0)
            log.warning("leader election: %s lost the lease %s/%s; standing by", self.identity,
                        self.namespace, self.name)
            self.on_stop()

    async def _try(self) -> bool:
        lease = await self.store.get(LEASE, "Lease", self.name, self.namespace)
        if lease is None:
            body = {"apiVersion": LEASE, "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(holder=None, spec={})}
            try:
                await self.store.create(body)
            except Exception as error:
                if getattr(error, "status", None) == 409:  # another replica created it first
                    return False
                raise
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"), spec.get("leaseDurationSeconds"),
                  lease["metadata"].get("resourceVersion"))
        if record != self._seen:
            self._seen, self._seen_at = record, self.clock()
        duration = float(spec.get("leaseDurationSeconds") or self.timing.lease_duration)
        if holder and holder != self.identity and self.clock() < self._seen_at + duration:
            return False  # another replica holds it and renewed it within its lease duration
        lease["spec"] = self._spec(holder=holder, spec=spec)
        try:
            await self.store.replace(lease)
        except Conflict:  # someone else wrote it since we read it
            return False
        return True

    def _spec(self, holder: str | None, spec: Body) -> Body:
        now = _now()
        ours = holder == self.identity
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if ours or holder is None else 1)
        return {"holderIdentity": self.identity, "leaseDurationSeconds": math.ceil(self.timing.lease_duration),
                "acquireTime": spec.get("acquireTime") if ours else now, "renewTime": now,
                "leaseTransitions": transitions}

    async def release(self) -> None:
        """Give the lease up on a clean shutdown, so a standby takes over at once."""
        if not self.leading():
            return
        self.leading_until = -math.inf  # no write of ours may follow, whatever happens next
        if self.acting:
            self.acting = False
            metrics.LEADER.set(0)
            self.on_stop()
        try:
            lease = await self.store.get(LEASE, "Lease", self.name, self.namespace)
            spec = (lease or {}).get("spec") or {}
            if lease is None or spec.get("holderIdentity") != self.identity:
                return
            lease["spec"] = {**spec, "holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": _now()}
            await self.store.replace(lease)
            log.info("leader election: %s released lease %s/%s", self.identity, self.namespace, self.name)
        except Exception as error:  # the standby takes over after the lease duration instead
            log.warning("leader election: could not release lease %s/%s: %s", self.namespace, self.name, error)

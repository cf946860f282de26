"""Leader election (sluice.leader): one replica acts, a dead or frozen one stops, a standby takes over.

The electors run against an in-memory Lease store with the API server's optimistic
concurrency (resourceVersion), on a fake clock. The exploring test lets Hypothesis interleave
two electors' requests and responses with clock jumps, process freezes, deaths and releases,
and checks the one promise that matters: never two replicas allowed to write at once.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Coroutine, Generator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.kube.client import Conflict, NotLeader
from sluice.leader import Elector, Timing
from sluice.loop import Loops

Body = dict[str, Any]
TIMING = Timing(lease_duration=8.0, renew_deadline=5.0, retry_period=2.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class InFlight:
    """An awaitable that suspends a coroutine once: a request or a response on the wire."""

    def __await__(self) -> Generator[None, None, None]:
        yield


class AlreadyExists(Exception):
    status = 409


class Leases:
    """The Lease API as the elector sees it. With `wire=True` every call suspends twice (on the
    way there and back), so a test can interleave two electors' requests."""

    def __init__(self, wire: bool = False) -> None:
        self.objects: dict[str, Body] = {}
        self.version = 0
        self.wire = wire

    async def _travel(self) -> None:
        if self.wire:
            await InFlight()

    async def get(self, api_version: str, kind: str, name: str, namespace: str) -> Body | None:
        await self._travel()
        found = copy.deepcopy(self.objects.get(name))
        await self._travel()
        return found

    async def create(self, body: Body) -> Body:
        return await self._write(body, lambda found: AlreadyExists if found else None)

    async def replace(self, body: Body, status: bool = False) -> Body:
        sent = body["metadata"].get("resourceVersion")
        return await self._write(body, lambda found: Conflict if found["metadata"]["resourceVersion"] != sent
                                 else None)

    async def _write(self, body: Body, refusal: Any) -> Body:
        """Store `body` with a new resourceVersion, unless `refusal(the stored object)` names an error."""
        await self._travel()
        name = body["metadata"]["name"]
        if error := refusal(self.objects.get(name)):
            raise error(name)
        self.version += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.objects[name] = stored
        await self._travel()
        return copy.deepcopy(stored)

    def holder(self) -> str:
        return str(self.objects["sluice-leader"]["spec"]["holderIdentity"])


def elector(store: Leases, clock: Clock, identity: str, log: list[str] | None = None) -> Elector:
    log = log if log is not None else []
    return Elector(store, "sluice-system", "sluice-leader", identity, TIMING, clock=clock, jitter=lambda: 0.5,
                   on_start=lambda: log.append(f"{identity} starts"),
                   on_stop=lambda: log.append(f"{identity} stops"))


async def test_one_replica_leads_and_the_other_may_not_write() -> None:
    store, clock, log = Leases(), Clock(), []
    a, b = elector(store, clock, "a", log), elector(store, clock, "b", log)
    await a.step()
    await b.step()
    assert (a.leading(), b.leading()) == (True, False)
    assert store.holder() == "a" and log == ["a starts"]
    a.fence()
    with pytest.raises(NotLeader, match="b does not hold lease sluice-system/sluice-leader"):
        b.fence()


async def test_a_dead_leader_is_replaced_after_the_lease_duration_and_not_before() -> None:
    store, clock, log = Leases(), Clock(), []
    a, b = elector(store, clock, "a", log), elector(store, clock, "b", log)
    await a.step()
    await b.step()  # b sees a's renewal now: the lease runs 8 s from here, on b's clock
    # a dies (SIGKILL): it never steps again
    for _ in range(3):
        clock.now += 2.5
        await b.step()
        assert not b.leading(), f"b took over {clock.now - 1000:.1f}s after a's last renewal"
    clock.now += 0.6  # 8.1 s since b saw a's last renewal
    await b.step()
    assert b.leading() and store.holder() == "b"
    assert store.objects["sluice-leader"]["spec"]["leaseTransitions"] == 1
    assert log == ["a starts", "b starts"]


async def test_a_frozen_leader_stops_writing_at_its_renew_deadline_and_stays_stopped_when_it_resumes() -> None:
    store, clock, log = Leases(), Clock(), []
    a, b = elector(store, clock, "a", log), elector(store, clock, "b", log)
    await a.step()
    await b.step()
    clock.now += 4.9
    a.fence()  # within its renew deadline it may still write
    clock.now += 0.2  # SIGSTOP: a did not renew; 5.1 s since its renewal began
    with pytest.raises(NotLeader):
        a.fence()
    clock.now += 3.0
    await b.step()
    assert b.leading()
    await a.step()  # SIGCONT: a finds b holding the lease
    assert not a.leading() and log == ["a starts", "b starts", "a stops"]
    with pytest.raises(NotLeader):
        a.fence()


async def test_a_released_lease_is_taken_at_the_next_try() -> None:
    store, clock, log = Leases(), Clock(), []
    a, b = elector(store, clock, "a", log), elector(store, clock, "b", log)
    await a.step()
    await b.step()
    await a.release()
    assert log == ["a starts", "a stops"] and store.holder() == ""
    with pytest.raises(NotLeader):
        a.fence()
    clock.now += 2.0
    await b.step()
    assert b.leading() and store.holder() == "b"


async def test_an_unreachable_api_server_ends_leadership_at_the_renew_deadline() -> None:
    store, clock, log = Leases(), Clock(), []
    a = elector(store, clock, "a", log)
    await a.step()

    async def refuse(*_: Any) -> None:
        raise ConnectionError("connection refused")
    store.get = refuse  # type: ignore[assignment,method-assign]
    clock.now += 2.0
    await a.step()
    assert a.leading()
    clock.now += 3.1
    await a.step()
    assert not a.leading() and log == ["a starts", "a stops"]


def test_timing_must_leave_a_margin_between_renew_deadline_and_lease_duration() -> None:
    assert Timing().problem() is None
    assert Timing(lease_duration=5, renew_deadline=5, retry_period=2).problem() == (
        "leader election needs 0 < retry period < renew deadline < lease duration, got 2 < 5 < 5")


# --- Exploring: two electors, requests and responses interleaved, freezes, deaths, releases ---

Action = tuple[str, float]
# An elector's next request or response moves ("a", "b"), time passes ("tick": mostly in short
# steps, sometimes just around the timing's edges, 2, 5 and 8 s), a replica freezes or thaws (SIGSTOP,
# SIGCONT: frozen, it does not move, even mid-request), or it is killed or shuts down cleanly and
# its pod comes back as a new elector with a new identity.
kinds = st.sampled_from(["a"] * 20 + ["b"] * 20 + ["tick"] * 16 + ["freeze a", "freeze b"] * 2
                        + ["thaw a", "thaw b", "kill a", "kill b", "release a", "release b"])
short = st.floats(min_value=0.01, max_value=1.0)  # mostly short: a lapse is crossed, not jumped over
seconds = st.one_of(short, short, short, st.sampled_from([1.9, 2.1, 4.9, 5.1, 7.9, 8.1]),
                    st.floats(min_value=0.01, max_value=12.0))
actions = st.lists(st.tuples(kinds, seconds), min_size=40, max_size=150)


@settings(max_examples=500, deadline=None)
@given(actions)
def test_never_two_replicas_may_write_at_once(plan: list[Action]) -> None:
    store, clock = Leases(wire=True), Clock()
    electors = {pod: elector(store, clock, pod) for pod in "ab"}
    running: dict[str, Coroutine[Any, Any, None] | None] = {"a": None, "b": None}
    frozen: set[str] = set()
    restarts = 0

    def finish(coroutine: Coroutine[Any, Any, None]) -> None:
        while True:
            try:
                coroutine.send(None)
            except StopIteration:
                return

    for what, delay in plan:
        if what == "tick":
            clock.now += delay
        elif what.startswith("freeze"):
            frozen.add(what[-1])
        elif what.startswith("thaw"):
            frozen.discard(what[-1])
        elif what in ("a", "b"):
            if what in frozen:
                continue
            coroutine = running[what] or electors[what].step()
            try:
                coroutine.send(None)
                running[what] = coroutine
            except StopIteration:
                running[what] = None
        else:
            end, pod = what.split()
            if running[pod] is not None:
                if end == "release":  # a clean shutdown lets its last try finish first
                    finish(running[pod])  # type: ignore[arg-type]
                else:
                    running[pod].close()  # type: ignore[union-attr]
                running[pod] = None
            if end == "release":
                finish(electors[pod].release())
            restarts += 1
            electors[pod] = elector(store, clock, f"{pod}{restarts}")
            frozen.discard(pod)
        leaders = [e.identity for e in electors.values() if e.leading()]
        assert len(leaders) <= 1, f"{leaders} may all write at t={clock.now - 1000:.2f}"


# --- Loops: a standby remembers Releases, runs nothing, and starts them all when it leads ---

async def until(condition: Any, what: str) -> None:
    """Yield to the loops until `condition()` holds (a busy machine only makes this slower)."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


async def test_a_standby_runs_no_pass_until_it_leads_and_stops_them_when_it_loses() -> None:
    passes: list[tuple[str, str]] = []

    async def reconcile(namespace: str, name: str) -> float | None:
        passes.append((namespace, name))
        return None  # settled: the loop idles until poked

    loops = Loops(reconcile, active=False)
    loops.poke("team", "web")
    loops.poke("team", "api")
    for _ in range(20):
        await asyncio.sleep(0)
    assert passes == [] and loops.tasks == {}
    loops.activate()
    await until(lambda: len(passes) == 2, "both Releases reconciled once the standby leads")
    assert sorted(passes) == [("team", "api"), ("team", "web")]
    loops.deactivate()
    assert loops.tasks == {}
    loops.poke("team", "web")  # while standing by: remembered, not run
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(passes) == 2
    loops.forget("team", "api")
    loops.activate()
    await until(lambda: len(passes) == 3, "the remaining Release reconciled after leading again")
    assert passes[2] == ("team", "web")
    await loops.stop()


async def test_a_pass_refused_by_the_fence_ends_quietly_and_reports_no_stuck_pass() -> None:
    async def reconcile(namespace: str, name: str) -> float | None:
        raise NotLeader("lost")

    loops = Loops(reconcile)
    loops.poke("team", "web")
    await until(lambda: loops.tasks[("team", "web")].done(), "the loop ended")
    assert loops.oldest_pass() == 0.0
    await loops.stop()

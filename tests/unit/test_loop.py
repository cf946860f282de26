"""The per-Release reconcile loop (sluice.loop), driven by a fake pass on a virtual clock.

The loop's behaviour is about time (backoff, requeue delays, wake-ups), so these tests run it on
an event loop whose clock jumps straight to the next timer: a minute of backoff takes
microseconds, and the pass times below are exact.
"""

from __future__ import annotations

import asyncio
import json
import logging
import selectors
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from sluice.kube.client import Conflict
from sluice.loop import FIRST_RETRY, GONE, IDLE, MAX_BACKOFF, Loops, backoff

KEY = ("shop", "checkout")


class _FastForward(selectors.DefaultSelector):
    """A selector that, when nothing is ready, moves the loop's clock to the next timer instead of
    sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if not ready and timeout:
            self.now += timeout
        elif not ready and timeout is None:
            raise RuntimeError("the loop would wait forever: nothing is scheduled")
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.clock = _FastForward()
        super().__init__(selector=self.clock)

    def time(self) -> float:
        return self.clock.now


def simulate(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    loop = VirtualTimeLoop()
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()


def now() -> float:
    return asyncio.get_running_loop().time()


class FakePass:
    """A reconcile pass that plays a script: each entry is what one pass returns (a delay, None or
    GONE), an exception it raises, or a coroutine function it awaits and whose result it returns.
    After the script, the last entry repeats. It records when each pass started."""

    def __init__(self, *script: object) -> None:
        self.script = list(script)
        self.started: list[float] = []
        self.running = 0
        self.most_running = 0

    async def __call__(self, namespace: str, name: str) -> float | None:
        assert (namespace, name) == KEY
        self.started.append(now())
        step = self.script[min(len(self.started), len(self.script)) - 1]
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            if isinstance(step, BaseException):
                raise step
            if callable(step):
                result: Awaitable[float | None] = step()
                return await result
            return step  # type: ignore[return-value]
        finally:
            self.running -= 1

    @property
    def gaps(self) -> list[float]:
        return [round(b - a, 6) for a, b in zip(self.started, self.started[1:], strict=False)]


def refused(status: int, message: str) -> ApiException:
    error = ApiException(status=status, reason="Unprocessable Entity")
    error.body = json.dumps({"kind": "Status", "message": message})
    return error


# --- the backoff itself ---------------------------------------------------------------------

@pytest.mark.parametrize(("failures", "jitter", "expected"), [
    pytest.param(1, 0.0, FIRST_RETRY, id="first retry is quick"),
    pytest.param(1, 0.99, FIRST_RETRY, id="first retry is quick whatever the jitter"),
    pytest.param(2, 0.0, 0.25, id="second: lower half of 0.5 s"),
    pytest.param(2, 1.0, 0.5, id="second: up to 0.5 s"),
    pytest.param(4, 0.5, 1.5, id="fourth: 1.5 s with mid jitter"),
    pytest.param(8, 0.0, 16.0, id="doubling"),
    pytest.param(10, 1.0, MAX_BACKOFF, id="capped"),
    pytest.param(10, 0.0, MAX_BACKOFF / 2, id="jitter still spreads the cap"),
    pytest.param(100_000, 0.5, 0.75 * MAX_BACKOFF, id="no overflow after many failures"),
])
def test_backoff(failures: int, jitter: float, expected: float) -> None:
    assert backoff(failures, jitter) == pytest.approx(expected)


def test_backoff_never_shrinks_and_never_exceeds_the_cap() -> None:
    for jitter in (0.0, 0.3, 0.999):
        delays = [backoff(n, jitter) for n in range(1, 40)]
        assert delays == sorted(delays)
        assert max(delays) <= MAX_BACKOFF


# --- a Release that goes away, and comes back --------------------------------------------------

def test_a_pass_that_finds_the_release_gone_ends_its_loop() -> None:
    fake = FakePass(GONE)

    async def scenario() -> None:
        loops = Loops(fake, settle=0)
        loops.poke(*KEY)
        await asyncio.sleep(IDLE * 2)
        assert fake.started == [0.0]
        assert loops.tasks == {} and loops.wakeups == {}

    simulate(scenario)


def test_a_wakeup_during_a_pass_that_finds_the_release_gone_is_not_lost() -> None:
    """The Release is deleted and re-created while a pass is reading it: the pass says GONE, but
    the watch event of the new Release arrived during that pass and must get a pass of its own."""
    loops: Loops

    async def recreated_meanwhile() -> float:
        await asyncio.sleep(0.1)
        loops.poke(*KEY)  # the ADDED event of the new Release
        await asyncio.sleep(0.1)
        return GONE

    fake = FakePass(recreated_meanwhile, 30.0)

    async def scenario() -> None:
        nonlocal loops
        loops = Loops(fake, settle=0)
        loops.poke(*KEY)
        await asyncio.sleep(10)
        assert fake.started == [0.0, pytest.approx(0.2)]  # the second pass at once, not at the next event
        assert KEY in loops.tasks and not loops.tasks[KEY].done()
        await asyncio.sleep(30)
        assert len(fake.started) == 3, "the new Release's loop keeps its requeue cadence"
        await loops.stop()

    simulate(scenario)


def test_a_release_poked_after_its_loop_ended_gets_a_new_loop() -> None:
    fake = FakePass(GONE, 5.0)

    async def scenario() -> None:
        loops = Loops(fake, settle=0)
        loops.poke(*KEY)
        await asyncio.sleep(1)
        assert loops.tasks == {}
        loops.poke(*KEY)
        await asyncio.sleep(6)
        assert fake.started == [0.0, 1.0, 6.0]
        await loops.stop()

    simulate(scenario)


# --- failures back off, and the backoff is real ----------------------------------------------

def test_a_persistent_conflict_backs_off_exponentially_up_to_the_cap() -> None:
    fake = FakePass(Conflict("checkout"))

    async def scenario() -> None:
        loops = Loops(fake, settle=0, jitter=lambda: 0.5)
        loops.poke(*KEY)
        await asyncio.sleep(600)
        await loops.stop()

    simulate(scenario)
    assert fake.gaps[:4] == [FIRST_RETRY, 0.375, 0.75, 1.5]
    assert fake.gaps[-1] == 0.75 * MAX_BACKOFF
    assert len(fake.started) < 25, f"{len(fake.started)} passes in 10 minutes of conflicts"


def test_the_jitter_spreads_releases_that_fail_together() -> None:
    gaps: list[list[float]] = []
    for jitter in (0.1, 0.9):
        fake = FakePass(Conflict("checkout"))

        async def scenario(fake: FakePass = fake, jitter: float = jitter) -> None:
            loops = Loops(fake, settle=0, jitter=lambda: jitter)
            loops.poke(*KEY)
            await asyncio.sleep(60)
            await loops.stop()

        simulate(scenario)
        gaps.append(fake.gaps)
    assert gaps[0][0] == gaps[1][0] == FIRST_RETRY
    assert all(a < b for a, b in zip(gaps[0][1:], gaps[1][1:], strict=False))


def test_watch_events_do_not_cut_a_backoff_short() -> None:
    """After an error the loop logs "retry in N s": it waits N s, however many pods and Deployments
    of that Release change meanwhile. A wake-up during the backoff is served by the retry."""
    fake = FakePass(RuntimeError("boom"), RuntimeError("boom"), RuntimeError("boom"), None)

    async def scenario() -> None:
        loops = Loops(fake, settle=0, jitter=lambda: 0.5)
        loops.poke(*KEY)
        for _ in range(100):  # a busy Release: a watch event every 50 ms for 5 s
            await asyncio.sleep(0.05)
            loops.poke(*KEY)
        await asyncio.sleep(IDLE / 2)
        await loops.stop()

    simulate(scenario)
    assert fake.gaps[:3] == [FIRST_RETRY, 0.375, 0.75], "each retry waited its whole backoff"
    # Once a pass succeeds, watch events wake the loop again at once.
    assert len(fake.started) > 50
    assert all(gap == pytest.approx(0.05) for gap in fake.gaps[4:])


def test_a_wakeup_during_a_backoff_is_served_by_the_retry_alone() -> None:
    fake = FakePass(RuntimeError("boom"), RuntimeError("boom"), RuntimeError("boom"), None)

    async def scenario() -> None:
        loops = Loops(fake, settle=0, jitter=lambda: 0.5)
        loops.poke(*KEY)
        await asyncio.sleep(0.2 + 0.375 + 0.1)  # in the third backoff (0.75 s)
        loops.poke(*KEY)
        await asyncio.sleep(IDLE - 10)
        await loops.stop()

    simulate(scenario)
    assert fake.started == pytest.approx([0.0, 0.2, 0.575, 1.325])


def test_a_success_resets_the_backoff() -> None:
    boom = RuntimeError("boom")
    fake = FakePass(boom, boom, boom, 1.0, boom, boom)

    async def scenario() -> None:
        loops = Loops(fake, settle=0, jitter=lambda: 0.5)
        loops.poke(*KEY)
        await asyncio.sleep(5)
        await loops.stop()

    simulate(scenario)
    assert fake.gaps[:5] == [FIRST_RETRY, 0.375, 0.75, 1.0, FIRST_RETRY]


# --- never crash, say it once ----------------------------------------------------------------

def test_an_api_refusal_is_one_log_line_with_the_servers_sentence(caplog: pytest.LogCaptureFixture) -> None:
    message = 'Deployment.apps "checkout" is invalid: spec.template.spec.containers[0].name: Invalid value: "Bad_Name"'
    fake = FakePass(refused(422, message), None)

    async def scenario() -> None:
        loops = Loops(fake, settle=0, jitter=lambda: 0.0)
        loops.poke(*KEY)
        await asyncio.sleep(1)
        await loops.stop()

    with caplog.at_level(logging.DEBUG, logger="sluice.loop"):
        simulate(scenario)
    assert len(fake.started) == 2, "the loop survived the refusal"
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert message in record.getMessage() and "retry in 0.2s" in record.getMessage()


def test_an_unexpected_error_is_logged_with_its_traceback_and_the_loop_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    fake = FakePass(KeyError("spec"), None)

    async def scenario() -> None:
        loops = Loops(fake, settle=0, jitter=lambda: 0.0)
        loops.poke(*KEY)
        await asyncio.sleep(1)
        assert not loops.tasks[KEY].done()
        await loops.stop()

    with caplog.at_level(logging.DEBUG, logger="sluice.loop"):
        simulate(scenario)
    assert len(fake.started) == 2
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.levelno == logging.ERROR and record.exc_info is not None


def test_a_conflict_is_not_reported_as_a_problem(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakePass(Conflict("checkout"), None)

    async def scenario() -> None:
        loops = Loops(fake, settle=0)
        loops.poke(*KEY)
        await asyncio.sleep(1)
        await loops.stop()

    with caplog.at_level(logging.DEBUG, logger="sluice.loop"):
        simulate(scenario)
    assert len(fake.started) == 2
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# --- the ordinary cadence --------------------------------------------------------------------

def test_after_a_successful_pass_a_wakeup_runs_the_next_pass_at_once() -> None:
    fake = FakePass(30.0)

    async def scenario() -> None:
        loops = Loops(fake, settle=0)
        loops.poke(*KEY)
        await asyncio.sleep(1)
        loops.poke(*KEY)
        await asyncio.sleep(40)
        await loops.stop()

    simulate(scenario)
    assert fake.started == [0.0, 1.0, 31.0]


def test_a_settled_release_is_looked_at_again_after_idle() -> None:
    fake = FakePass(None)

    async def scenario() -> None:
        loops = Loops(fake, settle=0)
        loops.poke(*KEY)
        await asyncio.sleep(IDLE + 1)
        await loops.stop()

    simulate(scenario)
    assert fake.started == [0.0, IDLE]


def test_passes_are_never_concurrent_and_wakeups_during_a_pass_give_one_more_pass() -> None:
    loops: Loops

    async def slow() -> float | None:
        for _ in range(10):
            await asyncio.sleep(0.1)
            loops.poke(*KEY)
        return None

    fake = FakePass(slow, None)

    async def scenario() -> None:
        nonlocal loops
        loops = Loops(fake, settle=0)
        loops.poke(*KEY)
        await asyncio.sleep(5)
        await loops.stop()

    simulate(scenario)
    assert fake.most_running == 1
    assert fake.started == pytest.approx([0.0, 1.0])


def test_forget_ends_the_loop_even_during_a_backoff() -> None:
    fake = FakePass(RuntimeError("boom"))

    async def scenario() -> None:
        loops = Loops(fake, settle=0, jitter=lambda: 0.5)
        loops.poke(*KEY)
        await asyncio.sleep(1)
        loops.forget(*KEY)
        passes = len(fake.started)
        await asyncio.sleep(120)
        assert len(fake.started) == passes and loops.tasks == {}

    simulate(scenario)


# --- bursts and bounded concurrency ------------------------------------------------------------

def test_a_burst_of_wake_ups_becomes_one_pass() -> None:
    """Five events in 30 ms (a Deployment scaling, its pods coming up) wake one pass, which
    starts `settle` after the first of them."""
    fake = FakePass(None)

    async def scenario() -> None:
        loops = Loops(fake, settle=0.05)
        loops.poke(*KEY)
        for _ in range(4):
            await asyncio.sleep(0.0075)
            loops.poke(*KEY)
        await asyncio.sleep(10)
        await loops.stop()

    simulate(scenario)
    assert fake.started == pytest.approx([0.05])


def test_no_more_passes_run_at_once_than_the_concurrency_allows() -> None:
    """Twenty Releases woken together, each pass taking 1 s: with 4 slots they run in five waves,
    and every Release still gets its pass."""
    running, most, started = [0], [0], []

    async def slow(namespace: str, name: str) -> float | None:
        started.append((name, now()))
        running[0] += 1
        most[0] = max(most[0], running[0])
        await asyncio.sleep(1)
        running[0] -= 1
        return None

    async def scenario() -> None:
        loops = Loops(slow, settle=0, concurrency=4)
        for n in range(20):
            loops.poke("shop", f"r{n}")
        await asyncio.sleep(30)
        await loops.stop()

    simulate(scenario)
    assert most[0] == 4
    assert sorted(name for name, _ in started) == sorted(f"r{n}" for n in range(20))
    assert max(at for _, at in started) == pytest.approx(4.0)

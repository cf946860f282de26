"""Notification benchmark: what handing events to the notifier costs a pass, how long a notification
takes to reach a receiver on this machine, and when a notification to a failing receiver is
retried with the operator's own settings (5 attempts, backoff from 1 s).

Prints figures; asserts nothing. `python hack/bench/notify.py` (PYTHONPATH=operator).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.unit.test_notify import IN_FLIGHT, Receiver, Secrets, a_policy, a_release, event, webhook

from sluice.analysis.addresses import Allowlist
from sluice.notify import Notifier
from sluice.plan import reasons


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def queueing(receiver: Receiver, rounds: int = 2000) -> None:
    """send() as a pass calls it: three events, two targets."""
    sender = Notifier(Secrets(), None, Allowlist(), capacity=10 * rounds)
    policy = a_policy(webhook(receiver.url, "a"), webhook(receiver.url, "b"))
    spent = []
    for n in range(rounds):
        events = [event(1), event(2, reasons.STEP_COMPLETED), event(3, reasons.PROMOTED)]
        began = time.perf_counter()
        sender.send(a_release(uid=f"{n:08x}-bench"), IN_FLIGHT, policy, events)
        spent.append(time.perf_counter() - began)
    await sender.close(grace=0)
    print(f"send(): 3 events x 2 targets, {rounds} passes: p50 {percentile(spent, 0.5) * 1e6:.0f} us, "
          f"p99 {percentile(spent, 0.99) * 1e6:.0f} us, max {max(spent) * 1e6:.0f} us")


async def delivery(receiver: Receiver, rounds: int = 200) -> None:
    """From send() to the request's arrival at a receiver on 127.0.0.1, one at a time."""
    sender = Notifier(Secrets(), None, Allowlist())
    policy = a_policy(webhook(receiver.url))
    lags = []
    for n in range(rounds):
        count = len(receiver.got)
        began = time.monotonic()
        sender.send(a_release(uid=f"{n:08x}-bench"), IN_FLIGHT, policy, [event(1)])
        while len(receiver.got) == count:
            await asyncio.sleep(0.0005)
        lags.append(receiver.got[-1][0] - began)
    await sender.close()
    print(f"send() -> arrival at a local receiver, {rounds} notifications: p50 {percentile(lags, 0.5) * 1e3:.1f} ms, "
          f"p99 {percentile(lags, 0.99) * 1e3:.1f} ms")


async def retries(receiver: Receiver) -> None:
    """A receiver answering 503 until the end: when each attempt arrives."""
    receiver.answers = [503] * 10
    sender = Notifier(Secrets(), None, Allowlist())
    began = time.monotonic()
    sender.send(a_release(), IN_FLIGHT, a_policy(webhook(receiver.url)), [event(1)])
    while len(receiver.got) < 5:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    await sender.close(grace=0)
    print("a receiver answering 503: attempts at " + ", ".join(f"{t - began:.2f}" for t, _, _, _ in receiver.got)
          + " s, then given up")


async def main() -> None:
    for bench in (queueing, delivery, retries):
        receiver = Receiver()
        try:
            await bench(receiver)
        finally:
            receiver.stop()


if __name__ == "__main__":
    asyncio.run(main())

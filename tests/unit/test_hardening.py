"""The operator's own robustness: every Kubernetes request times out, and liveness means progress."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import kopf
import pytest
from kubernetes.client import Configuration

from sluice import handlers
from sluice.kube.client import _TimedApiClient
from sluice.leader import Elector, Timing
from sluice.loop import Loops


@pytest.fixture
def half_open() -> Iterator[str]:
    """A server that accepts connections and never answers: a half-open API server."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()


def test_a_request_to_a_server_that_never_answers_times_out(half_open: str) -> None:
    configuration = Configuration()
    configuration.host = half_open
    api = _TimedApiClient(configuration)
    api.timeout = (1.0, 0.5)
    with pytest.raises(Exception, match=r"Read timed out\. \(read timeout=0\.5\)"):
        api.call_api("GET", f"{half_open}/api/v1/namespaces")


class FakeLeases:
    async def get(self, *_: Any) -> None:
        return None

    async def create(self, body: Any) -> Any:
        return body

    async def replace(self, body: Any, status: bool = False) -> Any:
        return body


async def test_liveness_fails_on_a_stuck_pass_and_on_a_stalled_elector(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    release_pass = asyncio.Event()

    async def reconcile(namespace: str, name: str) -> float | None:
        await release_pass.wait()
        return None

    loops = Loops(reconcile, clock=lambda: clock[0], settle=0)
    monkeypatch.setattr(handlers, "state", {"loops": loops})
    assert (await handlers.progress())["oldestPassSeconds"] == 0.0
    loops.poke("team", "web")
    await asyncio.sleep(0)
    clock[0] = handlers.STUCK_PASS + 1
    with pytest.raises(kopf.PermanentError, match="a reconcile pass has been running for 301s"):
        await handlers.progress()
    release_pass.set()
    for _ in range(100):
        await asyncio.sleep(0)
    assert (await handlers.progress())["releases"] == 1

    elector = Elector(FakeLeases(), "ns", "lease", "me", Timing(), clock=time.monotonic)
    election = asyncio.create_task(elector.run())
    monkeypatch.setattr(handlers, "state", {"loops": loops, "elector": elector, "election": election})
    for _ in range(100):
        await asyncio.sleep(0)
    assert (await handlers.progress())["leading"] is True
    election.cancel()
    elector.last_try -= 60  # the elector stopped trying a minute ago
    with pytest.raises(kopf.PermanentError, match="leader election has not tried for 60s"):
        await handlers.progress()
    await loops.stop()

"""Reads come from watch caches (sluice.kube.cache): a pass makes no API read, and the operator
serving one namespace watches only that one.

The operator here is the test's own process, serving only the test's namespace, so every count
read from its /metrics is this test's doing.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Kubectl, Operator, free_port, wait_for
from tests.e2e.manifests import policy, release
from tests.e2e.test_canary import phase

SAMPLE = re.compile(r'^(sluice_[a-z_]+)_total\{([^}]*)\} (\S+)$', re.M)


def counters(url: str) -> dict[tuple[str, str], float]:
    return {(name, labels): float(value) for name, labels, value in SAMPLE.findall(httpx.get(url, timeout=5).text)}


def reads(url: str, verb: str) -> dict[str, float]:
    """API reads by kind for one verb ("get": a read outside the caches; "list"/"watch": theirs)."""
    found: dict[str, float] = {}
    for (name, labels), value in counters(url).items():
        if name == "sluice_api_reads" and f'verb="{verb}"' in labels:
            kind = re.search(r'kind="([^"]+)"', labels)
            found[kind.group(1) if kind else "?"] = value
    return found


@pytest.fixture
def scoped(kubectl: Kubectl, operator: Operator, tmp_path: Path) -> Iterator[str]:
    """The operator for this test's namespace alone (the shared one stops meanwhile); its /metrics URL."""
    operator.stop()
    port = free_port()
    log = (tmp_path / "operator.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "sluice.cli.main", "operator", f"--namespace={kubectl.namespace}",
                                f"--metrics-address=127.0.0.1:{port}"], env=kubectl.env,
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        logged = tmp_path / "operator.log"
        wait_for("the scoped operator's caches", lambda: "watch caches filled" in logged.read_text(), 60)
        wait_for("its /metrics", lambda: httpx.get(url, timeout=2).status_code == 200, 30)
        yield url
    finally:
        process.terminate()
        process.wait(15)
        operator.start()
    assert "Traceback" not in (tmp_path / "operator.log").read_text()


def test_a_canary_walks_on_watch_caches_without_reading_the_api_server(
        kubectl: Kubectl, scoped: str, prometheus_url: str) -> None:
    """Given an operator serving one namespace, when a Release is created and then walks a canary
    with analysis to promotion, then no pass read a Release, RolloutPolicy, pod, EndpointSlice,
    HTTPRoute or Secret from the API server: only the names it was about to create (the
    Deployments and the Service, once each) were looked up, and everything else came from the
    watches opened at startup."""
    kubectl.apply(policy("fast", [{"setWeight": 50}, {"analysis": {}}, {"setWeight": 100}], prometheus_url))
    kubectl.apply(release("cached", "1.0.0"))
    wait_for("1.0.0 stable", phase(kubectl, "cached", "Succeeded"), 90)
    kubectl.apply(release("cached", "1.1.0"))
    status = wait_for("1.1.0 promoted", phase(kubectl, "cached", "Succeeded"), 120)
    assert status["stableVersion"] == "1.1.0"
    passes = sum(v for (name, labels), v in counters(scoped).items() if name == "sluice_reconcile")
    got = reads(scoped, "get")
    assert passes >= 10, f"too few passes to show anything: {passes}"
    assert not set(got) - {"Deployment", "Service"}, f"a pass read these from the API server: {got}"
    assert got.get("Deployment", 0) <= 2 and got.get("Service", 0) <= 1, \
        f"names to create are looked up once each (stable, canary Deployment; Service <name>): {got}"
    watched = reads(scoped, "watch")
    assert {"Release", "RolloutPolicy", "Deployment", "Pod", "Service", "EndpointSlice", "Secret"} <= set(watched)


def test_a_namespaced_operator_never_sees_another_namespace(
        kubectl: Kubectl, scoped: str, env: dict[str, str]) -> None:
    """Given an operator serving one namespace, when a Release is created in another one, then it
    is left alone: no status, nothing created there."""
    other = Kubectl(env, f"{kubectl.namespace}-x")
    Kubectl(env).run("create", "namespace", other.namespace or "")
    try:
        other.apply(release("elsewhere", "1.0.0", policy=None))
        kubectl.apply(release("here", "1.0.0", policy=None))
        wait_for("the Release of its namespace", phase(kubectl, "here", "Succeeded"), 60)
        assert other.get("releases.sluice.dev", "elsewhere").get("status") is None  # type: ignore[union-attr]
        assert other.get("deployment", "elsewhere") is None
    finally:
        Kubectl(env).run("delete", "namespace", other.namespace or "", "--wait=false", check=False)

"""The operator as users run it: the chart installed by real Helm, two replicas of the image
`make image` built, on the real node (make node-up), driving Releases with no host process.

One replica holds the leader Lease and acts; the other stands by. Killed (SIGKILL) or frozen
(SIGSTOP) mid-rollout, the leader is replaced and the rollout goes on from the step it was at,
no step done twice or skipped; a frozen leader that wakes up writes nothing.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ROOT, Kubectl, Operator, RealNode, wait_for
from tests.e2e.manifests import policy, release
from tests.e2e.test_canary import phase

pytestmark = pytest.mark.e2e

CHART = "sluice-ha"  # the Helm release; its ClusterRole is named after it (test_chart uses "sluice")
STEPS = [{"setWeight": 25}, {"pause": {"duration": "15s"}}, {"setWeight": 50}, {"pause": {"duration": "15s"}},
         {"setWeight": 100}]


def helm(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(["helm", *args], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    return done.stdout


class Installed:
    """The chart in its own namespace, and ways to look at its pods from the node's side."""

    def __init__(self, kubectl: Kubectl, node: RealNode) -> None:
        self.kubectl, self.node = kubectl, node

    def pods(self) -> list[dict[str, Any]]:
        found = json.loads(self.kubectl.run("get", "pods", "-l", f"app.kubernetes.io/instance={CHART}",
                                            "-o", "json").stdout)["items"]
        return [p for p in found if not p["metadata"].get("deletionTimestamp")]

    def ready_pods(self) -> list[dict[str, Any]]:
        return [p for p in self.pods() if any(c["type"] == "Ready" and c["status"] == "True"
                                              for c in p["status"].get("conditions", []))]

    def holder(self) -> str:
        """The pod that holds the leader Lease now ('' if none)."""
        lease = self.kubectl.get("lease", "sluice-leader") or {}
        identity = (lease.get("spec") or {}).get("holderIdentity") or ""
        return identity.rpartition("_")[0]

    def metrics(self, pod: dict[str, Any]) -> dict[str, float]:
        """The pod's /metrics, fetched from inside the node's network namespace (pod IPs live there)."""
        url = f"http://{pod['status']['podIP']}:8080/metrics"
        done = subprocess.run(["nsenter", f"--net={self.node.state / 'netns'}", "curl", "-sf", "--max-time", "5", url],
                              capture_output=True, text=True, timeout=15)
        assert done.returncode == 0, f"{url}: {done.stderr}"
        samples = {}
        for line in done.stdout.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                samples[key] = float(value)
        return samples

    def rss_mib(self, pod: str) -> float:
        """Resident memory of the pod's operator process, for the chart's requests (printed)."""
        status = (Path("/proc") / str(self.pid(pod)) / "status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]

    def pid(self, pod: str) -> int:
        """The host PID of the operator process in `pod` (its env names the pod: POD_ID)."""
        wanted = f"POD_ID={pod}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if wanted in environ and b"operator" in command:
                return int(entry.name)
        raise AssertionError(f"no operator process of pod {pod} on this host")


@pytest.fixture(scope="module")
def installed(env: dict[str, str], real_node: RealNode, operator: Operator) -> Iterator[Installed]:
    namespace = f"e2e-pods-{uuid.uuid4().hex[:6]}"
    kubectl = Kubectl(env, namespace)
    Kubectl(env).run("create", "namespace", namespace)
    operator.stop()  # the in-cluster operator alone drives these Releases
    values = {
        "image": {"repository": real_node.image.rpartition(":")[0], "tag": real_node.image.rpartition(":")[2],
                  "pullPolicy": "Never"},
        **real_node.placement,
        # No kube-proxy on the test node: the pods reach the API server at the node's address.
        "extraEnv": real_node.api_env,
        "analysis": {"allowedAddresses": [real_node.prometheus_url]},
        "namespaces": [namespace],
    }
    values_file = ROOT / ".local" / f"{namespace}-values.json"
    values_file.write_text(json.dumps(values))
    try:
        started = time.monotonic()
        helm(env, "install", CHART, str(ROOT / "charts/sluice"), "-n", namespace, "--skip-crds",
             "-f", str(values_file), "--wait", "--timeout", "180s")
        print(f"\nchart installed, 2 operator pods Ready on {real_node.name} in {time.monotonic() - started:.1f}s")
        yield Installed(kubectl, real_node)
    finally:
        for pod in Installed(kubectl, real_node).pods():  # what the pods said, for a failing test
            (ROOT / ".local" / "e2e-logs").mkdir(parents=True, exist_ok=True)
            (ROOT / ".local" / "e2e-logs" / f"{pod['metadata']['name']}.log").write_text(
                real_node.logs(namespace, pod["metadata"]["name"]))
        subprocess.run(["helm", "uninstall", CHART, "-n", namespace, "--wait", "--timeout", "60s"], env=env,
                       capture_output=True, timeout=90)
        Kubectl(env).run("delete", "namespace", namespace, "--wait=false", check=False)
        values_file.unlink(missing_ok=True)
        operator.start()


def steps_completed(kubectl: Kubectl, name: str) -> list[str]:
    """The Release's StepCompleted events (only its second version has steps), as 'i/n', sorted:
    a step done twice shows twice, a skipped one not at all."""
    found = [e["message"] for e in kubectl.events(name) if e["reason"] == "StepCompleted"]
    return sorted(m.group(1) for message in found if (m := re.match(r"step (\d+/\d+) ", message)))


def walk_until_step(kubectl: Kubectl, name: str, step: int) -> None:
    def there() -> Any:
        status = kubectl.status(name)
        return status.get("phase") == "Progressing" and (status.get("currentStep") or 0) >= step
    wait_for(f"{name} at step {step + 1}", there, 90, every=0.2)


def test_the_chart_runs_two_replicas_on_the_real_node_one_leading(installed: Installed) -> None:
    pods = installed.ready_pods()
    assert len(pods) == 2 and {p["spec"]["nodeName"] for p in pods} == {installed.node.name}
    for pod in pods:
        assert pod["status"]["containerStatuses"][0]["restartCount"] == 0, installed.node.logs(
            installed.kubectl.namespace or "", pod["metadata"]["name"])
    holder = wait_for("a leader", installed.holder, 30)
    leading = {p["metadata"]["name"]: installed.metrics(p)["sluice_leader"] for p in pods}
    assert leading == {name: (1.0 if name == holder else 0.0) for name in leading}
    names = [p["metadata"]["name"] for p in pods]
    print("\noperator RSS at rest: " + ", ".join(
        f"{'leader' if name == holder else 'standby'} {installed.rss_mib(name):.0f} MiB" for name in names))
    deployment: Any = installed.kubectl.get("deployment", CHART)
    assert installed.kubectl.get("poddisruptionbudget", CHART) is not None
    assert deployment["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["topologyKey"] == \
        "kubernetes.io/hostname"


def test_the_in_cluster_operator_walks_a_canary(installed: Installed) -> None:
    kubectl = installed.kubectl
    kubectl.apply(policy("fast", [{"setWeight": 50}, {"analysis": {}}, {"setWeight": 100}],
                         installed.node.prometheus_url))
    kubectl.apply(release("web", "1.0.0"))
    wait_for("1.0.0 stable", phase(kubectl, "web", "Succeeded"), 120)
    kubectl.apply(release("web", "1.1.0"))
    status = wait_for("1.1.0 promoted by the in-cluster operator", phase(kubectl, "web", "Succeeded"), 180)
    assert status["stableVersion"] == "1.1.0"
    assert steps_completed(kubectl, "web") == ["1/3", "2/3", "3/3"]
    leader = next(p for p in installed.ready_pods() if p["metadata"]["name"] == installed.holder())
    assert installed.metrics(leader)['sluice_measurements_total{verdict="Successful"}'] >= 2
    print(f"\nleader RSS after a canary: {installed.rss_mib(leader['metadata']['name']):.0f} MiB")


def test_a_killed_leader_is_replaced_and_the_rollout_goes_on_from_its_step(installed: Installed) -> None:
    kubectl = installed.kubectl
    kubectl.apply(policy("slow", STEPS, installed.node.prometheus_url))
    kubectl.apply(release("killed", "1.0.0", policy="slow"))
    wait_for("1.0.0 stable", phase(kubectl, "killed", "Succeeded"), 120)
    kubectl.apply(release("killed", "1.1.0", policy="slow"))
    walk_until_step(kubectl, "killed", 1)  # in the first pause
    leader = installed.holder()

    os.kill(installed.pid(leader), signal.SIGKILL)
    killed = time.monotonic()
    new = wait_for("the standby to take the Lease", lambda: (h := installed.holder()) != leader and h, 60, every=0.1)
    takeover = time.monotonic() - killed
    print(f"\nleader {leader} killed (SIGKILL): {new} took over in {takeover:.1f}s")

    status = wait_for("1.1.0 promoted after the failover", phase(kubectl, "killed", "Succeeded"), 180)
    assert status["stableVersion"] == "1.1.0"
    assert steps_completed(kubectl, "killed") == ["1/5", "2/5", "3/5", "4/5", "5/5"]
    assert [(h["version"], h["outcome"]) for h in status["history"]] == [("1.0.0", "Succeeded"),
                                                                         ("1.1.0", "Succeeded")]
    # Lease duration 8 s + retry 2 s is the bound by design; Argo Rollouts' default is 15 s.
    assert takeover < 15, f"takeover took {takeover:.1f}s"


def test_a_frozen_leader_is_replaced_and_writes_nothing_when_it_wakes(installed: Installed) -> None:
    kubectl = installed.kubectl
    kubectl.apply(policy("slow", STEPS, installed.node.prometheus_url))
    kubectl.apply(release("frozen", "1.0.0", policy="slow"))
    wait_for("1.0.0 stable", phase(kubectl, "frozen", "Succeeded"), 120)
    wait_for("two Ready replicas", lambda: len(installed.ready_pods()) == 2, 120)
    kubectl.apply(release("frozen", "1.1.0", policy="slow"))
    walk_until_step(kubectl, "frozen", 1)
    leader = installed.holder()
    pod = next(p for p in installed.pods() if p["metadata"]["name"] == leader)
    pid = installed.pid(leader)

    os.kill(pid, signal.SIGSTOP)  # a network partition, as the leader sees it: it cannot act at all
    frozen_at = time.time()
    try:
        new = wait_for("the standby to take the Lease", lambda: (h := installed.holder()) != leader and h, 60,
                       every=0.1)
        print(f"\nleader {leader} frozen (SIGSTOP): {new} took over in {time.time() - frozen_at:.1f}s")
        walk_until_step(kubectl, "frozen", 3)  # the new leader moves the rollout on meanwhile
    finally:
        os.kill(pid, signal.SIGCONT)
    woke_at = time.time()

    def stood_down() -> dict[str, float] | None:
        seen = installed.metrics(pod)
        return seen if seen["sluice_leader"] == 0.0 and time.time() - woke_at > 3 else None
    seen = wait_for(f"{leader} to stand by after waking", stood_down, 30)
    assert seen["sluice_api_last_write_timestamp_seconds"] < frozen_at, \
        "the leader that woke after losing its lease wrote to the API server"
    status = wait_for("1.1.0 promoted by the new leader", phase(kubectl, "frozen", "Succeeded"), 180)
    assert status["stableVersion"] == "1.1.0"
    assert steps_completed(kubectl, "frozen") == ["1/5", "2/5", "3/5", "4/5", "5/5"]

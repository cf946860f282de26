"""The real node (make node-up): pods there really run the image `make image` built, reach the
API server and Prometheus at the node's address, and the host keeps its sysctls and firewall."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Kubectl, RealNode, wait_for

pytestmark = pytest.mark.e2e


def run_to_completion(kubectl: Kubectl, node: RealNode, name: str, program: str,
                      env: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """Run `python -c program` in a pod on the real node; return the pod once it has finished."""
    # The pod needs the namespace's ServiceAccount, which a controller makes just after the namespace.
    wait_for("the default ServiceAccount", lambda: kubectl.get("serviceaccount", "default"), 30)
    kubectl.apply({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {**node.placement, "restartPolicy": "Never",
                 "containers": [{"name": "main", "image": node.image, "imagePullPolicy": "Never",
                                 "command": ["python", "-c", program], "env": env or []}]},
    })

    def finished() -> dict[str, Any] | None:
        pod = kubectl.get("pod", name) or {}
        return pod if pod.get("status", {}).get("phase") in ("Succeeded", "Failed") else None
    return wait_for(f"pod {name} to finish on {node.name}", finished, 90)  # type: ignore[no-any-return]


def test_a_pod_really_runs_on_the_real_node_and_its_output_is_in_the_node_logs(
        kubectl: Kubectl, real_node: RealNode) -> None:
    program = "import getpass, os; print('hello from', getpass.getuser(), os.getuid(), os.getgid())"

    pod = run_to_completion(kubectl, real_node, "hello", program)

    assert pod["spec"]["nodeName"] == real_node.name
    assert pod["status"]["phase"] == "Succeeded", real_node.logs(kubectl.namespace or "", "hello")
    assert pod["status"]["hostIP"] == real_node.ip
    assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network(f"{real_node.ip}/24", strict=False)
    assert "hello from sluice 65532 65532" in real_node.logs(kubectl.namespace or "", "hello")


def test_a_pod_on_the_real_node_reaches_the_api_server_and_prometheus_at_the_node_address(
        kubectl: Kubectl, real_node: RealNode) -> None:
    # The API server's certificate must name the node's address (the client verifies it), and
    # the pod's ServiceAccount token must be accepted.
    program = f"""
import json, urllib.request
from kubernetes import client, config
config.load_incluster_config()
print("api", client.VersionApi().get_code().git_version)
answer = json.load(urllib.request.urlopen("{real_node.prometheus_url}/api/v1/query?query=up", timeout=10))
print("prometheus", answer["status"])
"""
    server = json.loads(kubectl.run("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]

    pod = run_to_completion(kubectl, real_node, "reach", program, env=real_node.api_env)

    logs = real_node.logs(kubectl.namespace or "", "reach")
    assert pod["status"]["phase"] == "Succeeded", logs
    assert f"api {server}" in logs
    assert "prometheus success" in logs


def test_the_host_keeps_its_sysctls_and_has_no_kubernetes_or_podman_firewall_chains(real_node: RealNode) -> None:
    # The kubelet would set these six; it is given files with its wanted values instead.
    before = dict(line.split() for line in (real_node.state / "host-sysctls").read_text().splitlines())
    now = {name: Path("/proc/sys", name.replace(".", "/")).read_text().strip() for name in before}
    assert {"vm.overcommit_memory", "kernel.panic", "kernel.panic_on_oops"} <= before.keys()
    assert now == before

    rulesets = [[tool] for tool in ("iptables-save", "ip6tables-save") if shutil.which(tool)]
    if shutil.which("nft"):
        rulesets.append(["nft", "list", "ruleset"])
    for command in rulesets:
        listed = subprocess.run(command, capture_output=True, text=True)
        assert listed.returncode == 0, f"{' '.join(command)}: {listed.stderr}"
        chains = [line for line in listed.stdout.splitlines() if "KUBE-" in line or "NETAVARK" in line]
        assert chains == [], f"{' '.join(command)} lists {chains[:5]}"

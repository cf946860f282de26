"""The Helm chart, installed by real Helm; its RBAC is least privilege and enough: the operator
runs with the chart's ServiceAccount token through a whole canary."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.conftest import ROOT, Kubectl, Operator, free_port, wait_for
from tests.e2e.manifests import policy, release
from tests.e2e.test_canary import phase

pytestmark = pytest.mark.e2e


def helm(kubectl: Kubectl, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["helm", *args], env=kubectl.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def can(kubectl: Kubectl, verb: str, resource: str) -> bool:
    who = f"system:serviceaccount:{kubectl.namespace}:sluice"
    kind, _, sub = resource.partition("/")
    extra = [f"--subresource={sub}"] if sub else []
    done = kubectl.run("auth", "can-i", verb, kind, *extra, "--as", who, "--all-namespaces", check=False)
    return done.stdout.strip() == "yes"


PROMOTED = re.compile(r'^sluice_events_total\{reason="Promoted",type="Normal"\} (\S+)$', re.M)


def promoted_counted(metrics_url: str) -> float:
    """The operator's Promoted counter: global, so a test reads it before and after, never as is."""
    found = PROMOTED.search(httpx.get(metrics_url, timeout=5).text)
    return float(found.group(1)) if found else 0.0


def service_account_kubeconfig(kubectl: Kubectl, path: Path) -> str:
    """A kubeconfig that authenticates as the chart's ServiceAccount, with its own token."""
    admin = json.loads(Kubectl(kubectl.env).run("config", "view", "--raw", "--minify", "-o", "json").stdout)
    cluster = admin["clusters"][0]["cluster"]
    token = kubectl.run("create", "token", "sluice", "--duration=1h").stdout.strip()
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sluice",
        "clusters": [{"name": "local", "cluster": cluster}],
        "users": [{"name": "sluice", "user": {"token": token}}],
        "contexts": [{"name": "sluice", "context": {"cluster": "local", "user": "sluice"}}],
    }))
    return str(path)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_helm_installs_a_least_privilege_operator_that_can_do_its_job(
        kubectl: Kubectl, operator: Operator, prometheus_url: str, tmp_path: Path) -> None:
    helm(kubectl, "lint", str(ROOT / "charts/sluice"))
    helm(kubectl, "install", "sluice", str(ROOT / "charts/sluice"), "-n", kubectl.namespace or "",
         "--skip-crds", "--wait", "--timeout", "60s")
    try:
        deployment: Any = kubectl.get("deployment", "sluice")
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        container = pod["containers"][0]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert "--metrics-address=0.0.0.0:8080" in container["args"]
        assert kubectl.get("service", "sluice-metrics")["metadata"]["annotations"]["prometheus.io/scrape"] == "true"  # type: ignore[index]

        assert can(kubectl, "patch", "releases.sluice.dev/status")
        assert can(kubectl, "watch", "releases.sluice.dev")
        assert not can(kubectl, "update", "releases.sluice.dev"), "Sluice must never write a Release's spec"
        assert not can(kubectl, "patch", "rolloutpolicies.sluice.dev")
        # Secrets: watched with the label selector sluice.dev/analysis-credential=true (RBAC cannot
        # say "only labelled ones"; the operator asks for no other), never read one by one.
        assert can(kubectl, "watch", "secrets") and not can(kubectl, "get", "secrets")
        assert not can(kubectl, "delete", "deployments.apps") and not can(kubectl, "delete", "services")

        # The operator with only the chart's rights runs a canary from first version to promotion.
        env = {**kubectl.env, "KUBECONFIG": service_account_kubeconfig(kubectl, tmp_path / "sa.kubeconfig")}
        operator.stop()
        log = (tmp_path / "operator.log").open("wb")
        metrics_port, health_port = free_port(), free_port()
        scoped = subprocess.Popen([sys.executable, "-m", "sluice.cli.main", "operator",
                                   f"--metrics-address=127.0.0.1:{metrics_port}",
                                   f"--health-address=127.0.0.1:{health_port}"], env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
            wait_for("the scoped operator's /metrics", lambda: _answers(metrics_url), 30)
            counted_before = promoted_counted(metrics_url)
            kubectl.apply(policy("fast", [{"setWeight": 50}, {"analysis": {}}, {"setWeight": 100}], prometheus_url))
            kubectl.apply(release("rbac", "1.0.0"))
            wait_for("1.0.0 stable under the chart's RBAC", phase(kubectl, "rbac", "Succeeded"), 90)
            kubectl.apply(release("rbac", "1.1.0"))
            status = wait_for("1.1.0 promoted under the chart's RBAC", phase(kubectl, "rbac", "Succeeded"), 120)
            assert status["stableVersion"] == "1.1.0"
            # Only this namespace's Releases count: others may be mid-deletion from earlier tests.
            mine = [line for line in (tmp_path / "operator.log").read_text().splitlines()
                    if kubectl.namespace and kubectl.namespace in line]
            assert not [line for line in mine if "orbidden" in line or "refused" in line], mine[-20:]
            # What this test did: its Release's two promotions, each posted once as an Event...
            ours = ["1.0.0 promoted to stable", "1.1.0 promoted to stable"]
            wait_for(f"Release rbac's Promoted events: {ours}", lambda: sorted(
                e["message"] for e in kubectl.events("rbac") if e["reason"] == "Promoted") == ours, 15)
            # ...and counted: the counter is global (other namespaces' Releases promote too), so only
            # what it gained while this test ran is ours, at least these two.
            wait_for("the two promotions counted", lambda: promoted_counted(metrics_url) - counted_before >= 2, 15)
            exposed = httpx.get(metrics_url, timeout=5).text
            assert 'sluice_measurements_total{verdict="Successful"}' in exposed
            assert 'sluice_reconcile_total{result="ok"}' in exposed
            assert httpx.get(f"http://127.0.0.1:{health_port}/healthz", timeout=5).status_code == 200
        finally:
            scoped.terminate()
            scoped.wait(15)
            operator.start()
    finally:
        helm(kubectl, "uninstall", "sluice", "-n", kubectl.namespace or "")

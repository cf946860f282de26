"""The sluice CLI run as a user runs it, against the real cluster: output and exit codes."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import Kubectl, Operator, wait_for
from tests.e2e.manifests import policy, release
from tests.e2e.test_canary import deploy_first, phase, sluice

pytestmark = pytest.mark.e2e


def test_get_list_and_report_of_a_rolled_back_release(
        kubectl: Kubectl, operator: Operator, prometheus_url: str) -> None:
    kubectl.apply(policy("fast", [{"setWeight": 25}, {"analysis": {}}, {"setWeight": 100}], prometheus_url))
    deploy_first(kubectl, "checkout")
    kubectl.apply(release("checkout", "1.2.0", error_rate=0.4))
    wait_for("the rollback", phase(kubectl, "checkout", "RolledBack"), 120)

    shown = sluice(kubectl, "get", "rel", "checkout")
    assert shown.returncode == 0, shown.stderr
    assert "Version:   1.0.0 -> 1.2.0" in shown.stdout and "Phase:     RolledBack" in shown.stdout
    assert "x 1. setWeight 25" in shown.stdout and "> 2. analysis" in shown.stdout
    assert "error-rate:" in shown.stdout and "Failed" in shown.stdout

    as_json = json.loads(sluice(kubectl, "get", "rel", "checkout", "-o", "json").stdout)
    assert as_json["status"]["phase"] == "RolledBack"

    listed = sluice(kubectl, "list")
    assert listed.returncode == 0
    row = next(line for line in listed.stdout.splitlines() if line.startswith("checkout"))
    assert "1.0.0 -> 1.2.0" in row and "RolledBack" in row

    everywhere = sluice(kubectl, "list", "-A")
    rows = everywhere.stdout.splitlines()
    assert any(line.startswith(kubectl.namespace or "") and "checkout" in line for line in rows)

    text = sluice(kubectl, "report", "rel", "checkout").stdout
    assert text.startswith(f"# Deployment report: {kubectl.namespace}/checkout 1.2.0")
    assert "| Outcome | **↩️ RolledBack**: metric error-rate failed" in text
    assert f"| Environment | namespace `{kubectl.namespace}`, cluster `" in text
    assert "RolloutStarted" in text and "⚠️ RolledBack" in text
    assert "| error-rate |" in text and "| Failed |" in text
    assert "-    sim.sluice.dev/error-rate: '0.0'" in text and "+    sim.sluice.dev/error-rate: '0.4'" in text
    assert f"sluice retry checkout -n {kubectl.namespace}" in text
    assert "- annotation sim.sluice.dev/error-rate: 0.0 -> 0.4" in text
    assert "| 1 | setWeight 25 | 25% |" in text and "✖ failed |" in text

    as_json = json.loads(sluice(kubectl, "report", "rel", "checkout", "-o", "json").stdout)
    assert as_json["schema"] == "sluice.dev/report/v1"
    assert as_json["summary"]["outcome"] == "RolledBack" and as_json["summary"]["previousVersion"] == "1.0.0"
    assert as_json["changes"]["source"] == "history"
    assert "annotation sim.sluice.dev/error-rate: 0.0 -> 0.4" in as_json["changes"]["items"]
    assert [c["run"] for c in as_json["rollback"]["commands"]][-1] == f"sluice retry checkout -n {kubectl.namespace}"


def test_errors_are_one_clear_line(kubectl: Kubectl) -> None:
    missing = sluice(kubectl, "get", "rel", "nope")
    assert missing.returncode == 1
    assert missing.stderr.strip() == f'error: Release "nope" not found in namespace {kubectl.namespace}'
    assert "Traceback" not in missing.stderr
    bad_context = sluice(kubectl, "get", "rel", "nope", "--context", "no-such-context")
    assert bad_context.returncode == 1 and bad_context.stderr.startswith("error: cannot load kubeconfig")
    assert len(bad_context.stderr.strip().splitlines()) == 1

"""dev -> staging -> prod on the real cluster: a version committed to prod too early waits, with no
traffic moved, until staging runs it; `sluice pipeline` shows where it is and what holds it.

Each environment is a namespace of its own with the same-named Release and a policy whose
`requires` names the environment before it, as a GitOps repository's envs/ folders would apply them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Kubectl, Operator, wait_for
from tests.e2e.manifests import policy, release
from tests.e2e.test_canary import phase

pytestmark = pytest.mark.e2e

STAGES = ("dev", "staging", "prod")
STEPS = [{"setWeight": 50}, {"pause": {"duration": "2s"}}, {"setWeight": 100}]


@pytest.fixture
def environments(env: dict[str, str]) -> Iterator[dict[str, Kubectl]]:
    """Three fresh namespaces, dev, staging and prod, deleted after the test."""
    suffix = uuid.uuid4().hex[:5]
    made: dict[str, Kubectl] = {}
    try:
        for stage in STAGES:
            namespace = f"e2e-pipeline-{stage}-{suffix}"
            Kubectl(env).run("create", "namespace", namespace)
            made[stage] = Kubectl(env, namespace)
        yield made
    finally:
        for kubectl in made.values():
            Kubectl(env).run("delete", "namespace", kubectl.namespace or "", "--wait=false", check=False)


def checkout(stage: str, version: str) -> dict[str, Any]:
    """The Release as envs/<stage>/release.yaml names it: the same image per version everywhere,
    with settings of its own environment (so every environment's template hash differs), and
    config it reads from a versioned ConfigMap (so Sluice runs a content-named copy of it)."""
    body = release("checkout", version, policy="gated", replicas=2)
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": "ENVIRONMENT", "value": stage}]
    container["envFrom"] = [{"configMapRef": {"name": "checkout-config"}}]
    return body


def config(stage: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "checkout-config", "labels": {"sluice.dev/versioned": "true"}},
            "data": {"DATABASE_URL": f"postgres://db.{stage}:5432/shop"}}


def sluice(kubectl: Kubectl, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sluice.cli.main", *args, "-n", kubectl.namespace or ""],
                          env=kubectl.env, capture_output=True, text=True, timeout=60)


def pipeline(prod: Kubectl) -> dict[str, dict[str, Any]]:
    """`sluice pipeline checkout -n prod -o json`, by stage."""
    shown = sluice(prod, "pipeline", "checkout", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    found = json.loads(shown.stdout)
    assert found["version"] == "2.0.0" and found["namespace"] == prod.namespace
    namespaces = [e["namespace"] for e in found["environments"]]
    stages = {namespace.split("-")[2]: entry for namespace, entry in zip(namespaces, found["environments"],
                                                                          strict=True)}
    assert list(stages) == list(STAGES), namespaces
    return stages


def reasons(kubectl: Kubectl) -> list[str]:
    return [e["reason"] for e in kubectl.events("checkout")]


def not_running(version: str, where: Kubectl, runs: str) -> str:
    return (f"{version} is not running in namespace {where.namespace} yet: Deployment checkout in namespace "
            f"{where.namespace} runs {runs}, not {version} (requires)")


def test_a_version_travels_dev_staging_prod_and_waits_where_committed_too_early(
        environments: dict[str, Kubectl], operator: Operator, prometheus_url: str) -> None:
    dev, staging, prod = (environments[stage] for stage in STAGES)
    before = {"dev": None, "staging": dev, "prod": staging}
    for stage, kubectl in environments.items():
        upstream = before[stage]
        requires = [{"namespace": upstream.namespace}] if upstream else []
        kubectl.apply([policy("gated", STEPS, prometheus_url, requires=requires), config(stage)])
        kubectl.apply(checkout(stage, "1.0.0"))  # a first version has nothing to wait for
    for kubectl in environments.values():
        wait_for(f"1.0.0 to be stable in {kubectl.namespace}", phase(kubectl, "checkout", "Succeeded"), 90)

    # Given 2.0.0 committed to prod first: prod waits, Pending, and nothing moves.
    prod.apply(checkout("prod", "2.0.0"))
    gate = not_running("2.0.0", staging, "1.0.0")
    held = wait_for("prod to wait for staging", phase(prod, "checkout", "Pending"), 60)
    assert held["message"] == f"waiting to roll out 2.0.0: {gate}"
    assert held["stableVersion"] == "1.0.0" and held["canaryWeight"] == 0
    reconciling = next(c for c in held["conditions"] if c["type"] == "Reconciling")
    assert reconciling["status"] == "True" and reconciling["reason"] == "RequirementNotMet"
    time.sleep(6)  # more passes than one (a gated Release is looked at again every 15 s, and on every change)
    assert prod.status("checkout")["phase"] == "Pending"
    assert (prod.get("deployment", "checkout-canary") or {}).get("spec", {}).get("replicas", 0) == 0
    assert prod.get("deployment", "checkout")["metadata"]["labels"]["app.kubernetes.io/version"] == "1.0.0"  # type: ignore[index]
    assert "RolloutStarted" not in reasons(prod), "no rollout of 2.0.0 began in prod"
    assert reasons(prod).count("RequirementNotMet") == 1, "said once, not on every pass"
    shown = pipeline(prod)
    assert [shown[s]["ran"] for s in STAGES] == [False, False, False]
    assert shown["prod"]["gate"] == gate, "the pipeline says what the operator says"
    assert (shown["prod"]["phase"], shown["prod"]["desiredVersion"]) == ("Pending", "2.0.0")
    assert shown["staging"]["gate"] == not_running("2.0.0", dev, "1.0.0")
    assert shown["staging"]["whyNot"] == f"Deployment checkout in namespace {staging.namespace} runs 1.0.0, not 2.0.0"
    assert shown["dev"]["gate"] is None and shown["dev"]["requires"] == []
    plain = sluice(prod, "pipeline", "checkout").stdout
    assert plain.startswith(f"Pipeline checkout (from {prod.namespace}): version 2.0.0\n")
    assert f"gate: {gate}" in plain

    # When dev runs it, it succeeds there; prod still waits for staging.
    dev.apply(checkout("dev", "2.0.0"))
    done = wait_for("2.0.0 in dev", phase(dev, "checkout", "Succeeded"), 90)
    assert done["stableVersion"] == "2.0.0"
    assert {"RolloutStarted", "Promoted"} <= set(reasons(dev))
    shown = pipeline(prod)
    assert [shown[s]["ran"] for s in STAGES] == [True, False, False]
    assert shown["staging"]["gate"] is None, "the gate into staging is open now"
    assert shown["prod"]["gate"] == gate and prod.status("checkout")["phase"] == "Pending"

    # When staging runs it too, prod's gate opens by itself: no commit, no command.
    staging.apply(checkout("staging", "2.0.0"))
    done = wait_for("2.0.0 in staging", phase(staging, "checkout", "Succeeded"), 90)
    assert done["stableVersion"] == "2.0.0" and "RolloutStarted" in reasons(staging)
    shipped = wait_for("2.0.0 in prod", phase(prod, "checkout", "Succeeded"), 120)
    assert shipped["stableVersion"] == "2.0.0"
    events = prod.events("checkout")
    started = next(e for e in events if e["reason"] == "RolloutStarted")
    assert started["message"].startswith("rolling out 2.0.0 by canary") and "stable is 1.0.0" in started["message"]
    promoted = next(e for e in staging.events("checkout") if e["reason"] == "Promoted")
    assert (started.get("firstTimestamp") or "") >= (promoted.get("firstTimestamp") or ""), \
        "prod started only once staging had promoted 2.0.0"
    assert "2.0.0 promoted to stable" in [e["message"] for e in prod.events("checkout")]
    history = prod.status("checkout")["history"]
    assert history[-1]["version"] == "2.0.0" and history[-1]["outcome"] == "Succeeded"
    shown = pipeline(prod)
    assert all(shown[s]["ran"] and shown[s]["gate"] is None for s in STAGES), shown
    assert {shown[s]["stableVersion"] for s in STAGES} == {"2.0.0"}
    hashes = {(kubectl.get("deployment", "checkout") or {})["metadata"]["annotations"]["sluice.dev/template-hash"]
              for kubectl in environments.values()}
    assert len(hashes) == 3, "the same artifact, three templates of their own: the gate never asked for equal hashes"
    read = (prod.get("deployment", "checkout") or {})["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    assert read[0]["configMapRef"]["name"].startswith("checkout-config-"), "prod runs its versioned copy"

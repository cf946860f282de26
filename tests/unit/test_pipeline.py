"""cli.pipeline: the chain a Release's `requires` names, and one version's way through it, on
API objects as Sluice writes them (no cluster); the command itself on a fake client."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from sluice.api.models import ReleaseSpec
from sluice.cli import main
from sluice.cli import pipeline as chain
from sluice.cli.pipeline import Environment
from sluice.kube import objects

Body = dict[str, Any]


def spec(version: str, env: str) -> Body:
    """Every environment runs the same image per version, with its own settings."""
    return {"version": version, "replicas": 2, "policyRef": {"name": "gated"}, "template": {"spec": {"containers": [
        {"name": "app", "image": f"app:{version}", "env": [{"name": "ENV", "value": env}]}]}}}


def environment(namespace: str, runs: str | None, wants: str, phase: str, requires: tuple[str, ...] = (),
                candidate: str | None = None) -> Environment:
    """Release checkout in `namespace` asking for `wants`, its stable Deployment running `runs`."""
    status: Body = {"phase": phase, "message": f"{namespace} says hello"}
    if runs:
        status.update(stableVersion=runs, stableSpec={"version": runs, "template": spec(runs, namespace)["template"]})
    if candidate:
        status["candidateVersion"] = candidate
    release = {"apiVersion": "sluice.dev/v1alpha1", "kind": "Release",
               "metadata": {"name": "checkout", "namespace": namespace, "uid": f"uid-{namespace}"},
               "spec": spec(wants, namespace), "status": status}
    deployment = None
    if runs:
        parsed = ReleaseSpec.model_validate(spec(runs, namespace))
        digest = objects.template_hash(parsed)
        deployment = objects.deployment(release, "stable", 2, objects.pod_template("checkout", parsed, "stable",
                                                                                   digest), digest)
        deployment["metadata"]["generation"] = 1
        deployment["status"] = {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}
    return Environment(namespace, release, deployment, requires)


# prod asks for 2.0.0 too early: dev runs it, staging does not yet (Git still names 1.0.0 there)
EARLY = {
    "prod": environment("prod", "1.0.0", "2.0.0", "Pending", ("staging",), candidate="2.0.0"),
    "staging": environment("staging", "1.0.0", "1.0.0", "Succeeded", ("dev",)),
    "dev": environment("dev", "2.0.0", "2.0.0", "Succeeded"),
}
STAGING_GATE = ("2.0.0 is not running in namespace staging yet: Deployment checkout in namespace staging runs 1.0.0, "
                "not 2.0.0 (requires)")


ORDERS: dict[str, tuple[dict[str, tuple[str, ...]], list[str]]] = {
    "a chain": ({"prod": ("staging",), "staging": ("dev",)}, ["dev", "staging", "prod"]),
    "one environment": ({}, ["prod"]),
    "two required at once": ({"prod": ("staging", "qa"), "staging": ("dev",), "qa": ("dev",)},
                             ["dev", "staging", "qa", "prod"]),
    "a cycle is shown once": ({"prod": ("staging",), "staging": ("prod",)}, ["staging", "prod"]),
}


@pytest.mark.parametrize("requires_of, expected", ORDERS.values(), ids=ORDERS.keys())
def test_order_is_upstream_first(requires_of: dict[str, tuple[str, ...]], expected: list[str]) -> None:
    assert chain.order("prod", requires_of) == expected


def test_a_version_committed_to_prod_too_early() -> None:
    found = chain.rows("checkout", EARLY, "prod", "2.0.0")
    assert [(r.namespace, r.ran, r.gate) for r in found] == [
        ("dev", True, None),
        ("staging", False, None),  # open: dev runs it; Git has not named it there yet
        ("prod", False, STAGING_GATE),  # the very message the operator writes into prod's status
    ]
    assert found[1].why_not == "Deployment checkout in namespace staging runs 1.0.0, not 2.0.0"
    assert (found[2].stable_version, found[2].candidate_version, found[2].phase) == ("1.0.0", "2.0.0", "Pending")


def test_the_gate_of_an_environment_not_asking_for_the_version_says_what_it_will_say() -> None:
    dev_behind = {**EARLY, "dev": environment("dev", "1.0.0", "1.0.0", "Succeeded")}
    staging = chain.rows("checkout", dev_behind, "prod", "2.0.0")[1]
    assert staging.gate == ("2.0.0 is not running in namespace dev yet: Deployment checkout in namespace dev runs "
                            "1.0.0, not 2.0.0 (requires)")


def test_every_environment_ran_it() -> None:
    done = {ns: environment(ns, "2.0.0", "2.0.0", "Succeeded", env.requires) for ns, env in EARLY.items()}
    found = chain.rows("checkout", done, "prod", "2.0.0")
    assert all(r.ran and r.gate is None for r in found)
    assert chain.rows("checkout", done, "prod", "1.0.0")[0].why_not == (
        "Deployment checkout in namespace dev runs 2.0.0, not 1.0.0")


def test_an_environment_without_the_release_and_a_missing_policy() -> None:
    broken = {"prod": Environment("prod", EARLY["prod"].release, EARLY["prod"].deployment, (),
                                  "RolloutPolicy gated not found in namespace prod: no rollout starts")}
    assert chain.rows("checkout", broken, "prod", "2.0.0")[0].gate == broken["prod"].problem
    missing = {**EARLY, "staging": Environment("staging")}
    found = chain.rows("checkout", missing, "prod", "2.0.0")
    assert [r.namespace for r in found] == ["staging", "prod"]
    assert not found[0].release and found[0].why_not == "there is no Release checkout in namespace staging"
    assert found[1].gate == ("2.0.0 is not running in namespace staging yet: there is no Release checkout in "
                             "namespace staging (requires)")


def test_plain_output() -> None:
    text = chain.plain("checkout", "prod", "2.0.0", chain.rows("checkout", EARLY, "prod", "2.0.0"))
    assert text == "\n".join([
        "Pipeline checkout (from prod): version 2.0.0",
        "  dev      2.0.0           Succeeded",
        "           2.0.0 runs here",
        "           gate: none (requires nothing)",
        "  staging  1.0.0           Succeeded",
        "           not yet: Deployment checkout in namespace staging runs 1.0.0, not 2.0.0",
        "           gate: open: dev runs 2.0.0",
        "  prod     1.0.0 -> 2.0.0  Pending",
        "           not yet: Deployment checkout in namespace prod runs 1.0.0, not 2.0.0",
        f"           gate: {STAGING_GATE}",
    ])


def test_rich_output() -> None:
    console = Console(width=250, record=True, color_system=None)
    console.print(chain.rich_view("checkout", "prod", "2.0.0", chain.rows("checkout", EARLY, "prod", "2.0.0")))
    text = console.export_text()
    assert "checkout: version 2.0.0 (from prod)" in text
    lines = [line for line in text.splitlines() if line.startswith("│ dev") or line.startswith("│ prod")]
    assert "✔ runs here" in lines[0] and "none (requires nothing)" in lines[0]
    assert "✘ Deployment checkout in namespace prod runs 1.0.0" in lines[1] and "Pending" in lines[1]


def test_json_output() -> None:
    found = chain.as_json("checkout", "prod", "2.0.0", chain.rows("checkout", EARLY, "prod", "2.0.0"))
    assert json.loads(json.dumps(found)) == found
    assert found["version"] == "2.0.0" and [e["namespace"] for e in found["environments"]] == ["dev", "staging", "prod"]
    assert found["environments"][2] == {
        "namespace": "prod", "release": True, "desiredVersion": "2.0.0", "stableVersion": "1.0.0",
        "candidateVersion": "2.0.0", "phase": "Pending", "message": "prod says hello", "requires": ["staging"],
        "ran": False, "whyNot": "Deployment checkout in namespace prod runs 1.0.0, not 2.0.0", "gate": STAGING_GATE}


def cluster(environments: dict[str, Environment]) -> dict[tuple[str, str, str], Body]:
    """What a fake client answers: each Release, Deployment and policy by (kind, name, namespace)."""
    objects_: dict[tuple[str, str, str], Body] = {}
    for ns, env in environments.items():
        if env.release:
            objects_["Release", "checkout", ns] = env.release
            objects_["RolloutPolicy", "gated", ns] = {"spec": {
                "strategy": {"canary": {"steps": [{"setWeight": 50}]}},
                "requires": [{"namespace": n} for n in env.requires]}}
        if env.deployment:
            objects_["Deployment", "checkout", ns] = env.deployment
    return objects_


def test_read_follows_the_requires_chain() -> None:
    held = cluster(EARLY)
    asked: list[str] = []

    def get(api_version: str, kind: str, name: str, namespace: str) -> Body | None:
        asked.append(f"{kind}/{namespace}")
        return held.get((kind, name, namespace))
    found = chain.read(get, "checkout", "prod")
    assert {ns: env.requires for ns, env in found.items()} == {"prod": ("staging",), "staging": ("dev",), "dev": ()}
    assert found["dev"].deployment == EARLY["dev"].deployment
    assert chain.read(get, "checkout", "qa") == {"qa": Environment("qa")}


class FakeKube:
    def __init__(self, held: dict[tuple[str, str, str], Body]) -> None:
        self.held = held

    def get_sync(self, api_version: str, kind: str, name: str, namespace: str) -> Body | None:
        return self.held.get((kind, name, namespace))


def test_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(main, "_connect", lambda kubeconfig, context, namespace: (FakeKube(cluster(EARLY)),
                                                                                  namespace or "default"))
    runner = CliRunner()
    shown = runner.invoke(main.app, ["pipeline", "checkout", "-n", "prod"])
    assert shown.exit_code == 0, shown.output
    assert shown.output.startswith("Pipeline checkout (from prod): version 2.0.0\n")
    asked = json.loads(runner.invoke(main.app, ["pipeline", "checkout", "-n", "prod", "-o", "json",
                                                "--version", "1.0.0"]).output)
    assert asked["version"] == "1.0.0" and [e["ran"] for e in asked["environments"]] == [False, True, True]
    missing = runner.invoke(main.app, ["pipeline", "checkout", "-n", "qa"])
    assert missing.exit_code == 1 and 'Release "checkout" not found in namespace qa' in missing.output
    wrong = runner.invoke(main.app, ["pipeline", "checkout", "-n", "prod", "-o", "yaml"])
    assert wrong.exit_code == 1

"""Config that rolls back with the code: given a ConfigMap and a Secret labelled
sluice.dev/versioned that a Release's pods read, when the config changes together with a bad
version, then the rollback puts the old pods back with the old config; and a change of the config
alone is a rollout of its own, judged like code."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Kubectl, Operator, report_of, wait_for
from tests.e2e.manifests import policy, release
from tests.e2e.test_canary import phase

pytestmark = pytest.mark.e2e

STEPS = [{"setWeight": 25}, {"analysis": {}}, {"setWeight": 100}]


def config(greeting: str, token: str) -> list[dict[str, Any]]:
    labels = {"sluice.dev/versioned": "true"}
    return [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shop-config", "labels": labels},
             "data": {"GREETING": greeting}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "shop-token", "labels": labels},
             "stringData": {"TOKEN": token}}]


def reading_config(version: str, error_rate: float = 0.0) -> dict[str, Any]:
    body = release("shop", version, error_rate=error_rate)
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["envFrom"] = [{"configMapRef": {"name": "shop-config"}}]
    container["env"] = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "shop-token", "key": "TOKEN"}}}]
    return body


def ship_first_version(kubectl: Kubectl, prometheus_url: str, greeting: str) -> None:
    kubectl.apply([policy("fast", STEPS, prometheus_url), *config(greeting, "token-1")])
    kubectl.apply(reading_config("1.0.0"))
    wait_for("shop 1.0.0 to be stable", phase(kubectl, "shop", "Succeeded"), 90)


def used_by(kubectl: Kubectl, deployment: str) -> tuple[str, str]:
    """(ConfigMap, Secret) the Deployment's pod template reads."""
    container = kubectl.get("deployment", deployment)["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
    return (container["envFrom"][0]["configMapRef"]["name"],
            container["env"][-1]["valueFrom"]["secretKeyRef"]["name"])


def data(kubectl: Kubectl, kind: str, name: str) -> dict[str, str]:
    body = kubectl.get(kind, name)
    assert body is not None, f"{kind} {name} exists"
    assert body.get("immutable") is True and body["metadata"]["labels"]["sluice.dev/versioned"] == "copy"
    assert body["metadata"]["ownerReferences"][0]["name"] == "shop"
    return body["data"]  # type: ignore[no-any-return]


def test_a_rollback_restores_the_old_config_with_the_old_pods(
        kubectl: Kubectl, operator: Operator, prometheus_url: str) -> None:
    ship_first_version(kubectl, prometheus_url, "hello from v1")
    v1_config, v1_secret = used_by(kubectl, "shop")
    assert v1_config.startswith("shop-config-") and v1_secret.startswith("shop-token-")
    assert data(kubectl, "configmap", v1_config) == {"GREETING": "hello from v1"}

    kubectl.apply(config("hello from v2", "token-2"))
    kubectl.apply(reading_config("2.0.0", error_rate=0.5))
    status = wait_for("the bad version and its config to be rolled back", phase(kubectl, "shop", "RolledBack"), 120)

    v2_config, v2_secret = used_by(kubectl, "shop-canary")
    assert (v2_config, v2_secret) != (v1_config, v1_secret), "the candidate ran with its own config"
    assert data(kubectl, "configmap", v2_config) == {"GREETING": "hello from v2"}
    assert used_by(kubectl, "shop") == (v1_config, v1_secret), "the old pods, with the old config"
    assert data(kubectl, "configmap", v1_config) == {"GREETING": "hello from v1"}
    assert data(kubectl, "secret", v1_secret) == {"TOKEN": "dG9rZW4tMQ=="}  # token-1
    assert status["stableVersion"] == "1.0.0"
    report = report_of(kubectl, "shop", "real-config-rolled-back")
    assert "| Outcome | **↩️ RolledBack**: metric error-rate failed" in report
    assert "- config ConfigMap shop-config: new content" in report, "the report lists the config change"
    changes = status["history"][-1]["changes"]  # what `sluice report` lists
    assert f"config ConfigMap shop-config: new content ({v1_config[-10:]} -> {v2_config[-10:]})" in changes
    assert f"config Secret shop-token: new content ({v1_secret[-10:]} -> {v2_secret[-10:]})" in changes


def test_a_config_change_alone_is_a_rollout_and_the_old_copy_goes_once_unused(
        kubectl: Kubectl, operator: Operator, prometheus_url: str) -> None:
    ship_first_version(kubectl, prometheus_url, "hello")
    before, secret = used_by(kubectl, "shop")

    kubectl.apply(config("hello, world", "token-1"))
    wait_for("a rollout of the new config", lambda: kubectl.status("shop").get("candidateVersion") == "1.0.0", 30)

    def promoted() -> bool:
        status = kubectl.status("shop")
        return status.get("phase") == "Succeeded" and used_by(kubectl, "shop")[0] != before
    wait_for("the new config to be promoted", promoted, 120)
    after, same_secret = used_by(kubectl, "shop")
    assert data(kubectl, "configmap", after) == {"GREETING": "hello, world"}
    assert same_secret == secret, "an unchanged Secret keeps its copy"
    history = kubectl.status("shop")["history"]
    assert history[-1]["outcome"] == "Succeeded" and history[-1]["version"] == "1.0.0"
    assert history[-1]["changes"] == [f"config ConfigMap shop-config: new content ({before[-10:]} -> {after[-10:]})"]
    wait_for("the old copy, used by no template, to be deleted",
             lambda: kubectl.get("configmap", before) is None and used_by(kubectl, "shop-canary")[0] == after, 60)

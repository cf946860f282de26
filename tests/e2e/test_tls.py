"""Prometheus over TLS, its CA and a bearer token read from Secrets: verified, never skipped."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Kubectl, Operator, PrivatePrometheus, wait_for
from tests.e2e.manifests import policy, release
from tests.e2e.test_canary import deploy_first, phase
from tests.unit.certs import pki

pytestmark = pytest.mark.e2e


@pytest.fixture
def tls_prometheus(tmp_path: Path) -> Iterator[tuple[PrivatePrometheus, str]]:
    """A real Prometheus serving HTTPS with a certificate for 127.0.0.1 from a CA of our own
    (tests.unit.certs, which the unit tests' HTTPS servers use too)."""
    (tmp_path / "server.crt").write_text(pki().server_cert)
    (tmp_path / "server.key").write_text(pki().server_key)
    web = tmp_path / "web.yml"
    web.write_text("tls_server_config:\n"
                   f"  cert_file: {tmp_path / 'server.crt'}\n  key_file: {tmp_path / 'server.key'}\n")
    instance = PrivatePrometheus(tmp_path, web_config=str(web))
    instance.start()
    yield instance, pki().ca
    instance.stop()


def secret(name: str, key: str, value: str, labelled: bool = True) -> dict[str, object]:
    """A Secret for analysis: Sluice reads it only with the opt-in label."""
    labels = {"sluice.dev/analysis-credential": "true"} if labelled else {}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "labels": labels},
            "data": {key: base64.b64encode(value.encode()).decode()}}


def test_a_policy_reaches_prometheus_over_tls_with_the_ca_and_token_from_secrets(
        kubectl: Kubectl, operator: Operator, tls_prometheus: tuple[PrivatePrometheus, str]) -> None:
    prometheus, ca = tls_prometheus
    steps = [{"setWeight": 50}, {"analysis": {}}, {"setWeight": 100}]
    trusted = policy("fast", steps, prometheus.url)
    trusted["spec"]["analysis"]["prometheus"].update({
        "tls": {"caSecretRef": {"name": "prometheus-ca", "key": "ca.crt"}},
        "bearerTokenSecretRef": {"name": "prometheus-token", "key": "token"},
    })
    untrusted = policy("no-ca", steps, prometheus.url)
    untrusted["spec"]["analysis"]["metrics"][0]["consecutiveErrorLimit"] = 2
    kubectl.apply([secret("prometheus-ca", "ca.crt", ca), secret("prometheus-token", "token", "s3cret"),
                   trusted, untrusted])

    deploy_first(kubectl, "secure")
    kubectl.apply(release("secure", "1.1.0"))
    status = wait_for("1.1.0 promoted, judged over TLS", phase(kubectl, "secure", "Succeeded"), 120)
    assert status["stableVersion"] == "1.1.0"
    assert [m["verdict"] for m in status["analysis"] if m["version"] == "1.1.0" and m["verdict"] != "Waiting"] \
        == ["Successful", "Successful"]

    deploy_first(kubectl, "doubtful", policy="no-ca")
    kubectl.apply(release("doubtful", "1.1.0", policy="no-ca"))
    status = wait_for("a rollback: an unverified server is never trusted", phase(kubectl, "doubtful", "RolledBack"),
                      90)
    errors = [m for m in status["analysis"] if m["version"] == "1.1.0"]
    assert errors and all(m["verdict"] == "Error" for m in errors)
    assert "CERTIFICATE_VERIFY_FAILED" in errors[-1]["message"]

"""Web metric stories on the real cluster: a canary judged by a number an HTTP endpoint reports.

The endpoint is a small HTTP server on 127.0.0.1 (a thread in the test): the operator runs as a
host process, so it reaches loopback. A second one serves HTTPS with a certificate from a CA of
the test's own (tests.unit.certs). The operator here allows exactly those servers for web metrics
(SLUICE_WEB_ALLOW) and the shared Prometheus for queries, as an administrator would set it; the
stories read what a user reads: phase, message, measurements, events and weights.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.e2e.conftest import Kubectl, Operator, wait_for
from tests.e2e.manifests import policy, release
from tests.e2e.test_canary import deploy_first, phase
from tests.e2e.test_tls import secret
from tests.unit.certs import HTTPSServer, pki

pytestmark = pytest.mark.e2e

TOKEN = "health-api-token"
GARBAGE = b"<html><body>internal error at db-7.corp.example: password=hunter2</body></html>"
STEPS = [{"setWeight": 25}, {"analysis": {}}, {"setWeight": 100}]


@dataclass
class HealthAPI:
    """An endpoint reporting an error rate per path, as JSON ({"data": {"errorRate": x}}), or the
    bytes a test puts in `raw`; it records each request's method, path, Authorization and body.
    With `tls` it serves HTTPS."""

    rates: dict[str, float] = field(default_factory=dict)
    raw: dict[str, bytes] = field(default_factory=dict)
    heard: list[tuple[str, str, str, bytes]] = field(default_factory=list)

    def start(self, tls: ssl.SSLContext | None = None) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                api.heard.append((self.command, self.path, self.headers.get("Authorization", ""), body))
                path = self.path.split("?", 1)[0]
                answer = api.raw.get(path) or json.dumps({"data": {"errorRate": api.rates.get(path)}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST = _serve

            def log_message(self, *args: Any) -> None:
                pass

        local = ("127.0.0.1", 0)
        self.server = HTTPSServer(local, Handler, tls) if tls else ThreadingHTTPServer(local, Handler)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.1,), daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def health_api() -> Iterator[HealthAPI]:
    api = HealthAPI()
    api.start()
    yield api
    api.stop()


@pytest.fixture(scope="module")
def private_health_api() -> Iterator[HealthAPI]:
    """The health API over HTTPS, its certificate (for 127.0.0.1) from the test's own CA."""
    api = HealthAPI()
    api.start(pki().server_context())
    yield api
    api.stop()


@pytest.fixture(scope="module")
def web_operator(env: dict[str, str], operator: Operator, health_api: HealthAPI, private_health_api: HealthAPI,
                 prometheus_url: str) -> Iterator[Operator]:
    """The operator, restarted with allowlists: the health APIs for web metrics, Prometheus for queries."""
    operator.stop()
    allowed = f"{health_api.url}/rates, {private_health_api.url}/rates"
    scoped = Operator({**env, "SLUICE_WEB_ALLOW": allowed, "SLUICE_PROMETHEUS_ALLOW": prometheus_url})
    mark = scoped.log.stat().st_size if scoped.log.exists() else 0
    scoped.start()
    try:
        started = scoped.log.read_text()[mark:]
        assert f"web metrics may call: {allowed}" in started, "the web allowlist was not taken"
        yield scoped
    finally:
        scoped.stop()
        operator.start()


def web_policy(name: str, url: str, prometheus_url: str, **web: Any) -> dict[str, Any]:
    metric = {"name": "error-rate", "web": {"url": url, "jsonPath": "$.data.errorRate", "timeout": "2s", **web},
              "successCondition": "result < 0.05", "abortCondition": "result > 0.3", "consecutiveErrorLimit": 2}
    return policy(name, STEPS, prometheus_url, analysis={"interval": "2s", "count": 2, "metrics": [metric]})


def measured(kubectl: Kubectl, name: str, version: str) -> list[dict[str, Any]]:
    return [m for m in kubectl.status(name).get("analysis", []) if m.get("version") == version]


def test_a_canary_reporting_a_low_error_rate_is_promoted(
        kubectl: Kubectl, web_operator: Operator, health_api: HealthAPI, prometheus_url: str) -> None:
    """Given a health API that reports 0.01 for the shop's checkout and asks a POST with the release
    and version and a token from a labelled Secret, when 1.1.0 rolls out, then it is promoted on
    the endpoint's word, and the endpoint heard who was asking about what."""
    path = f"/rates/{kubectl.namespace}/checkout"
    health_api.rates[path] = 0.01
    kubectl.apply([secret("health-token", "token", TOKEN),
                   web_policy("web", f"{health_api.url}{path}?window=1m", prometheus_url, method="POST",
                              body='{"app": "{{release}}", "version": "{{version}}", "ns": "{{namespace}}"}',
                              bearerTokenSecretRef={"name": "health-token", "key": "token"})])
    deploy_first(kubectl, "checkout", policy="web")
    kubectl.apply(release("checkout", "1.1.0", policy="web"))
    status = wait_for("1.1.0 to be promoted", phase(kubectl, "checkout", "Succeeded"), 120)
    assert status["stableVersion"] == "1.1.0"
    measurements = measured(kubectl, "checkout", "1.1.0")
    assert [m["verdict"] for m in measurements] == ["Successful", "Successful"], measurements
    assert all(m["value"] == 0.01 and m["message"] == "0.01: result < 0.05" for m in measurements), measurements
    asked = [(method, auth, json.loads(body)) for method, where, auth, body in health_api.heard
             if where.startswith(path)]
    assert asked and all(entry == ("POST", f"Bearer {TOKEN}", {"app": "checkout", "version": "1.1.0",
                                                               "ns": kubectl.namespace}) for entry in asked), asked
    reasons = [e["reason"] for e in kubectl.events("checkout")]
    assert "RolloutStarted" in reasons and "Promoted" in reasons


def test_a_canary_reporting_a_high_error_rate_is_rolled_back(
        kubectl: Kubectl, web_operator: Operator, health_api: HealthAPI, prometheus_url: str) -> None:
    """Given the endpoint reports 0.4 for the cart, when 2.0.0 rolls out, then the first
    measurement trips the abortCondition and traffic goes back to 1.0.0."""
    path = f"/rates/{kubectl.namespace}/cart"
    health_api.rates[path] = 0.4
    kubectl.apply(web_policy("web", f"{health_api.url}{path}", prometheus_url))
    deploy_first(kubectl, "cart", policy="web")
    kubectl.apply(release("cart", "2.0.0", policy="web"))
    status = wait_for("2.0.0 to be rolled back", phase(kubectl, "cart", "RolledBack"), 120)
    failed = [m for m in measured(kubectl, "cart", "2.0.0") if m["verdict"] == "Failed"]
    assert failed and failed[-1]["value"] == 0.4, status["analysis"]
    assert "abortCondition result > 0.3 holds" in failed[-1]["message"]
    assert "rolled back 2.0.0" in status["message"], status["message"]
    assert status["stableVersion"] == "1.0.0" and not status.get("canaryWeight")
    assert status["history"][-1]["outcome"] == "RolledBack"
    wait_for("the canary scaled to zero",
             lambda: (kubectl.get("deployment", "cart-canary") or {}).get("spec", {}).get("replicas") == 0, 60)
    assert any(e["reason"] == "RolledBack" and e["type"] == "Warning" for e in kubectl.events("cart"))


def test_an_endpoint_answering_garbage_never_promotes_and_is_never_echoed(
        kubectl: Kubectl, web_operator: Operator, health_api: HealthAPI, prometheus_url: str) -> None:
    """Given the endpoint answers an HTML error page with status 200, when 1.1.0 rolls out, then
    each measurement is an Error saying the answer is not JSON, the errors fail the analysis, the
    version is not promoted, and nothing of the page reaches status or events."""
    path = f"/rates/{kubectl.namespace}/ledger"
    health_api.raw[path] = GARBAGE
    kubectl.apply(web_policy("web", f"{health_api.url}{path}", prometheus_url))
    deploy_first(kubectl, "ledger", policy="web")
    kubectl.apply(release("ledger", "1.1.0", policy="web"))
    status = wait_for("1.1.0 to be rolled back", phase(kubectl, "ledger", "RolledBack", "Succeeded", "Paused"), 120)
    assert status["phase"] == "RolledBack" and status["stableVersion"] == "1.0.0", status
    errors = measured(kubectl, "ledger", "1.1.0")
    says = f"GET {health_api.url}{path} answered HTTP 200 with a body that is not JSON"
    assert len(errors) == 2 and all(m["verdict"] == "Error" and m["message"] == says for m in errors), errors
    assert "rolled back 1.1.0" in status["message"], status["message"]
    seen = json.dumps(kubectl.status("ledger")) + json.dumps(kubectl.events("ledger"))
    assert "hunter2" not in seen and "db-7" not in seen, "the endpoint's answer reached status or events"
    assert any(says in e["message"] for e in kubectl.events("ledger")), kubectl.events("ledger")


def test_an_https_endpoint_is_trusted_with_the_metrics_ca_and_refused_without_it(
        kubectl: Kubectl, web_operator: Operator, private_health_api: HealthAPI, prometheus_url: str) -> None:
    """Given a health API serving HTTPS with a certificate from a private CA, when 1.1.0 rolls out
    with a policy whose web metric gives that CA from a labelled Secret, then it is promoted on the
    endpoint's word; when it rolls out with a policy that gives no CA, then every measurement is an
    Error saying the server is not trusted, 1.1.0 is rolled back, and the endpoint was asked nothing."""
    path = f"/rates/{kubectl.namespace}/payments"
    url = f"{private_health_api.url}{path}"
    private_health_api.rates[path] = 0.01
    trusting = web_policy("trusting", url, prometheus_url, tls={"caSecretRef": {"name": "health-ca", "key": "ca.crt"}})
    kubectl.apply([secret("health-ca", "ca.crt", pki().ca), trusting, web_policy("doubtful", url, prometheus_url)])

    deploy_first(kubectl, "payments", policy="trusting")
    kubectl.apply(release("payments", "1.1.0", policy="trusting"))
    status = wait_for("1.1.0 promoted, judged over HTTPS", phase(kubectl, "payments", "Succeeded"), 120)
    assert status["stableVersion"] == "1.1.0"
    measurements = measured(kubectl, "payments", "1.1.0")
    assert [m["verdict"] for m in measurements] == ["Successful", "Successful"], measurements
    asked = len(private_health_api.heard)
    assert asked and all(where.startswith(path) for _, where, _, _ in private_health_api.heard)

    deploy_first(kubectl, "refunds", policy="doubtful")
    kubectl.apply(release("refunds", "1.1.0", policy="doubtful"))
    status = wait_for("a rollback: an unverified server is never trusted", phase(kubectl, "refunds", "RolledBack"),
                      120)
    errors = measured(kubectl, "refunds", "1.1.0")
    says = (f"GET {url} is not trusted: its certificate could not be verified (CERTIFICATE_VERIFY_FAILED); "
            "give the policy its CA in the metric's web.tls.caSecretRef")
    assert errors and all(m["verdict"] == "Error" and m["message"] == says for m in errors), errors
    assert status["stableVersion"] == "1.0.0" and not status.get("canaryWeight")
    assert len(private_health_api.heard) == asked, "a server that was not trusted was sent a request"

"""The confused deputy, closed: a RolloutPolicy cannot make the operator carry a namespace's Secret
to an address of its author's choosing.

An HTTP listener on 127.0.0.1 (a thread in the test) stands in for the attacker's URL and records
every request it gets. A policy points analysis at it with a bearerTokenSecretRef; the stories
check that the listener heard nothing, that the Release says why in its Stalled condition, and
that no traffic moved to the candidate. Each ends with a control that makes the listener hear the
token once the way is opened on purpose, so a listener that cannot hear would fail the test.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.e2e.conftest import Kubectl, Operator, wait_for
from tests.e2e.manifests import http_route, policy, release
from tests.e2e.test_canary import deploy_first, route_weights
from tests.e2e.test_safety import stalled
from tests.e2e.test_tls import secret

pytestmark = pytest.mark.e2e

TOKEN = "shop-database-password-do-not-leak"
ANALYSIS_FIRST = [{"analysis": {}}, {"setWeight": 50}, {"setWeight": 100}]  # judged before any traffic moves


class Listener:
    """The attacker's server: records each request's path and Authorization header, and answers
    like a Prometheus with a healthy error rate."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        heard = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                heard.append((self.path, self.headers.get("Authorization", "")))
                body = json.dumps({"status": "success", "data": {"resultType": "vector",
                                                                 "result": [{"metric": {}, "value": [1, "0"]}]}})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.1,), daemon=True).start()

    def tokens(self, prefix: str = "/") -> set[str]:
        return {auth for path, auth in self.requests if path.startswith(prefix)}


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.server.shutdown()
    server.server.server_close()


def aimed_at(name: str, address: str, secret_name: str) -> dict[str, Any]:
    body = policy(name, ANALYSIS_FIRST, address)
    body["spec"]["analysis"]["prometheus"]["bearerTokenSecretRef"] = {"name": secret_name, "key": "token"}
    return body


def watch_stalled(kubectl: Kubectl, name: str, seconds: float) -> tuple[dict[str, Any], list[int]]:
    """Wait for the Release to be Stalled, then keep watching `seconds` more (past a probe of the
    input); returns the Stalled condition and every canary route weight seen meanwhile."""
    weights: list[int] = []

    def check() -> dict[str, Any] | None:
        weights.append(route_weights(kubectl, name).get(f"{name}-canary", 0))
        return stalled(kubectl, name)()
    found: dict[str, Any] = wait_for(f"{name} Stalled", check, 60)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        weights.append(route_weights(kubectl, name).get(f"{name}-canary", 0))
        time.sleep(0.5)
    return found, weights


def test_a_secret_without_the_analysis_label_never_leaves_the_cluster(
        kubectl: Kubectl, operator: Operator, listener: Listener) -> None:
    """Given the shop's database password in a Secret without sluice.dev/analysis-credential, and
    a policy whose analysis goes to the attacker's listener with that Secret as bearer token, when
    a new version rolls out, then the listener hears nothing, the Release is Stalled naming the
    Secret and the label, and the candidate gets no traffic."""
    kubectl.apply([secret("db-password", "token", TOKEN, labelled=False),
                   aimed_at("exfil", listener.url, "db-password"), http_route("vault", "vault")])
    deploy_first(kubectl, "vault", policy="exfil", route="vault")
    kubectl.apply(release("vault", "1.1.0", policy="exfil", route="vault"))
    found, weights = watch_stalled(kubectl, "vault", 15)
    namespace = kubectl.namespace
    assert found["message"] == (
        f"Secret db-password not found in namespace {namespace}, or not marked for analysis: Sluice reads a "
        "Secret for a RolloutPolicy only if it has the label sluice.dev/analysis-credential=true "
        f"(kubectl label secret db-password -n {namespace} sluice.dev/analysis-credential=true)")
    assert listener.requests == [], "the unlabelled Secret's token reached the listener"
    assert set(weights) == {0}, f"traffic moved to an unjudged candidate: {weights}"
    status = kubectl.status("vault")
    assert status["stableVersion"] == "1.0.0" and status["phase"] not in ("Succeeded", "RolledBack")
    assert route_weights(kubectl, "vault") == {"vault": 100, "vault-canary": 0}

    # The control: labelled on purpose, the Secret is sent, so the listener above could hear it.
    kubectl.run("label", "secret", "db-password", "sluice.dev/analysis-credential=true")
    wait_for("the labelled token at the listener", lambda: f"Bearer {TOKEN}" in listener.tokens(), 40)


def test_an_operator_with_an_allowlist_sends_nothing_to_any_other_address(
        kubectl: Kubectl, operator: Operator, listener: Listener, prometheus_url: str) -> None:
    """Given an operator that allows only the shop's Prometheus and the path /prom on one server,
    and a labelled token Secret, when a policy aims analysis at another path of that server,
    then no request reaches it, the Release is Stalled naming the address and the flag, and the
    candidate gets no traffic; a policy on the allowed path is queried with the token."""
    allowed = f"{prometheus_url},{listener.url}/prom"
    operator.stop()
    scoped = Operator({**kubectl.env, "SLUICE_PROMETHEUS_ALLOW": allowed})
    mark = scoped.log.stat().st_size if scoped.log.exists() else 0
    scoped.start()
    try:
        assert "no Prometheus allowlist" not in scoped.log.read_text()[mark:], "the allowlist was not taken"
        kubectl.apply([secret("prom-token", "token", TOKEN),
                       aimed_at("exfil", f"http://reader:hunter2@127.0.0.1:{listener.url.rsplit(':', 1)[1]}/steal",
                                "prom-token"),
                       aimed_at("allowed", f"{listener.url}/prom", "prom-token"), http_route("vault", "vault")])
        deploy_first(kubectl, "vault", policy="exfil", route="vault")
        kubectl.apply(release("vault", "1.1.0", policy="exfil", route="vault"))
        found, weights = watch_stalled(kubectl, "vault", 15)
        message = found["message"]
        assert message.startswith(f"Prometheus address 'http://***@{listener.url[len('http://'):]}/steal' is not on "
                                  "this operator's allowlist"), message
        assert f"--prometheus-allow={listener.url}/steal" in message and "SLUICE_PROMETHEUS_ALLOW" in message
        assert "hunter2" not in json.dumps(kubectl.events("vault")) + message
        assert listener.requests == [], "a request reached an address outside the allowlist"
        assert set(weights) == {0}, f"traffic moved to an unjudged candidate: {weights}"
        assert route_weights(kubectl, "vault") == {"vault": 100, "vault-canary": 0}
        assert kubectl.status("vault")["stableVersion"] == "1.0.0"

        # The control: the same server under the allowed path is queried, with the token.
        deploy_first(kubectl, "ledger", policy="allowed")
        kubectl.apply(release("ledger", "1.1.0", policy="allowed"))
        wait_for("a query on the allowed path", lambda: f"Bearer {TOKEN}" in listener.tokens("/prom/api/v1/"), 60)
        assert not [path for path, _ in listener.requests if not path.startswith("/prom/")], listener.requests
    finally:
        scoped.stop()
        operator.start()

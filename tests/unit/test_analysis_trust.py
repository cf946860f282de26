"""Analysis as a trust boundary: a RolloutPolicy must not make the operator carry a Secret to
an address of its choosing, nor read an answer back through status, events or the log.

Queries go to a real HTTP server on 127.0.0.1 (a thread), so a test can tell whether a request
(and its token) arrived at all. Releases are driven through the real sluice.reconcile against the
in-memory object store of test_reconcile, and the tests read what a user reads: the Stalled
condition, status.message, the Release's events and the Service's selector.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from typer.testing import CliRunner

from sluice.analysis.addresses import Allowlist, parse_entry, redact
from sluice.analysis.prometheus import Connection, Prometheus
from sluice.analysis.providers import IDLE_CLIENT, Providers
from sluice.analysis.runner import Rejected, Sources, measure
from sluice.analysis.tls import Trust
from sluice.api.models import RolloutPolicySpec, SecretKeyRef, TLSConfig, Verdict
from sluice.cli.main import app
from sluice.kube.objects import CREDENTIAL_LABEL
from sluice.reconcile import Context
from tests.unit.certs import HTTPSServer, pki
from tests.unit.test_analysis import SUBJECT, with_prometheus
from tests.unit.test_reconcile import T0, Store, passes, release, selector, status
from tests.unit.world import policy_spec

TOKEN = "s3cret-token-of-the-shop"
REMOTE = "<remote words: token=s3cret-token-of-the-shop>"


class Listener:
    """An HTTP server on 127.0.0.1 (HTTPS with `tls`) that records every request and answers as told."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, headers)
        self.status, self.body = 200, json.dumps(
            {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "0.01"]}]}})
        self.delay = 0.0
        self.answered = threading.Event()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                listener.requests.append((self.path, dict(self.headers)))
                if listener.delay:
                    listener.answered.wait(listener.delay)
                payload = listener.body.encode()
                self.send_response(listener.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPSServer(("127.0.0.1", 0), Handler, tls) if tls else ThreadingHTTPServer(("127.0.0.1", 0),
                                                                                                   Handler)
        self.port = self.server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def tokens(self) -> list[str]:
        return [headers.get("Authorization", "") for _, headers in self.requests]


def _serve(server: Listener) -> Iterator[Listener]:
    server.thread.start()
    yield server
    server.answered.set()
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    yield from _serve(Listener())


@pytest.fixture
def https_listener() -> Iterator[Listener]:
    """HTTPS, with a certificate for 127.0.0.1 from the test's own CA (tests.unit.certs)."""
    yield from _serve(Listener(pki().server_context()))


def secret(name: str, labelled: bool = True, **data: str) -> dict[str, Any]:
    labels = {CREDENTIAL_LABEL: "true"} if labelled else {}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "shop", "labels": labels},
            "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}}


def analysed_policy(address: str, steps: list[dict[str, Any]] | None = None, **prometheus: Any) -> dict[str, Any]:
    return {"apiVersion": "sluice.dev/v1alpha1", "kind": "RolloutPolicy",
            "metadata": {"name": "manual", "namespace": "shop"},
            "spec": {"strategy": {"canary": {"steps": steps or [{"analysis": {}}, {"setWeight": 50},
                                                                 {"setWeight": 100}]}},
                     "analysis": {"interval": "1s", "count": 1,
                                  "prometheus": {"address": address, "timeout": "2s", **prometheus},
                                  "metrics": [{"name": "error-rate", "query": "q", "successCondition": "result < 0.05",
                                               "consecutiveErrorLimit": 1}]}}}


WITH_TOKEN = {"bearerTokenSecretRef": {"name": "prom-token", "key": "token"}}


def shop(allowed: list[str] | None = None) -> tuple[Store, Context, list[datetime]]:
    store = Store()
    clock = [T0]
    providers = Providers(store, Allowlist.parse(allowed or []))  # type: ignore[arg-type]
    return store, Context(kube=store, providers=providers, now=lambda: clock[0]), clock  # type: ignore[arg-type]


async def first_then_candidate(store: Store, context: Context, clock: list[datetime], passes_after: int = 6) -> None:
    """1.0.0 becomes stable (no analysis for a first version), then 1.1.0 is asked for."""
    release(store, "1.0.0")
    await passes(context, clock, 3)
    assert status(store)["phase"] == "Succeeded"
    release(store, "1.1.0")
    await passes(context, clock, passes_after)


def stalled_message(store: Store) -> str:
    condition = next(c for c in status(store)["conditions"] if c["type"] == "Stalled")
    assert condition["status"] == "True", status(store)
    return str(condition["message"])


def traffic_unmoved(store: Store) -> None:
    assert selector(store).get("sluice.dev/track") == "stable", "the Service must select the stable pods only"
    assert not status(store).get("canaryWeight"), status(store)
    assert status(store)["stableVersion"] == "1.0.0"


def seen_by_user(store: Store) -> str:
    """Everything a user can read about the Release: its status and its events."""
    return json.dumps(status(store)) + json.dumps(list(store.events.values()))


# --- 1. The allowlist: exact origins, optional path prefix ------------------------------------

@pytest.mark.parametrize(("entry", "address", "allowed"), [
    pytest.param("http://prom.example.com:9090", "http://prom.example.com:9090", True, id="the same origin"),
    pytest.param("http://prom.example.com:9090", "http://prom.example.com:9090/any/path", True,
                 id="no path in the entry: any path"),
    pytest.param("http://prom.example.com", "http://prom.example.com.evil.io", False,
                 id="a string prefix is not a host"),
    pytest.param("http://prom.example.com", "http://prom.example.com@evil.io", False,
                 id="the allowed host as a user name"),
    pytest.param("http://prom.example.com", "http://evil.io/prom.example.com", False, id="the host in the path"),
    pytest.param("http://prom.example.com", "http://evil.io:80/?x=http://prom.example.com", False,
                 id="the host in a query"),
    pytest.param("http://prom.example.com", "https://prom.example.com", False, id="another scheme"),
    pytest.param("http://prom.example.com", "http://prom.example.com:9090", False,
                 id="no port in the entry: only port 80"),
    pytest.param("http://prom.example.com", "http://prom.example.com:80/", True, id="port 80 written out"),
    pytest.param("https://prom.example.com", "https://prom.example.com:443", True, id="port 443 written out"),
    pytest.param("http://Prom.Example.COM:9090", "http://prom.example.com.:9090", True,
                 id="case and a trailing dot"),
    pytest.param("http://prom.example.com", "http://user:pass@prom.example.com", True,
                 id="a user name and password play no part"),
    pytest.param("http://10.0.0.1:9090", "http://10.0.0.10:9090", False, id="an IP that starts the same"),
    pytest.param("http://[::1]:9090", "http://[::1]:9090", True, id="IPv6"),
    pytest.param("http://gw.example.com/prom", "http://gw.example.com/prom", True, id="the path prefix itself"),
    pytest.param("http://gw.example.com/prom", "http://gw.example.com/prom/team-a", True, id="below the prefix"),
    pytest.param("http://gw.example.com/prom", "http://gw.example.com/prometheus", False,
                 id="a prefix ends at a slash"),
    pytest.param("http://gw.example.com/prom", "http://gw.example.com/", False, id="above the prefix"),
    pytest.param("http://gw.example.com/prom/", "http://gw.example.com/prom/x", True, id="a trailing slash"),
    pytest.param("http://gw.example.com/prom", "http://gw.example.com/prom/%2e%2e/admin", False,
                 id="encoded dot segments"),
    pytest.param("http://gw.example.com/prom", "http://gw.example.com/prom%2F..%2Fadmin", False,
                 id="an encoded slash"),
])
def test_an_allowlist_entry_allows_its_origin_and_path_only(entry: str, address: str, allowed: bool) -> None:
    assert Allowlist.parse([entry]).allows(address) is allowed


@pytest.mark.parametrize(("entry", "says"), [
    pytest.param("prom.example.com:9090", "must be http:// or https:// and a host", id="no scheme"),
    pytest.param("ftp://prom.example.com", "must be http:// or https://", id="another scheme"),
    pytest.param("http://admin:hunter2@prom.example.com", "must not carry a user name or password", id="userinfo"),
    pytest.param("http://prom.example.com/?x=1", "must not have a query", id="a query"),
    pytest.param("http://prom.example.com/a/../b", "has a path with '.', '..'", id="dot segments"),
    pytest.param("http://[::1", "is not a URL", id="not a URL"),
])
def test_an_allowlist_entry_that_cannot_be_meant_is_refused_at_startup(entry: str, says: str) -> None:
    with pytest.raises(ValueError, match="--prometheus-allow") as refused:
        parse_entry(entry)
    assert says in str(refused.value) and "hunter2" not in str(refused.value)


def test_the_operator_command_refuses_a_bad_entry_from_the_flag_or_the_environment() -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["operator", "--prometheus-allow", "prom.example.com:9090"])
    assert done.exit_code == 2 and "--prometheus-allow 'prom.example.com:9090' must be http:// or https://" in \
        done.output
    done = runner.invoke(app, ["operator"], env={"SLUICE_PROMETHEUS_ALLOW": "http://ok:9090, ftp://nope"})
    assert done.exit_code == 2 and "'ftp://nope'" in done.output


def test_the_environment_lists_entries_separated_by_commas(monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("SLUICE_PROMETHEUS_ALLOW", "http://a.monitoring:9090,https://b.example.com/prom")
    allowed = Allowlist.from_environment()
    assert str(allowed) == "http://a.monitoring:9090, https://b.example.com/prom"
    monkeypatch.setenv("SLUICE_PROMETHEUS_ALLOW", "")
    monkeypatch.delenv("SLUICE_WEB_ALLOW", raising=False)
    with caplog.at_level(logging.WARNING, logger="sluice"):
        Providers(Store())  # type: ignore[arg-type]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2 and "no Prometheus allowlist" in warned[0] and "no web metric allowlist" in warned[1]


async def test_an_address_outside_the_allowlist_gets_no_request_and_stalls_the_release(
        listener: Listener) -> None:
    """Given an operator that allows only the shop's Prometheus, when a policy points analysis
    at another address with a labelled token Secret, then nothing reaches that address, the
    Release is Stalled naming the address and the flag, and traffic stays on stable."""
    store, context, clock = shop(allowed=["http://prometheus.monitoring:9090"])
    store.put(secret("prom-token", token=TOKEN))
    store.put(analysed_policy(f"http://admin:hunter2@127.0.0.1:{listener.port}/", **WITH_TOKEN))
    await first_then_candidate(store, context, clock)
    message = stalled_message(store)
    assert message.startswith(f"Prometheus address 'http://***@127.0.0.1:{listener.port}' is not on this "
                              "operator's allowlist"), message
    assert f"--prometheus-allow=http://127.0.0.1:{listener.port}" in message
    assert "SLUICE_PROMETHEUS_ALLOW" in message
    assert "hunter2" not in message
    traffic_unmoved(store)
    await passes(context, clock, 20)  # probes of the stalled Release ask again: still nothing is sent
    assert listener.requests == []
    assert stalled_message(store) == message
    traffic_unmoved(store)


async def test_an_allowed_address_is_queried(listener: Listener) -> None:
    store, context, clock = shop(allowed=[listener.url])
    store.put(secret("prom-token", token=TOKEN))
    store.put(analysed_policy(listener.url, **WITH_TOKEN))
    await first_then_candidate(store, context, clock, passes_after=10)
    assert status(store)["phase"] == "Succeeded" and status(store)["stableVersion"] == "1.1.0"
    assert listener.tokens() and set(listener.tokens()) == {f"Bearer {TOKEN}"}


# --- 2. Secrets carry an opt-in label -----------------------------------------------------------

@pytest.mark.parametrize("which", ["token", "ca"])
async def test_a_secret_without_the_label_is_never_read_or_sent(listener: Listener, which: str) -> None:
    """Given a policy naming a Secret that lacks sluice.dev/analysis-credential=true, then no
    request leaves, the Release is Stalled naming the Secret and the label; once labelled, the
    token goes to the (allowed) address and the rollout completes."""
    store, context, clock = shop()
    if which == "token":
        store.put(secret("prom-token", labelled=False, token=TOKEN))
        policy = analysed_policy(listener.url, **WITH_TOKEN)
    else:
        store.put(secret("prom-token", labelled=False, **{"ca.crt": "not read anyway"}))
        policy = analysed_policy(listener.url.replace("http:", "https:"),
                                 tls={"caSecretRef": {"name": "prom-token", "key": "ca.crt"}})
    store.put(policy)
    await first_then_candidate(store, context, clock)
    message = stalled_message(store)
    assert message == ("Secret prom-token in namespace shop is not marked for analysis: Sluice reads a Secret for a "
                       "RolloutPolicy only if it has the label sluice.dev/analysis-credential=true "
                       "(kubectl label secret prom-token -n shop sluice.dev/analysis-credential=true)")
    assert listener.requests == []
    traffic_unmoved(store)
    if which == "token":
        store.put(secret("prom-token", token=TOKEN))
        await passes(context, clock, 25)
        assert listener.tokens() and set(listener.tokens()) == {f"Bearer {TOKEN}"}
        assert status(store)["phase"] == "Succeeded" and status(store)["stableVersion"] == "1.1.0"


# --- 3. Remote answers are never echoed ---------------------------------------------------------

@pytest.mark.parametrize(("code", "body", "says"), [
    pytest.param(503, json.dumps({"status": "error", "errorType": "unavailable", "error": REMOTE}),
                 "answered HTTP 503 Service Unavailable, errorType unavailable without a result", id="503 JSON"),
    pytest.param(500, f"<html>{REMOTE * 20}</html>", "answered HTTP 500 Internal Server Error without a result",
                 id="500 HTML"),
    pytest.param(502, json.dumps({"status": "error", "errorType": REMOTE, "error": REMOTE}),
                 "answered HTTP 502 Bad Gateway without a result", id="an unknown errorType"),
    pytest.param(200, json.dumps({"status": "success", "data": {"resultType": "vector",
                                                                "result": [{"value": [1, REMOTE]}]}}),
                 "gave an answer that is not a number", id="200 with text for a number"),
])
async def test_what_prometheus_answers_reaches_no_status_event_or_info_log(
        listener: Listener, caplog: pytest.LogCaptureFixture, code: int, body: str, says: str) -> None:
    caplog.set_level(logging.DEBUG, logger="sluice")
    listener.status, listener.body = code, body
    store, context, clock = shop()
    store.put(analysed_policy(listener.url))
    await first_then_candidate(store, context, clock, passes_after=8)
    assert status(store)["phase"] == "RolledBack", status(store)
    measured = [m for m in status(store)["analysis"] if m["version"] == "1.1.0"]
    assert measured and says in measured[-1]["message"], measured
    assert any(says in e["message"] for e in store.events.values()), store.events
    assert "remote words" not in seen_by_user(store)
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO and "remote words" in r.getMessage()]
    assert loud == [], "remote text in the log above debug level"


async def test_a_query_prometheus_refuses_says_the_status_code_not_its_words(listener: Listener) -> None:
    listener.status = 400
    listener.body = json.dumps({"status": "error", "errorType": "bad_data", "error": REMOTE})
    store, context, clock = shop()
    store.put(analysed_policy(listener.url))
    await first_then_candidate(store, context, clock)
    message = stalled_message(store)
    assert message == (f"metric error-rate: Prometheus at {listener.url} refused the query as invalid (HTTP 400, "
                       "errorType bad_data); check its PromQL (Prometheus' own words are logged at debug level)")
    assert "remote words" not in seen_by_user(store)
    traffic_unmoved(store)


# --- 4. A user name and password in an address are never shown -------------------------------

def test_redact_hides_userinfo_in_any_string() -> None:
    assert redact("http://user:pass@prom:9090/x") == "http://***@prom:9090/x"
    assert redact("https://tok@en@prom") == "https://***@prom"
    assert redact("http://user:pass@[::1") == "http://***@[::1"
    assert redact("http://prom:9090/a@b") == "http://prom:9090/a@b", "an @ in the path is no user name"


async def test_credentials_in_an_address_appear_in_no_message_or_log(
        listener: Listener, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    listener.status, listener.body = 503, "{}"
    store, context, clock = shop()
    store.put(analysed_policy(f"http://admin:hunter2@127.0.0.1:{listener.port}"))
    await first_then_candidate(store, context, clock, passes_after=8)
    basic = "Basic " + base64.b64encode(b"admin:hunter2").decode()
    assert listener.tokens() and set(listener.tokens()) == {basic}, "asked (no allowlist), with Basic auth"
    measured = [m for m in status(store)["analysis"] if m["version"] == "1.1.0"]
    assert f"Prometheus at http://***@127.0.0.1:{listener.port} answered HTTP 503" in measured[-1]["message"]
    shown = json.dumps(status(store).get("conditions")) + json.dumps(measured) + json.dumps(status(store)["message"]) \
        + json.dumps(list(store.events.values()))
    assert "hunter2" not in shown
    assert "hunter2" not in caplog.text
    providers = Providers(Store(), Allowlist.parse(["http://prometheus.monitoring:9090"]))  # type: ignore[arg-type]
    for address in ("http://admin:hunter2@[::1", "http://admin:hunter2@evil.example:8080"):
        with pytest.raises(Rejected) as refused:
            await providers.get(with_prometheus(address=address), "shop")
        assert "hunter2" not in str(refused.value) and "***@" in str(refused.value)


# --- 5. Bad TLS material stalls the Release plainly ----------------------------------------------

@pytest.mark.parametrize(("pem", "says"), [
    pytest.param("this is not a certificate", "is not a PEM certificate bundle", id="garbage"),
    pytest.param("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "is not a PEM certificate bundle",
                 id="a truncated certificate"),
    pytest.param("  \n", "is empty", id="empty: it would trust nothing"),
])
async def test_a_bad_ca_stalls_the_release_with_a_plain_message(
        listener: Listener, caplog: pytest.LogCaptureFixture, pem: str, says: str) -> None:
    store, context, clock = shop()
    store.put(secret("prom-ca", **{"ca.crt": pem}))
    store.put(analysed_policy(listener.url.replace("http:", "https:"),
                              tls={"caSecretRef": {"name": "prom-ca", "key": "ca.crt"}}))
    await first_then_candidate(store, context, clock)  # a pass that raised would fail the test here
    assert stalled_message(store) == f"the CA bundle in Secret prom-ca, key ca.crt, {says}"
    assert listener.requests == []
    assert "Traceback" not in caplog.text
    traffic_unmoved(store)


@pytest.mark.parametrize(("tls", "says"), [
    pytest.param({"caSecretRef": {"name": "prom-ca", "key": "ca.crt"}}, "0.01: result < 0.05", id="its CA: verified"),
    pytest.param(None, "is not trusted: its certificate could not be verified (CERTIFICATE_VERIFY_FAILED); give "
                 "the policy its CA in tls.caSecretRef", id="the system's CAs: refused"),
    pytest.param({"caSecretRef": {"name": "prom-ca", "key": "other.crt"}}, "is not trusted", id="another CA: refused"),
    pytest.param({"insecureSkipVerify": True}, "0.01: result < 0.05", id="insecureSkipVerify"),
])
async def test_prometheus_over_https_is_verified_with_the_policys_ca(
        https_listener: Listener, tls: dict[str, Any] | None, says: str) -> None:
    store = Store()
    store.put(secret("prom-ca", **{"ca.crt": pki().ca, "other.crt": pki().other_ca}))
    providers = Providers(store, Allowlist())  # type: ignore[arg-type]
    policy = with_prometheus(address=https_listener.url, tls=TLSConfig.model_validate(tls) if tls else None)
    try:
        [result] = await measure(await providers.sources(policy, "shop", ("error-rate",)), policy,
                                 ("error-rate",), SUBJECT)
    finally:
        await providers.close()
    assert says in result.message, result
    assert bool(https_listener.requests) == (result.verdict == Verdict.SUCCESSFUL), "a refused server heard nothing"


# --- 6. Clients follow their credentials and are not leaked -------------------------------------

def token_policy(address: str) -> RolloutPolicySpec:
    return with_prometheus(address=address, bearer_token_secret_ref=SecretKeyRef(name="prometheus", key="token"))


class Secrets:
    def __init__(self) -> None:
        self.token: str | None = "first"

    async def get(self, api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        if self.token is None:
            return None
        return {"metadata": {"labels": {CREDENTIAL_LABEL: "true"}},
                "data": {"token": base64.b64encode(self.token.encode()).decode()}}


async def test_a_rotated_token_rebuilds_the_client_and_closes_the_old_one(listener: Listener) -> None:
    secrets = Secrets()
    providers = Providers(secrets, Allowlist.parse([listener.url]))
    policy = token_policy(listener.url)
    first = await providers.get(policy, "shop")
    assert await first.query("q") == 0.01
    assert await providers.get(policy, "shop") is first, "unchanged credentials: the same client"
    secrets.token = "second"
    second = await providers.get(policy, "shop")
    assert second is not first and len(providers.clients) == 1
    assert isinstance(first, Prometheus) and first.client.is_closed
    await second.query("q")
    assert listener.tokens() == ["Bearer first", "Bearer second"]
    secrets.token = None  # the Secret deleted: its client goes too
    with pytest.raises(Rejected, match="Secret prometheus not found in namespace shop, or not marked for analysis"):
        await providers.get(policy, "shop")
    assert providers.clients == {} and isinstance(second, Prometheus) and second.client.is_closed


async def test_a_client_retired_mid_query_finishes_it_then_closes(listener: Listener) -> None:
    secrets = Secrets()
    providers = Providers(secrets, Allowlist())
    policy = token_policy(listener.url)
    first = await providers.get(policy, "shop")
    assert isinstance(first, Prometheus)
    listener.delay = 5.0
    asking = asyncio.create_task(first.query("q"))
    while not listener.requests:
        await asyncio.sleep(0.01)
    secrets.token = "second"
    await providers.get(policy, "shop")
    assert not first.client.is_closed, "a request is in flight"
    listener.answered.set()
    assert await asking == 0.01
    assert first.client.is_closed
    listener.delay = 0.0
    assert await first.query("q") == 0.01, "a pass still holding it is served, on a client of its own"
    await providers.close()


async def test_an_unused_client_is_closed(listener: Listener) -> None:
    now = [0.0]
    providers = Providers(Secrets(), Allowlist(), clock=lambda: now[0])
    first = await providers.get(token_policy(listener.url), "shop")
    now[0] += IDLE_CLIENT + 1
    other = await providers.get(token_policy("http://127.0.0.1:1"), "other")
    assert isinstance(first, Prometheus) and first.client.is_closed
    assert list(providers.clients.values()) == [other]
    await providers.close()
    assert isinstance(other, Prometheus) and other.client.is_closed


async def test_a_redirect_is_not_followed(listener: Listener) -> None:
    """An allowed server cannot send the operator on to another address."""
    listener.status, listener.body = 302, "{}"
    client = Prometheus(Connection(address=listener.url, timeout=2.0))
    result = await measure(Sources(client), policy_spec([{"analysis": {}}]), ("error-rate",), SUBJECT)
    assert "answered HTTP 302 Found without a result" in result[0].message
    assert len(listener.requests) == 1
    await client.close()


def test_a_connection_shows_no_secret_in_its_repr() -> None:
    shown = repr(Connection(address="http://p:9090", timeout=1.0, token=TOKEN, trust=Trust(ca_pem="PEM")))
    assert TOKEN not in shown and "PEM" not in shown

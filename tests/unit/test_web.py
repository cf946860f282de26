"""Web metrics: a number from an HTTP endpoint's JSON answer, judged like a Prometheus result.

Every request goes to a real HTTP server on 127.0.0.1 (a thread started by the test), through
the real Providers and runner, so the tests see what is really sent (method, headers, body,
whether anything arrived at all) and what a user would read: the measurement's verdict and message.
"""

from __future__ import annotations

import json
import logging
import math
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from sluice.analysis import template
from sluice.analysis.addresses import WEB, Allowlist
from sluice.analysis.judge import problems
from sluice.analysis.providers import IDLE_CLIENT, Providers
from sluice.analysis.runner import Rejected, Subject, measure
from sluice.analysis.web import MAX_ANSWER, Web
from sluice.api.models import RolloutPolicySpec, Verdict
from sluice.plan.types import Result
from tests.unit.certs import HTTPSServer, pki
from tests.unit.test_analysis_trust import (
    first_then_candidate,
    secret,
    seen_by_user,
    shop,
    stalled_message,
    traffic_unmoved,
)
from tests.unit.test_reconcile import Store, passes, status
from tests.unit.world import policy_spec

TOKEN = "web-token-of-the-shop"
REMOTE = "<remote words: internal hostname db-7.corp>"


@dataclass
class Heard:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Endpoint:
    """A JSON endpoint on 127.0.0.1 (HTTPS with `tls`) that records every request and answers as told."""

    status: int = 200
    body: bytes = b'{"errorRate": 0.01}'
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    heard: list[Heard] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def answer(self, value: Any, status: int = 200) -> None:
        self.status, self.body = status, value if isinstance(value, bytes) else json.dumps(value).encode()

    def start(self, tls: ssl.SSLContext | None = None) -> None:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                endpoint.heard.append(Heard(self.command, self.path, dict(self.headers), self.rfile.read(length)))
                if endpoint.delay:
                    endpoint.release.wait(endpoint.delay)
                self.send_response(endpoint.status)
                for name, value in {"Content-Type": "application/json", **endpoint.headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(endpoint.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(endpoint.body)

            do_GET = do_POST = do_HEAD = _serve

            def log_message(self, *args: Any) -> None:
                pass

        local = ("127.0.0.1", 0)
        self.server = HTTPSServer(local, Handler, tls) if tls else ThreadingHTTPServer(local, Handler)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    server = Endpoint()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def other() -> Iterator[Endpoint]:
    server = Endpoint()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def https_endpoint() -> Iterator[Endpoint]:
    """HTTPS, with a certificate for 127.0.0.1 from the test's own CA (tests.unit.certs)."""
    server = Endpoint()
    server.start(pki().server_context())
    yield server
    server.stop()


SUBJECT = Subject(release="checkout", namespace="shop", version="1.1.0", stable_version="1.0.0",
                  args={"service": "checkout-api"})


def web_policy(url: str, json_path: str = "$.errorRate", **web: Any) -> RolloutPolicySpec:
    extra = web.pop("metric", {})
    metric = {"name": "error-rate", "web": {"url": url, "jsonPath": json_path, "timeout": "2s", **web},
              "successCondition": "result < 0.05", **extra}
    return policy_spec([{"analysis": {}}], analysis={"metrics": [metric]})


async def measure_web(policy: RolloutPolicySpec, store: Store | None = None, allowed: list[str] | None = None,
                      prometheus: list[str] | None = None) -> Result:
    """One measurement of the policy's metric through real Providers (no allowlist unless given)."""
    providers = Providers(store or Store(), Allowlist.parse(prometheus or []),  # type: ignore[arg-type]
                          web_allowed=Allowlist.parse(allowed or [], WEB))
    try:
        sources = await providers.sources(policy, "shop", ("error-rate",))
        [result] = await measure(sources, policy, ("error-rate",), SUBJECT)
    finally:
        await providers.close()
    return result


# --- the number at the path -----------------------------------------------------------------------

@pytest.mark.parametrize(("answer", "path", "verdict", "value"), [
    pytest.param({"errorRate": 0.01}, "$.errorRate", Verdict.SUCCESSFUL, 0.01, id="a number"),
    pytest.param({"errorRate": 0}, "$.errorRate", Verdict.SUCCESSFUL, 0.0, id="an integer"),
    pytest.param({"errorRate": 0.4}, "$.errorRate", Verdict.FAILED, 0.4, id="a failing number"),
    pytest.param({"data": {"http": {"5xx": {"ratio": 0.02}}}}, "$.data.http['5xx'].ratio", Verdict.SUCCESSFUL, 0.02,
                 id="nested"),
    pytest.param({"series": [{"v": 0.9}, {"v": 0.03}]}, "$.series[1].v", Verdict.SUCCESSFUL, 0.03,
                 id="an array index"),
    pytest.param({"series": [{"name": "p99", "v": 0.9}, {"name": "errors", "v": 0.03}]},
                 '$.series[?(@.name == "errors")].v', Verdict.SUCCESSFUL, 0.03, id="a filter that selects one"),
    pytest.param([0.01], "$[0]", Verdict.SUCCESSFUL, 0.01, id="a top-level array"),
    pytest.param(b'{"errorRate": Infinity}', "$.errorRate", Verdict.FAILED, math.inf, id="+Inf is data"),
    pytest.param(b'{"errorRate": -Infinity}', "$.errorRate", Verdict.SUCCESSFUL, -math.inf, id="-Inf is data"),
    pytest.param(b'{"errorRate": 1e400}', "$.errorRate", Verdict.FAILED, math.inf, id="too large: +Inf"),
])
async def test_the_number_at_the_path_is_judged(endpoint: Endpoint, answer: Any, path: str, verdict: Verdict,
                                                value: float) -> None:
    endpoint.answer(answer)
    result = await measure_web(web_policy(endpoint.url + "/rate", path))
    assert (result.verdict, result.value, result.missing) == (verdict, value, False), result
    assert [(h.method, h.path) for h in endpoint.heard] == [("GET", "/rate")]


@pytest.mark.parametrize(("answer", "no_data", "verdict", "says"), [
    pytest.param({"other": 1}, "inconclusive", Verdict.INCONCLUSIVE,
                 "no data: no value at $.errorRate (absent or null) (noData: inconclusive)", id="absent"),
    pytest.param({"errorRate": None}, "fail", Verdict.FAILED, "no value at $.errorRate (absent or null) (noData: fail)",
                 id="null"),
    pytest.param(b'{"errorRate": NaN}', "hold", Verdict.WAITING, "no data: NaN at $.errorRate (noData: hold)",
                 id="NaN"),
    pytest.param({"series": []}, "inconclusive", Verdict.INCONCLUSIVE, "no value at $.series[*].v",
                 id="a wildcard matching nothing"),
])
async def test_no_value_is_no_data_and_follows_no_data(endpoint: Endpoint, answer: Any, no_data: str,
                                                       verdict: Verdict, says: str) -> None:
    endpoint.answer(answer)
    path = "$.series[*].v" if "series" in str(answer) else "$.errorRate"
    result = await measure_web(web_policy(endpoint.url, path, metric={"noData": no_data}))
    assert result.missing and result.verdict == verdict and result.value is None
    assert says in result.message, result.message


@pytest.mark.parametrize(("status", "answer", "path", "says"), [
    pytest.param(200, {"errorRate": REMOTE}, "$.errorRate",
                 "GET {url}/rate: the value at $.errorRate is a string, not a number", id="a string"),
    pytest.param(200, {"errorRate": "0.01"}, "$.errorRate", "is a string, not a number", id="a number as a string"),
    pytest.param(200, {"errorRate": True}, "$.errorRate", "is a boolean, not a number", id="a boolean"),
    pytest.param(200, {"errorRate": {"x": REMOTE}}, "$.errorRate", "is an object, not a number", id="an object"),
    pytest.param(200, {"series": [{"v": 0.1}, {"v": 0.2}]}, "$.series[*].v",
                 "GET {url}/rate: several values at $.series[*].v (2); the path must select one", id="several values"),
    pytest.param(500, {"error": REMOTE}, "$.errorRate", "GET {url}/rate answered HTTP 500 Internal Server Error",
                 id="500"),
    pytest.param(404, f"<html>{REMOTE}</html>".encode(), "$.errorRate", "answered HTTP 404 Not Found", id="404"),
    pytest.param(200, f"<html>{REMOTE}</html>".encode(), "$.errorRate",
                 "GET {url}/rate answered HTTP 200 with a body that is not JSON", id="not JSON"),
    pytest.param(204, b"", "$.errorRate", "answered HTTP 204 with a body that is not JSON", id="no body"),
    pytest.param(200, b"[" * 100_000 + b"]" * 100_000, "$.errorRate", "not JSON", id="nested too deep"),
])
async def test_what_cannot_be_a_value_is_an_error_that_echoes_nothing(
        endpoint: Endpoint, caplog: pytest.LogCaptureFixture, status: int, answer: Any, path: str, says: str) -> None:
    caplog.set_level(logging.DEBUG, logger="sluice")
    endpoint.answer(answer, status)
    result = await measure_web(web_policy(endpoint.url + "/rate?key=not-shown", path))
    assert result.verdict == Verdict.ERROR and result.value is None
    assert says.format(url=endpoint.url) in result.message, result.message
    assert "remote words" not in result.message and "not-shown" not in result.message
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO and "remote words" in r.getMessage()]
    assert loud == [], "the answer in the log above debug level"


async def test_a_slow_endpoint_times_out_within_the_metric_timeout(endpoint: Endpoint) -> None:
    endpoint.delay = 10.0
    result = await measure_web(web_policy(endpoint.url, timeout="1s"))
    assert (result.verdict, result.message) == (Verdict.ERROR, f"GET {endpoint.url} timed out after 1s")


async def test_an_answer_larger_than_the_bound_is_an_error(endpoint: Endpoint) -> None:
    endpoint.answer({"errorRate": 0.01, "padding": "x" * MAX_ANSWER})
    result = await measure_web(web_policy(endpoint.url))
    assert result.verdict == Verdict.ERROR and "answered more than 1024 KiB" in result.message


async def test_a_redirect_is_not_followed(endpoint: Endpoint, other: Endpoint) -> None:
    """An allowed endpoint cannot send the operator, and its token, on to another address."""
    endpoint.answer({}, 302)
    endpoint.headers = {"Location": other.url + "/elsewhere"}
    store = Store()
    store.put(secret("web-token", token=TOKEN))
    result = await measure_web(web_policy(endpoint.url, bearerTokenSecretRef={"name": "web-token", "key": "token"}),
                               store, allowed=[endpoint.url])
    assert result.verdict == Verdict.ERROR
    assert result.message == f"GET {endpoint.url} answered HTTP 302 Found (redirects are not followed)"
    assert len(endpoint.heard) == 1 and other.heard == []


async def test_no_cookie_is_kept_between_requests(endpoint: Endpoint) -> None:
    endpoint.headers = {"Set-Cookie": "session=abc; Path=/"}
    providers = Providers(Store(), Allowlist(), web_allowed=Allowlist())  # type: ignore[arg-type]
    policy = web_policy(endpoint.url)
    for _ in range(2):
        sources = await providers.sources(policy, "shop", ("error-rate",))
        await measure(sources, policy, ("error-rate",), SUBJECT)
    await providers.close()
    assert len(endpoint.heard) == 2 and "Cookie" not in endpoint.heard[1].headers


# --- what is sent -----------------------------------------------------------------------------------

async def test_a_post_body_is_rendered_with_values_escaped_as_json_strings(endpoint: Endpoint) -> None:
    evil = 'x", "admin": true, "y": "\\\n\u2028é'
    subject = Subject(release=evil, namespace="shop", version="1.1.0", stable_version="1.0.0",
                      args={"service": "checkout-api"})
    body = '{"app": "{{release}}", "ns": "{{ namespace }}", "version": "{{version}}", "track": "{{track}}", ' \
           '"service": "{{service}}"}'
    policy = web_policy(endpoint.url + "/query", method="POST", body=body, headers={"X-Team": "shop"})
    providers = Providers(Store(), Allowlist(), web_allowed=Allowlist())  # type: ignore[arg-type]
    sources = await providers.sources(policy, "shop", ("error-rate",))
    [result] = await measure(sources, policy, ("error-rate",), subject, "canary")
    await providers.close()
    assert result.verdict == Verdict.SUCCESSFUL
    [heard] = endpoint.heard
    assert heard.method == "POST" and heard.headers["Content-Type"] == "application/json"
    assert heard.headers["X-Team"] == "shop"
    assert json.loads(heard.body) == {"app": evil, "ns": "shop", "version": "1.1.0", "track": "canary",
                                      "service": "checkout-api"}, "the value stayed one string"


def test_json_escaping_is_a_second_mode_of_the_one_renderer() -> None:
    assert template.render('{"a": "{{release}}"}', {"release": 'x"}'}, template.escape_json) == '{"a": "x\\"}"}'
    assert template.render('up{app="{{release}}"}', {"release": 'x"}'}) == 'up{app="x\\"}"}', "PromQL by default"
    assert template.escape_json("a\x00b\\") == "a\\u0000b\\\\"


async def test_the_token_comes_only_from_a_labelled_secret(endpoint: Endpoint) -> None:
    policy = web_policy(endpoint.url, bearerTokenSecretRef={"name": "web-token", "key": "token"})
    store = Store()
    store.put(secret("web-token", labelled=False, token=TOKEN))
    with pytest.raises(Rejected) as refused:
        await measure_web(policy, store)
    assert str(refused.value) == (
        "Secret web-token in namespace shop is not marked for analysis: Sluice reads a Secret for a RolloutPolicy "
        "only if it has the label sluice.dev/analysis-credential=true "
        "(kubectl label secret web-token -n shop sluice.dev/analysis-credential=true)")
    assert endpoint.heard == []
    store.put(secret("web-token", token=TOKEN))
    result = await measure_web(policy, store)
    assert result.verdict == Verdict.SUCCESSFUL
    assert [h.headers.get("Authorization") for h in endpoint.heard] == [f"Bearer {TOKEN}"]


async def test_a_user_name_in_the_url_is_basic_auth_and_never_shown(endpoint: Endpoint) -> None:
    endpoint.answer({}, 503)
    address = endpoint.url.replace("http://", "http://reader:hunter2@")
    result = await measure_web(web_policy(address + "/rate"))
    assert endpoint.heard[0].headers["Authorization"].startswith("Basic ")
    assert result.message == f"GET {endpoint.url}/rate answered HTTP 503 Service Unavailable"


# --- the allowlist -----------------------------------------------------------------------------------

async def test_a_url_outside_the_web_allowlist_gets_no_request_and_no_secret_read(endpoint: Endpoint) -> None:
    store = Store()
    store.put(secret("web-token", labelled=False, token=TOKEN))  # would be refused too, if it were read
    policy = web_policy(endpoint.url + "/steal?key=k", bearerTokenSecretRef={"name": "web-token", "key": "token"})
    with pytest.raises(Rejected) as refused:
        await measure_web(policy, store, allowed=[endpoint.url + "/metrics"])
    message = str(refused.value)
    assert message.startswith(f"metric error-rate: Web metric URL '{endpoint.url}/steal' is not on this operator's "
                              "allowlist, so no request is sent to it and no Secret is read for it"), message
    assert f"--web-allow={endpoint.url}/steal" in message and "SLUICE_WEB_ALLOW" in message
    assert "analysis.allowedWebAddresses" in message and "key=k" not in message
    assert endpoint.heard == []
    result = await measure_web(web_policy(endpoint.url + "/metrics/shop?key=k"), allowed=[endpoint.url + "/metrics"])
    assert result.verdict == Verdict.SUCCESSFUL and [h.path for h in endpoint.heard] == ["/metrics/shop?key=k"]


async def test_a_prometheus_entry_does_not_allow_web_metrics(endpoint: Endpoint) -> None:
    """Allowing a Prometheus allows its queries, not any GET or POST to any path of it; and an
    operator that restricts Prometheus allows web metrics nowhere until it lists their URLs."""
    with pytest.raises(Rejected) as refused:
        await measure_web(web_policy(endpoint.url + "/api/v1/admin/tsdb/delete_series", method="POST", body="{}"),
                          prometheus=[endpoint.url])
    assert "is not on this operator's allowlist (it is empty while --prometheus-allow restricts analysis" \
        in str(refused.value)
    assert endpoint.heard == []


async def test_a_web_only_policy_needs_no_allowed_prometheus(endpoint: Endpoint) -> None:
    """The policy's Prometheus (the default address here) is not asked, so not checked either."""
    providers = Providers(Store(), Allowlist.parse(["http://prometheus.monitoring:9999"]),  # type: ignore[arg-type]
                          web_allowed=Allowlist.parse([endpoint.url], WEB))
    sources = await providers.sources(web_policy(endpoint.url), "shop", ("error-rate",))
    assert sources.prometheus is None and set(sources.web) == {"error-rate"}
    assert await sources.web["error-rate"].is_online()
    await providers.close()


def test_the_operator_command_takes_the_web_allowlist() -> None:
    from typer.testing import CliRunner

    from sluice.cli.main import app
    done = CliRunner().invoke(app, ["operator", "--web-allow", "metrics.example.com"])
    assert done.exit_code == 2 and "--web-allow 'metrics.example.com' must be http:// or https://" in done.output


# --- what lint and the judge refuse before anything is sent ---------------------------------------------

@pytest.mark.parametrize(("web", "problem"), [
    pytest.param({"jsonPath": "$.data["}, "metric error-rate: web jsonPath '$.data[' is not a valid JSONPath",
                 id="a path that does not parse"),
    pytest.param({"method": "POST", "body": '{"app": "{{release}"}'},
                 "metric error-rate: web body has a '{{' or '}}' that is not part of a {{variable}}",
                 id="unbalanced braces"),
    pytest.param({"method": "POST", "body": '{"app": "{{nope}}"}'},
                 "metric error-rate: web body uses unknown variable(s) nope", id="an unknown variable"),
    pytest.param({"method": "POST", "body": '{"replicas": {{service}}}'},
                 "metric error-rate: web body is not JSON once rendered", id="a variable outside a string"),
    pytest.param({"headers": {"Host": "admin.internal"}}, "metric error-rate: web header Host cannot be set",
                 id="Host would reach another site"),
    pytest.param({"headers": {"X-Bad": "a\r\nInjected: 1"}}, "has a value HTTP cannot carry", id="a line break"),
    pytest.param({"headers": {"Authorization": "Basic x"}, "bearerTokenSecretRef": {"name": "t", "key": "k"}},
                 "header Authorization and bearerTokenSecretRef both set", id="two Authorizations"),
])
def test_problems_find_what_a_web_metric_cannot_do(web: dict[str, Any], problem: str) -> None:
    found = problems(web_policy("http://metrics.example.com/q", **web), {"service": "checkout"})
    assert len(found) == 1 and problem in found[0], found


def test_a_good_web_metric_has_no_problems() -> None:
    policy = web_policy("http://metrics.example.com/q?team=shop", "$.data[0].value", method="POST",
                        body='{"app": "{{release}}", "svc": "{{service}}", "n": 5}', headers={"X-Team": "shop"})
    assert problems(policy, {"service": "checkout"}) == []
    assert problems(policy) == [], "without a Release's args, unknown variables are not known yet"


# --- through a reconcile: status and events show the number, never the answer -----------------------------

def web_policy_object(url: str, **web: Any) -> dict[str, Any]:
    return {"apiVersion": "sluice.dev/v1alpha1", "kind": "RolloutPolicy",
            "metadata": {"name": "manual", "namespace": "shop"},
            "spec": {"strategy": {"canary": {"steps": [{"analysis": {}}, {"setWeight": 50}, {"setWeight": 100}]}},
                     "analysis": {"interval": "1s", "count": 1, "metrics": [
                         {"name": "error-rate", "web": {"url": url, "jsonPath": "$.errorRate", "timeout": "2s", **web},
                          "successCondition": "result < 0.05", "consecutiveErrorLimit": 1}]}}}


@pytest.mark.parametrize(("answer", "phase", "says"), [
    pytest.param({"errorRate": 0.01}, "Succeeded", "0.01: result < 0.05", id="healthy: promoted"),
    pytest.param({"errorRate": 0.4}, "RolledBack", "0.4: result < 0.05 does not hold", id="unhealthy: rolled back"),
    pytest.param({"errorRate": REMOTE}, "RolledBack", "the value at $.errorRate is a string, not a number",
                 id="garbage: an error, never a pass"),
])
async def test_a_release_is_judged_by_its_web_metric(endpoint: Endpoint, answer: Any, phase: str, says: str) -> None:
    endpoint.answer(answer)
    store, context, clock = shop()
    store.put(web_policy_object(endpoint.url + "/rate"))
    await first_then_candidate(store, context, clock, passes_after=10)
    assert status(store)["phase"] == phase, status(store)
    measured = [m for m in status(store)["analysis"] if m["version"] == "1.1.0"]
    assert measured and says in measured[-1]["message"], measured
    assert "remote words" not in seen_by_user(store)
    assert endpoint.heard


async def test_a_release_whose_web_url_is_not_allowed_stalls_and_nothing_is_sent(endpoint: Endpoint) -> None:
    """Given an operator that allows another web URL, when a policy's web metric points at this
    endpoint, then the Release is Stalled naming the URL and --web-allow, the candidate gets no
    traffic, and no pass (probes of the stalled input included) sends the endpoint anything."""
    store, context, clock = shop()
    context.providers = Providers(store, Allowlist(),  # type: ignore[arg-type]
                                  web_allowed=Allowlist.parse(["http://health-api.monitoring:8080"], WEB))
    store.put(web_policy_object(endpoint.url + "/rate"))
    await first_then_candidate(store, context, clock)
    message = stalled_message(store)
    assert message == (f"metric error-rate: Web metric URL '{endpoint.url}/rate' is not on this operator's allowlist, "
                       "so no request is sent to it and no Secret is read for it; an operator administrator can allow "
                       f"it with --web-allow={endpoint.url}/rate (or SLUICE_WEB_ALLOW; the Helm value "
                       "analysis.allowedWebAddresses), or point the metric at an allowed URL")
    traffic_unmoved(store)
    await passes(context, clock, 20)
    assert endpoint.heard == []
    traffic_unmoved(store)


LINTED = """apiVersion: sluice.dev/v1alpha1
kind: RolloutPolicy
metadata: {name: p}
spec:
  strategy: {canary: {steps: [{analysis: {}}]}}
  analysis:
    metrics:
      - name: broken
        web: {url: "http://health-api:8080/v1#frag", jsonPath: "$.a"}
        successCondition: "result < 0.05"
      - name: careless
        web:
          url: http://health-api:8080/v1/rate
          jsonPath: "$.data["
          method: POST
          body: '{"app": {{release}}}'
        successCondition: "result < 0.05"
"""


def test_lint_names_what_a_web_metric_cannot_do(tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from sluice.cli.main import app
    manifest = tmp_path / "web.yaml"
    manifest.write_text(LINTED)
    result = CliRunner().invoke(app, ["lint", str(manifest)])
    assert result.exit_code == 1
    assert f"{manifest}:9: error: RolloutPolicy p: spec.analysis.metrics[0].web.url: " \
           "'http://health-api:8080/v1#frag' must be an http(s) URL such as" in result.output
    manifest.write_text(LINTED.replace("#frag", ""))
    result = CliRunner().invoke(app, ["lint", str(manifest)])
    errors = [line.split(": error: ", 1)[1] for line in result.output.splitlines() if ": error: " in line]
    assert errors == [
        "RolloutPolicy p: spec.analysis: metric careless: web jsonPath '$.data[' is not a valid JSONPath (such as "
        "$.data.errorRate)",
        "RolloutPolicy p: spec.analysis: metric careless: web body is not JSON once rendered; a {{variable}} is "
        'substituted as the contents of a JSON string, so it belongs inside quotes: {"app": "{{release}}"}'], errors


# --- HTTPS: the endpoint verified with the metric's own CA, from a labelled Secret -----------------------

CA_REF = {"name": "web-ca", "key": "ca.crt"}
UNTRUSTED = ("GET {url}/rate is not trusted: its certificate could not be verified (CERTIFICATE_VERIFY_FAILED); "
             "give the policy its CA in the metric's web.tls.caSecretRef")


def ca_secret(labelled: bool = True, **data: str) -> dict[str, Any]:
    """Secret web-ca: by default the test's CA under ca.crt and a CA that signed nothing here under other.crt."""
    return secret("web-ca", labelled=labelled, **(data or {"ca.crt": pki().ca, "other.crt": pki().other_ca}))


@pytest.mark.parametrize(("tls", "verdict", "says"), [
    pytest.param({"caSecretRef": CA_REF}, Verdict.SUCCESSFUL, "0.01: result < 0.05", id="its CA: verified"),
    pytest.param(None, Verdict.ERROR, UNTRUSTED, id="no tls: the system's CAs refuse it"),
    pytest.param({"caSecretRef": {"name": "web-ca", "key": "other.crt"}}, Verdict.ERROR, UNTRUSTED,
                 id="another CA: refused"),
    pytest.param({"insecureSkipVerify": True}, Verdict.SUCCESSFUL, "0.01: result < 0.05", id="insecureSkipVerify"),
    pytest.param({"insecureSkipVerify": True, "caSecretRef": {"name": "absent", "key": "ca.crt"}}, Verdict.SUCCESSFUL,
                 "0.01: result < 0.05", id="insecureSkipVerify reads no CA"),
])
async def test_an_https_endpoint_is_verified_with_the_metrics_ca(
        https_endpoint: Endpoint, caplog: pytest.LogCaptureFixture, tls: dict[str, Any] | None, verdict: Verdict,
        says: str) -> None:
    caplog.set_level(logging.INFO, logger="sluice")
    store = Store()
    store.put(ca_secret())
    result = await measure_web(web_policy(https_endpoint.url + "/rate", **({"tls": tls} if tls else {})), store)
    assert (result.verdict, result.message) == (verdict, says.format(url=https_endpoint.url)), result
    assert bool(https_endpoint.heard) == (verdict == Verdict.SUCCESSFUL), "a refused server is sent no request"
    if verdict == Verdict.ERROR:  # OpenSSL's reason, for the person on call
        assert "a server's certificate was refused: unable to get local issuer certificate" in caplog.text


@pytest.mark.parametrize(("stored", "labelled", "says"), [
    pytest.param({"ca.crt": "not read anyway"}, False, "Secret web-ca in namespace shop is not marked for analysis: "
                 "Sluice reads a Secret for a RolloutPolicy only if it has the label "
                 "sluice.dev/analysis-credential=true (kubectl label secret web-ca -n shop "
                 "sluice.dev/analysis-credential=true)", id="not labelled"),
    pytest.param(None, True, "Secret web-ca not found in namespace shop, or not marked for analysis: Sluice reads a "
                 "Secret for a RolloutPolicy only if it has the label sluice.dev/analysis-credential=true "
                 "(kubectl label secret web-ca -n shop sluice.dev/analysis-credential=true)", id="absent"),
    pytest.param({"other.crt": "x"}, True, "Secret web-ca with key ca.crt not found in namespace shop",
                 id="no such key"),
    pytest.param({"ca.crt": f"this is not a certificate: {REMOTE}"}, True,
                 "the CA bundle in Secret web-ca, key ca.crt, is not a PEM certificate bundle", id="garbage"),
    pytest.param({"ca.crt": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}, True,
                 "the CA bundle in Secret web-ca, key ca.crt, is not a PEM certificate bundle",
                 id="a truncated certificate"),
    pytest.param({"ca.crt": "  \n"}, True, "the CA bundle in Secret web-ca, key ca.crt, is empty",
                 id="empty: it would trust nothing"),
])
async def test_a_ca_secret_that_cannot_be_used_is_rejected_plainly_and_nothing_is_sent(
        https_endpoint: Endpoint, stored: dict[str, str] | None, labelled: bool, says: str) -> None:
    store = Store()
    if stored is not None:
        store.put(ca_secret(labelled, **stored))
    with pytest.raises(Rejected) as refused:
        await measure_web(web_policy(https_endpoint.url, tls={"caSecretRef": CA_REF}), store)
    assert str(refused.value) == says
    assert https_endpoint.heard == []


@pytest.mark.parametrize(("pem", "phase"), [
    pytest.param("this is not a certificate", "Stalled", id="a garbage CA: Stalled, nothing sent"),
    pytest.param("other", "RolledBack", id="a server the CA does not vouch for: Errors, rolled back"),
    pytest.param("ours", "Succeeded", id="the server's own CA: promoted"),
])
async def test_a_release_is_judged_over_https_only_with_a_ca_that_verifies(
        https_endpoint: Endpoint, caplog: pytest.LogCaptureFixture, pem: str, phase: str) -> None:
    store, context, clock = shop()
    store.put(ca_secret(**{"ca.crt": {"ours": pki().ca, "other": pki().other_ca}.get(pem, pem)}))
    store.put(web_policy_object(https_endpoint.url + "/rate", tls={"caSecretRef": CA_REF}))
    await first_then_candidate(store, context, clock, passes_after=10)  # a pass that raised would fail the test here
    assert "Traceback" not in caplog.text
    if phase == "Stalled":
        assert stalled_message(store) == "the CA bundle in Secret web-ca, key ca.crt, is not a PEM certificate bundle"
        assert https_endpoint.heard == []
        traffic_unmoved(store)
        return
    assert status(store)["phase"] == phase, status(store)
    measured = [m for m in status(store)["analysis"] if m["version"] == "1.1.0"]
    says = "0.01: result < 0.05" if phase == "Succeeded" else UNTRUSTED.format(url=https_endpoint.url)
    assert measured and measured[-1]["message"] == says, measured
    assert bool(https_endpoint.heard) == (phase == "Succeeded")


async def test_endpoints_that_trust_alike_share_a_client_and_an_unused_one_is_closed(
        endpoint: Endpoint, https_endpoint: Endpoint) -> None:
    now = [0.0]
    store = Store()
    store.put(ca_secret())
    providers = Providers(store, Allowlist(), clock=lambda: now[0], web_allowed=Allowlist())  # type: ignore[arg-type]

    async def web_of(policy: RolloutPolicySpec) -> Web:
        found = (await providers.sources(policy, "shop", ("error-rate",))).web["error-rate"]
        assert isinstance(found, Web)
        return found

    plain, private = web_policy(endpoint.url), web_policy(https_endpoint.url, tls={"caSecretRef": CA_REF})
    first, second = await web_of(plain), await web_of(private)
    assert first.client is not second.client, "a client verifies servers one way only"
    assert (await web_of(private)).client is second.client and (await web_of(plain)).client is first.client
    now[0] += IDLE_CLIENT + 1
    third = await web_of(plain)
    assert first.client.is_closed and second.client.is_closed, "unused for longer than IDLE_CLIENT"
    assert list(providers.web_clients.values()) == [third.client] and await third.query(None) == 0.01
    await providers.close()
    assert third.client.is_closed

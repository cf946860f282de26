"""Metric providers for a policy: one Prometheus client per connection, reused across passes,
with the bearer token and CA read from Secrets; and web metrics' endpoints, on clients shared by
every endpoint that trusts the same CAs.

Everything here is input, and some of it is a trust boundary. The address comes from the policy,
so it must be on the operator's allowlist (sluice.analysis.addresses) before anything else
happens; the token and CA come from Secrets, which are read only if they carry the label
sluice.dev/analysis-credential=true, so a policy cannot send an arbitrary Secret anywhere. A value
that cannot work (an address that is not a URL or not allowed, a Secret not labelled, a token an
HTTP header cannot carry, a CA that is not PEM) raises Rejected with a plain sentence, which
stalls the Release; no other exception leaves `get()` or `sources()`. The sentences name the
policy's own values (addresses without user name or password), never a secret. Web metrics follow
the same rules with an allowlist of their own (sluice.analysis.addresses says why).
"""

from __future__ import annotations

import base64
import binascii
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import httpx

from sluice.analysis import web
from sluice.analysis.addresses import ENVIRONMENT, FLAG, WEB, Allowlist, redact, shown
from sluice.analysis.prometheus import Connection, MetricProvider, Prometheus
from sluice.analysis.runner import Rejected, Sources, asks_prometheus
from sluice.analysis.tls import SYSTEM, Trust
from sluice.api.durations import parse_duration
from sluice.api.models import Metric, RolloutPolicySpec, SecretKeyRef, TLSConfig
from sluice.kube.objects import CREDENTIAL_LABEL

log = logging.getLogger(__name__)

IDLE_CLIENT = 600.0  # seconds a client may go unused (its policy deleted, say) before it is closed


class SecretSource(Protocol):
    async def get(self, api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any] | None: ...


def _url(address: str, quoted: str, why: str) -> httpx.URL:
    try:
        url = httpx.URL(address)
    except (httpx.InvalidURL, ValueError, TypeError) as error:
        raise Rejected(f"{quoted} {why}: it is not a valid URL") from error
    if url.scheme not in ("http", "https"):
        raise Rejected(f"{quoted} {why}: it must start with http:// or https://")
    if not url.host or any(char in url.host for char in "% "):
        raise Rejected(f"{quoted} {why}: it has no valid host name")
    if url.port is not None and not 1 <= url.port <= 65535:
        raise Rejected(f"{quoted} {why}: the port must be between 1 and 65535")
    return url


def check_address(address: str) -> str:
    """The Prometheus base URL, or Rejected: check_address("http://prometheus:9090/") ==
    "http://prometheus:9090"; "http://[::1", a port of 99999 or a trailing newline are refused."""
    quoted, why = shown(address), "is not a usable Prometheus address"
    url = _url(address, quoted, why)
    if url.query or url.fragment:
        raise Rejected(f"{quoted} {why}: it must not have a query (?) or fragment (#)")
    return address.rstrip("/")


def check_web_url(address: str) -> httpx.URL:
    """A web metric's URL, or Rejected as check_address says; a query string is allowed (and not shown)."""
    url = _url(address, shown(address.split("?", 1)[0]), "is not a usable web metric URL")
    if url.fragment:
        raise Rejected(f"{shown(address.split('?', 1)[0])} is not a usable web metric URL: it must not have a "
                       "fragment (#)")
    return url


def check_token(token: str, ref: SecretKeyRef) -> str:
    """A bearer token an HTTP header can carry (printable ASCII), or Rejected."""
    if not token:
        raise Rejected(f"the bearer token in Secret {ref.name}, key {ref.key}, is empty")
    if not all(" " < char <= "~" for char in token):
        raise Rejected(f"the bearer token in Secret {ref.name}, key {ref.key}, has characters an HTTP header "
                       "cannot carry (spaces, line breaks or non-ASCII)")
    return token


def check_ca(pem: str, ref: SecretKeyRef) -> Trust:
    """A Trust in the PEM bundle, or Rejected. An empty bundle would trust nothing, so every
    measurement would fail: it is refused as input instead."""
    if not pem.strip():
        raise Rejected(f"the CA bundle in Secret {ref.name}, key {ref.key}, is empty")
    trust = Trust(ca_pem=pem)
    try:
        trust.verify()
    except (ssl.SSLError, ValueError, TypeError) as error:
        log.info("the CA bundle in Secret %s, key %s, was refused: %s", ref.name, ref.key, error)  # OpenSSL's words
        raise Rejected(f"the CA bundle in Secret {ref.name}, key {ref.key}, is not a PEM certificate bundle") \
            from error
    return trust


async def read_secret(secrets: SecretSource, namespace: str, ref: SecretKeyRef) -> str:
    """The text under `ref` in a Secret marked for Sluice (label sluice.dev/analysis-credential=true),
    or Rejected with a sentence that names the Secret and the key, never the value."""
    secret = await secrets.get("v1", "Secret", ref.name, namespace)
    if secret is None:  # the operator's cache holds only labelled Secrets: an unlabelled one is not found
        raise Rejected(f"Secret {ref.name} not found in namespace {namespace}, or not marked for analysis: "
                       f"Sluice reads a Secret for a RolloutPolicy only if it has the label "
                       f"{CREDENTIAL_LABEL}=true (kubectl label secret {ref.name} -n {namespace} "
                       f"{CREDENTIAL_LABEL}=true)")
    labels = (secret.get("metadata") or {}).get("labels") or {}
    if labels.get(CREDENTIAL_LABEL) != "true":
        raise Rejected(f"Secret {ref.name} in namespace {namespace} is not marked for analysis: Sluice reads a "
                       f"Secret for a RolloutPolicy only if it has the label {CREDENTIAL_LABEL}=true "
                       f"(kubectl label secret {ref.name} -n {namespace} {CREDENTIAL_LABEL}=true)")
    data = secret.get("data") or {}
    if ref.key not in data:
        raise Rejected(f"Secret {ref.name} with key {ref.key} not found in namespace {namespace}")
    try:
        return base64.b64decode(data[ref.key], validate=True).decode("utf-8").strip()
    except (binascii.Error, ValueError, TypeError) as error:  # UnicodeDecodeError is a ValueError
        raise Rejected(f"Secret {ref.name}, key {ref.key}, in namespace {namespace} is not UTF-8 text") \
            from error


@dataclass(frozen=True)
class Source:
    """Where a connection comes from: one client is kept per source, and rebuilt (the old one
    closed) when what it reads from its Secrets changes."""

    namespace: str
    address: str
    timeout: float
    token: tuple[str, str] | None
    ca: tuple[str, str] | None
    insecure: bool


def _ref(ref: SecretKeyRef | None) -> tuple[str, str] | None:
    return (ref.name, ref.key) if ref else None


class Providers:
    """Prometheus clients for policies, within the operator's allowlist: one per source, reused
    across passes and Releases, closed when its credentials change or it goes unused. Web metrics
    share a client per Trust (the system's CAs, a CA bundle, or none), closed when unused."""

    def __init__(self, kube: SecretSource, allowed: Allowlist | None = None,
                 clock: Callable[[], float] = time.monotonic, web_allowed: Allowlist | None = None) -> None:
        self.kube = kube
        self.allowed = Allowlist.from_environment() if allowed is None else allowed
        web_allowed = Allowlist.from_environment(WEB) if web_allowed is None else web_allowed
        # An operator that restricts Prometheus restricts web metrics too, until it lists their URLs.
        self.web_allowed = replace(web_allowed, closed=bool(self.allowed) and not web_allowed)
        self.clock = clock
        self.clients: dict[Source, Prometheus] = {}
        self.used: dict[Source, float] = {}
        self.web_clients: dict[Trust, httpx.AsyncClient] = {}
        self.web_used: dict[Trust, float] = {}
        if self.allowed:
            log.info("analysis may query Prometheus at: %s", self.allowed)
        else:
            log.warning("no Prometheus allowlist (%s, %s): any RolloutPolicy may have the operator query any "
                        "address, with the bearer token of any labelled Secret in its namespace", FLAG, ENVIRONMENT)
        if self.web_allowed:
            log.info("web metrics may call: %s", self.web_allowed)
        elif self.web_allowed.closed:
            log.info("web metrics may call no URL: %s restricts analysis and %s is not set", FLAG, WEB.flag)
        else:
            log.warning("no web metric allowlist (%s, %s): any RolloutPolicy may have the operator send requests "
                        "to any URL, with the bearer token of any labelled Secret in its namespace", WEB.flag,
                        WEB.environment)

    async def _secret(self, namespace: str, ref: SecretKeyRef | None) -> str | None:
        return None if ref is None else await read_secret(self.kube, namespace, ref)

    async def _trust(self, namespace: str, tls: TLSConfig | None) -> Trust:
        """How a server is verified under a policy's `tls`: insecureSkipVerify reads no Secret; a
        caSecretRef must name a labelled Secret holding a PEM bundle (or Rejected); without
        either, the system's CAs."""
        if tls is not None and tls.insecure_skip_verify:
            return Trust(insecure=True)
        ref = tls.ca_secret_ref if tls is not None else None
        if ref is None:
            return SYSTEM
        return check_ca(await read_secret(self.kube, namespace, ref), ref)

    async def sources(self, policy: RolloutPolicySpec, namespace: str, names: tuple[str, ...]) -> Sources:
        """Where the named metrics are measured: Prometheus only if one of them asks it, and each web
        metric's endpoint. Every web URL is checked against the allowlist before any Secret is read."""
        metrics = [m for m in policy.analysis.metrics if m.name in names]
        webs = [(m, self._web_url(m)) for m in metrics if m.web is not None]
        prometheus = await self.get(policy, namespace) if any(asks_prometheus(m) for m in metrics) else None
        endpoints = {m.name: await self._endpoint(m, url, namespace) for m, url in webs}
        if not endpoints:
            return Sources(prometheus)
        now = self.clock()
        await self._close_idle(now)
        return Sources(prometheus, {name: web.Web(endpoint, self._web_client(endpoint.trust, now))
                                    for name, endpoint in endpoints.items()})

    def _web_client(self, trust: Trust, now: float) -> httpx.AsyncClient:
        if trust not in self.web_clients:
            self.web_clients[trust] = web.client(trust=trust)
        self.web_used[trust] = now
        return self.web_clients[trust]

    def _web_url(self, metric: Metric) -> httpx.URL:
        assert metric.web is not None
        url = check_web_url(metric.web.url)
        if not self.web_allowed.allows(metric.web.url):  # before any Secret is read or any request is sent
            raise Rejected(f"metric {metric.name}: {self.web_allowed.refusal(metric.web.url.split('?', 1)[0])}")
        return url

    async def _endpoint(self, metric: Metric, url: httpx.URL, namespace: str) -> web.Endpoint:
        spec = metric.web
        assert spec is not None
        try:
            timeout = parse_duration(spec.timeout)
        except ValueError as error:
            raise Rejected(f"metric {metric.name}: web timeout {spec.timeout!r} is not a duration such as 5s") \
                from error
        ref = spec.bearer_token_secret_ref
        token = await self._secret(namespace, ref)
        if token is not None and ref is not None:
            check_token(token, ref)
        # A user name and password in the URL become Basic auth, so that no URL httpx logs carries them.
        basic = (url.username, url.password) if url.userinfo else None
        bare = str(url.copy_with(username=None, password=None)) if url.userinfo else spec.url
        return web.Endpoint(url=bare, method=spec.method, json_path=spec.json_path, timeout=timeout,
                            headers=tuple(spec.headers.items()), token=token, basic=basic,
                            trust=await self._trust(namespace, spec.tls))

    async def get(self, policy: RolloutPolicySpec, namespace: str) -> MetricProvider:
        prom = policy.analysis.prometheus
        tls = prom.tls
        insecure = bool(tls and tls.insecure_skip_verify)
        token_ref = prom.bearer_token_secret_ref
        ca_ref = tls.ca_secret_ref if tls else None
        address = check_address(prom.address)
        if not self.allowed.allows(address):  # before any Secret is read or any request is sent
            raise Rejected(self.allowed.refusal(address))
        try:
            timeout = parse_duration(prom.timeout)
        except ValueError as error:
            raise Rejected(f"Prometheus timeout {prom.timeout!r} is not a duration such as 5s") from error
        source = Source(namespace, address, timeout, _ref(token_ref), _ref(ca_ref if not insecure else None),
                        insecure)
        now = self.clock()
        await self._close_idle(now)
        try:
            connection = await self._connection(source, token_ref, tls)
        except Rejected:
            await self._drop(source, "its Secrets can no longer be used")
            raise
        current = self.clients.get(source)
        if current is not None and current.connection != connection:
            await self._drop(source, "its bearer token or CA changed")
        if source not in self.clients:
            try:
                self.clients[source] = Prometheus(connection)
            except (httpx.InvalidURL, ssl.SSLError, ValueError, TypeError) as error:  # checked above: a backstop
                log.info("a Prometheus client for %s could not be built: %s", redact(address), type(error).__name__)
                raise Rejected(f"a Prometheus client for {redact(address)} could not be built from the policy "
                               "and its Secrets") from error
        self.used[source] = now
        return self.clients[source]

    async def _connection(self, source: Source, token_ref: SecretKeyRef | None, tls: TLSConfig | None) -> Connection:
        token = await self._secret(source.namespace, token_ref)
        if token is not None and token_ref is not None:
            check_token(token, token_ref)
        return Connection(address=source.address, timeout=source.timeout, token=token,
                          trust=await self._trust(source.namespace, tls))

    async def _drop(self, source: Source, why: str) -> None:
        client = self.clients.pop(source, None)
        self.used.pop(source, None)
        if client is not None:
            log.info("closing the client of Prometheus at %s for namespace %s: %s", client.shown, source.namespace,
                     why)
            await client.retire()

    async def _close_idle(self, now: float) -> None:
        for source in [s for s, last in self.used.items() if now - last > IDLE_CLIENT]:
            await self._drop(source, "unused for a while")
        for trust in [t for t, last in self.web_used.items() if now - last > IDLE_CLIENT]:
            del self.web_used[trust]
            log.info("closing a web metric client: unused for a while")
            await self.web_clients.pop(trust).aclose()

    async def close(self) -> None:
        for source in list(self.clients):
            client = self.clients.pop(source)
            await client.close()
        self.used.clear()
        for web_client in self.web_clients.values():
            await web_client.aclose()
        self.web_clients.clear()
        self.web_used.clear()

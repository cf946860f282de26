"""Metric providers for a policy: one Prometheus client per connection, reused across passes
and Releases, with the bearer token and CA read from Secrets.

Everything here is input: the address from the policy, the token and CA from Secrets. A value
that cannot work (an address that is not a URL, a port of 99999, a token an HTTP header cannot
carry, a CA that is not PEM) raises Rejected with a plain sentence, which stalls the Release;
no other exception leaves `get()`. The sentences name the policy's own values, never a secret.
"""

from __future__ import annotations

import base64
import binascii
import logging
import ssl
from typing import Any, Protocol

import httpx

from sluice.analysis.prometheus import Connection, MetricProvider, Prometheus
from sluice.analysis.runner import Rejected
from sluice.api.durations import parse_duration
from sluice.api.models import RolloutPolicySpec, SecretKeyRef

log = logging.getLogger(__name__)


class SecretSource(Protocol):
    async def get(self, api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any] | None: ...


def check_address(address: str) -> str:
    """The Prometheus base URL, or Rejected: check_address("http://prometheus:9090/") ==
    "http://prometheus:9090"; "http://[::1", a port of 99999 or a trailing newline are refused."""
    shown = repr(address) if len(address) <= 200 else repr(address[:200] + "...")
    why = "is not a usable Prometheus address"
    try:
        url = httpx.URL(address)
    except (httpx.InvalidURL, ValueError, TypeError) as error:
        raise Rejected(f"{shown} {why}: it is not a valid URL") from error
    if url.scheme not in ("http", "https"):
        raise Rejected(f"{shown} {why}: it must start with http:// or https://")
    if not url.host or any(char in url.host for char in "% "):
        raise Rejected(f"{shown} {why}: it has no valid host name")
    if url.port is not None and not 1 <= url.port <= 65535:
        raise Rejected(f"{shown} {why}: the port must be between 1 and 65535")
    if url.query or url.fragment:
        raise Rejected(f"{shown} {why}: it must not have a query (?) or fragment (#)")
    return address.rstrip("/")


def check_token(token: str, ref: SecretKeyRef) -> str:
    """A bearer token an HTTP header can carry (printable ASCII), or Rejected."""
    if not token:
        raise Rejected(f"the bearer token in Secret {ref.name}, key {ref.key}, is empty")
    if not all(" " < char <= "~" for char in token):
        raise Rejected(f"the bearer token in Secret {ref.name}, key {ref.key}, has characters an HTTP header "
                       "cannot carry (spaces, line breaks or non-ASCII)")
    return token


def check_ca(pem: str, ref: SecretKeyRef) -> ssl.SSLContext:
    """An SSL context trusting the PEM bundle, or Rejected."""
    try:
        return ssl.create_default_context(cadata=pem)
    except (ssl.SSLError, ValueError, TypeError) as error:
        log.info("the CA bundle in Secret %s, key %s, was refused: %s", ref.name, ref.key, error)
        raise Rejected(f"the CA bundle in Secret {ref.name}, key {ref.key}, is not a PEM certificate bundle") \
            from error


class Providers:
    """One Prometheus client per connection, reused across passes and Releases."""

    def __init__(self, kube: SecretSource) -> None:
        self.kube = kube
        self.clients: dict[Connection, Prometheus] = {}

    async def _secret(self, namespace: str, ref: SecretKeyRef | None) -> str | None:
        if ref is None:
            return None
        secret = await self.kube.get("v1", "Secret", ref.name, namespace)
        data = (secret or {}).get("data") or {}
        if ref.key not in data:
            raise Rejected(f"Secret {ref.name} with key {ref.key} not found in namespace {namespace}")
        try:
            return base64.b64decode(data[ref.key], validate=True).decode("utf-8").strip()
        except (binascii.Error, ValueError, TypeError) as error:  # UnicodeDecodeError is a ValueError
            raise Rejected(f"Secret {ref.name}, key {ref.key}, in namespace {namespace} is not UTF-8 text") \
                from error

    async def get(self, policy: RolloutPolicySpec, namespace: str) -> MetricProvider:
        prom = policy.analysis.prometheus
        tls = prom.tls
        insecure = bool(tls and tls.insecure_skip_verify)
        token_ref = prom.bearer_token_secret_ref
        ca_ref = tls.ca_secret_ref if tls else None
        token = await self._secret(namespace, token_ref)
        ca_pem = await self._secret(namespace, ca_ref)
        if token is not None and token_ref is not None:
            check_token(token, token_ref)
        if ca_pem is not None and ca_ref is not None and not insecure:
            check_ca(ca_pem, ca_ref)
        try:
            timeout = parse_duration(prom.timeout)
        except ValueError as error:
            raise Rejected(f"Prometheus timeout {prom.timeout!r} is not a duration such as 5s") from error
        connection = Connection(address=check_address(prom.address), timeout=timeout,
                                token=token, ca_pem=ca_pem, insecure=insecure)
        if connection not in self.clients:
            try:
                self.clients[connection] = Prometheus(connection)
            except (httpx.InvalidURL, ssl.SSLError, ValueError, TypeError) as error:  # checked above: a backstop
                log.info("a Prometheus client for %s could not be built: %r", connection.address, error)
                raise Rejected(f"a Prometheus client for {connection.address} could not be built from the policy "
                               "and its Secrets") from error
        return self.clients[connection]

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()

"""A web endpoint as a metric provider: one HTTP request, the number at a JSONPath in its answer.

Like Prometheus (and Flagger's providers) it answers two questions: the value now, and whether
the endpoint is reachable. No value at the path, or null, is None (no data); NaN is returned as
NaN and ±Infinity as ±inf, for the judge to tell apart. Several values, a value that is not a
number, an answer that is not JSON, a status other than 2xx, a timeout, a server certificate
that does not verify: a ProviderError, which the judge counts as a measurement Error.

The endpoint is anyone's server, so its answer is never echoed: errors name the method, the URL
without user name, password or query string, the HTTP status, the JSONPath and the JSON type found
there, never the body. Redirects are not followed (the next address could be off the allowlist),
the answer is read up to MAX_ANSWER bytes, the metric's timeout bounds the whole exchange (a server
that trickles its answer still times out), and no cookie is kept between requests: one client
serves every policy's web metrics that verify servers alike (sluice.analysis.tls).
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import logging
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from sluice.analysis import jsonpath
from sluice.analysis.addresses import redact
from sluice.analysis.prometheus import ProviderError, QueryRejected
from sluice.analysis.tls import SYSTEM, Trust, certificate_refused, untrusted

log = logging.getLogger(__name__)

MAX_ANSWER = 1024 * 1024  # bytes of an answer read; a longer one is an Error, not a value


class WebProvider(Protocol):
    async def query(self, body: str | None) -> float | None: ...
    async def is_online(self) -> bool: ...


@dataclass(frozen=True)
class Endpoint:
    """One web metric's request, with its Secrets resolved. `url` carries no user name or password."""

    url: str
    method: str
    json_path: str
    timeout: float
    headers: tuple[tuple[str, str], ...] = ()
    token: str | None = field(default=None, repr=False)  # an Endpoint in a log or traceback shows no secret
    basic: tuple[str, str] | None = field(default=None, repr=False)
    trust: Trust = SYSTEM  # which client asks it: the one that verifies servers this way

    @property
    def shown(self) -> str:
        """How messages name it: shown("GET", "http://api:8080/rate?key=k") == "GET http://api:8080/rate"."""
        return f"{self.method} {redact(self.url.split('?', 1)[0])}"


def client(transport: httpx.AsyncBaseTransport | None = None, trust: Trust = SYSTEM) -> httpx.AsyncClient:
    """A client web metrics share (one per Trust): no redirects, and a cookie jar that keeps
    nothing, so one policy's endpoint cannot hand a session to another's request."""
    refuse_all = http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return httpx.AsyncClient(follow_redirects=False, cookies=refuse_all, transport=transport, verify=trust.verify())


class Web:
    """A web metric's endpoint, asked through the shared client."""

    def __init__(self, endpoint: Endpoint, http_client: httpx.AsyncClient) -> None:
        self.endpoint = endpoint
        self.client = http_client

    def _request(self, method: str, body: str | None) -> httpx.Request:
        endpoint = self.endpoint
        # Uncompressed, so MAX_ANSWER bounds what is held, not what a small gzip expands to.
        headers = httpx.Headers({"Accept": "application/json", "Accept-Encoding": "identity"})
        headers.update(dict(endpoint.headers))  # the policy's own, case-insensitively over ours
        if body is not None and "content-type" not in headers:
            headers["Content-Type"] = "application/json"
        if endpoint.token:
            headers["Authorization"] = f"Bearer {endpoint.token}"
        content = body.encode() if body is not None else None
        return self.client.build_request(method, endpoint.url, headers=headers, content=content,
                                         timeout=endpoint.timeout)

    async def _exchange(self, request: httpx.Request) -> tuple[int, bytes]:
        """The status and at most MAX_ANSWER + 1 bytes of the answer (all of it only for a 2xx)."""
        auth = httpx.BasicAuth(*self.endpoint.basic) if self.endpoint.basic else None
        response = await self.client.send(request, auth=auth, stream=True)
        try:
            if not 200 <= response.status_code < 300:
                return response.status_code, b""
            read = bytearray()
            async for chunk in response.aiter_bytes():
                read += chunk
                if len(read) > MAX_ANSWER:
                    break
            return response.status_code, bytes(read)
        finally:
            await response.aclose()

    async def query(self, body: str | None) -> float | None:
        endpoint = self.endpoint
        where = endpoint.shown
        try:
            request = self._request(endpoint.method, body)
        except (httpx.HTTPError, httpx.InvalidURL, ValueError, TypeError) as error:  # headers httpx refuses
            raise QueryRejected(f"the request to {where} cannot be sent: its headers or body are not valid HTTP") \
                from error
        try:
            async with asyncio.timeout(endpoint.timeout):
                status, answer = await self._exchange(request)
        except (TimeoutError, httpx.TimeoutException) as error:
            raise ProviderError(f"{where} timed out after {endpoint.timeout:g}s") from error
        except httpx.HTTPError as error:
            if certificate_refused(error):
                raise ProviderError(untrusted(where, "the metric's web.tls.caSecretRef")) from error
            # A connection refused is our own system's sentence; a protocol error may quote the
            # server's bytes, so only its kind is logged above debug.
            if isinstance(error, httpx.ConnectError):
                log.info("%s is unreachable: %s", where, redact(str(error)))
            else:
                log.info("%s is unreachable: %s (details at debug level)", where, type(error).__name__)
                log.debug("%s is unreachable: %r", where, redact(str(error))[:500])
            raise ProviderError(f"{where} is unreachable ({type(error).__name__}; see the operator log)") from error
        if not 200 <= status < 300:
            phrase = httpx.codes.get_reason_phrase(status)  # our table, not the server's words
            moved = " (redirects are not followed)" if 300 <= status < 400 else ""
            log.info("%s answered HTTP %s", where, status)
            raise ProviderError(f"{where} answered HTTP {status}{f' {phrase}' if phrase else ''}{moved}")
        if len(answer) > MAX_ANSWER:
            raise ProviderError(f"{where} answered more than {MAX_ANSWER // 1024} KiB; the limit keeps the "
                                "operator's memory bounded")
        try:
            document = json.loads(answer)
        except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
            log.debug("%s answered: %r", where, answer[:500])
            raise ProviderError(f"{where} answered HTTP {status} with a body that is not JSON") from error
        try:
            found = jsonpath.find(endpoint.json_path, document)
        except jsonpath.PathError as error:
            raise QueryRejected(str(error)) from error
        if found.problem:
            log.debug("%s answered: %r", where, answer[:500])
            raise ProviderError(f"{where}: {found.problem}")
        return found.value

    async def is_online(self) -> bool:
        """Whether the endpoint answers HTTP at all (a HEAD: any status will do, nothing is judged)."""
        try:
            async with asyncio.timeout(self.endpoint.timeout):
                status, _ = await self._exchange(self._request("HEAD", None))
        except (TimeoutError, httpx.HTTPError, httpx.InvalidURL, ValueError):
            return False
        return status > 0

"""Prometheus as a metric provider, over async httpx so the operator's event loop never blocks.

Like Flagger's providers it answers two questions: the value of a query now, and whether the
server is reachable. An empty vector is None (no data), never zero; NaN is returned as NaN and
±Inf as ±Inf, for the judge to tell apart (±Inf is data, NaN is not).

What Prometheus says is never echoed: the address may be anyone's server, and status, events and
the operator's log are read by people the answer must not reach. Errors carry fixed sentences
naming at most the HTTP status, an errorType from a known set and the policy's address without
its user name and password; the answer's own text is logged at debug level only.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from sluice.analysis.addresses import redact
from sluice.analysis.tls import SYSTEM, Trust, certificate_refused, untrusted

log = logging.getLogger(__name__)

MAX_QUERY = 16 * 1024  # characters of PromQL, once rendered; longer is refused before it is sent
_ERROR_TYPES = {"bad_data", "execution", "timeout", "canceled", "internal", "unavailable", "not_found"}


class ProviderError(Exception):
    """The provider could not give a value: unreachable, timed out, a server error, or an answer
    that depends on the data (HTTP 422, several series). A measurement Error, counted toward
    consecutiveErrorLimit."""


class QueryRejected(ProviderError):
    """The provider refused the query itself (HTTP 400: PromQL that does not parse, or a query too
    long to send): input to fix, not a passing fault."""


class MetricProvider(Protocol):
    async def query(self, promql: str) -> float | None: ...
    async def query_range(self, promql: str, seconds: float, step: float) -> list[float]: ...
    async def is_online(self) -> bool: ...


@dataclass(frozen=True)
class Connection:
    address: str
    timeout: float
    token: str | None = field(default=None, repr=False)  # a Connection in a log or traceback shows no secret
    trust: Trust = SYSTEM


class Prometheus:
    """One connection's HTTP client. Replaced credentials retire it: it closes once the requests
    it is serving are done, and a pass still holding it sends its last queries on a client of
    their own, so no request fails because a token was rotated."""

    def __init__(self, connection: Connection, transport: httpx.AsyncBaseTransport | None = None) -> None:
        headers = {"Authorization": f"Bearer {connection.token}"} if connection.token else {}
        self.connection = connection
        self.address = connection.address.rstrip("/")
        self.shown = redact(self.address)
        # A user name and password in the address become Basic auth, so that no URL httpx logs or
        # puts in an exception carries them.
        url = httpx.URL(self.address)
        auth = httpx.BasicAuth(url.username, url.password) if url.userinfo else None
        # No redirects: an allowed server must not send the query (or the operator) anywhere else.
        self.settings: dict[str, Any] = dict(
            base_url=url.copy_with(username=None, password=None) if url.userinfo else url, auth=auth,
            timeout=connection.timeout, headers=headers, verify=connection.trust.verify(), transport=transport,
            follow_redirects=False)
        self.client = httpx.AsyncClient(**self.settings)
        self.in_flight = 0
        self.retired = False

    async def close(self) -> None:
        await self.client.aclose()

    async def retire(self) -> None:
        """Close now, or when the last request in flight is done."""
        self.retired = True
        if self.in_flight == 0:
            await self.client.aclose()

    async def _send(self, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
        if self.client.is_closed:  # retired between two queries of one pass
            async with httpx.AsyncClient(**self.settings) as once:
                return await once.get(path, params=params)
        self.in_flight += 1
        try:
            return await self.client.get(path, params=params)
        finally:
            self.in_flight -= 1
            if self.retired and self.in_flight == 0:
                await self.client.aclose()

    async def _get(self, path: str, params: dict[str, Any]) -> Any:
        query = str(params.get("query", ""))
        if len(query) > MAX_QUERY:
            raise QueryRejected(f"the query is {len(query)} characters long once rendered; the limit is {MAX_QUERY}")
        where = f"Prometheus at {self.shown}"
        try:
            response = await self._send(path, params)
        except httpx.TimeoutException as error:
            raise ProviderError(f"{where} timed out") from error
        except httpx.HTTPError as error:
            if certificate_refused(error):
                raise ProviderError(untrusted(where, "tls.caSecretRef")) from error
            # A connection refused or a name not found is our own system's sentence; a protocol
            # error may quote the server's bytes, so only its kind is logged above debug.
            if isinstance(error, httpx.ConnectError):
                log.info("%s is unreachable: %s", where, redact(str(error)))
            else:
                log.info("%s is unreachable: %s (details at debug level)", where, type(error).__name__)
                log.debug("%s is unreachable: %r", where, redact(str(error))[:500])
            raise ProviderError(f"{where} is unreachable ({type(error).__name__}; see the operator log)") from error
        except httpx.InvalidURL as error:  # a request httpx cannot build from the query: bad input
            raise QueryRejected(f"the query cannot be sent to {where}: it is not a valid request") from error
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {}
        error_type = body.get("errorType")
        named = f", errorType {error_type}" if error_type in _ERROR_TYPES else ""
        if response.status_code != 200 or body.get("status") != "success":
            log.info("%s answered HTTP %s%s to %r", where, response.status_code, named, query[:500])
            log.debug("%s answered: %r", where, str(body.get("error") or response.text)[:500])
        if response.status_code == 400:
            raise QueryRejected(f"{where} refused the query as invalid (HTTP 400{named}); "
                                f"check its PromQL (Prometheus' own words are logged at debug level)")
        if response.status_code == 422:
            raise ProviderError(f"{where} could not execute the query (HTTP 422{named}); "
                                f"Prometheus' own words are logged at debug level")
        if response.status_code != 200 or body.get("status") != "success" or not isinstance(body.get("data"), dict):
            phrase = httpx.codes.get_reason_phrase(response.status_code)  # our table, not the server's words
            raise ProviderError(f"{where} answered HTTP {response.status_code}{f' {phrase}' if phrase else ''}"
                                f"{named} without a result")
        return body["data"]

    async def query(self, promql: str) -> float | None:
        data = await self._get("/api/v1/query", {"query": promql})
        kind, result = data.get("resultType"), data.get("result")
        try:
            if kind == "scalar":
                return _number(result[1])
            if kind != "vector":
                raise QueryRejected(f"the query gives a {kind if kind in ('matrix', 'string') else 'result'}, "
                                    f"not an instant vector or scalar")
            if not result:
                return None
            if len(result) > 1:
                raise ProviderError(f"the query gave {len(result)} series, not one; aggregate it (sum, avg, max)")
            return _number(result[0]["value"][1])
        except (TypeError, KeyError, IndexError, ValueError) as error:
            log.info("Prometheus at %s gave an unreadable answer to %r", self.shown, promql[:500])
            log.debug("Prometheus at %s answered: %r", self.shown, str(data)[:500])
            raise ProviderError(f"Prometheus at {self.shown} gave an answer that is not a number") from error

    async def query_range(self, promql: str, seconds: float, step: float) -> list[float]:
        end = time.time()
        data = await self._get("/api/v1/query_range",
                               {"query": promql, "start": end - seconds, "end": end, "step": step})
        values: list[float] = []
        try:
            for series in data.get("result") or []:
                for _, text in series.get("values") or []:
                    number = _number(text)
                    if not math.isnan(number):
                        values.append(number)
        except (TypeError, AttributeError, ValueError) as error:
            log.info("Prometheus at %s gave an unreadable range answer to %r", self.shown, promql[:500])
            raise ProviderError(f"Prometheus at {self.shown} gave an answer that is not a number") from error
        return values

    async def is_online(self) -> bool:
        try:
            response = await self._send("/-/ready")
        except httpx.HTTPError:
            return False
        return response.status_code == 200


def _number(text: str) -> float:
    """A sample value as Prometheus writes it: _number("+Inf") == inf, _number("NaN") is NaN."""
    return float(text)

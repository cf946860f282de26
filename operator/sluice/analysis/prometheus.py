"""Prometheus as a metric provider, over async httpx so the operator's event loop never blocks.

Like Flagger's providers it answers two questions: the value of a query now, and whether the
server is reachable. An empty vector or NaN is None (no data), never zero.
"""

from __future__ import annotations

import math
import ssl
from dataclasses import dataclass
from typing import Any, Protocol

import httpx


class ProviderError(Exception):
    """The provider could not give a value: unreachable, timed out, or a server error."""


class QueryRejected(ProviderError):
    """The provider refused the query itself (bad PromQL): input to fix, not a passing fault."""


class MetricProvider(Protocol):
    async def query(self, promql: str) -> float | None: ...
    async def query_range(self, promql: str, seconds: float, step: float) -> list[float]: ...
    async def is_online(self) -> bool: ...


@dataclass(frozen=True)
class Connection:
    address: str
    timeout: float
    token: str | None = None
    ca_pem: str | None = None
    insecure: bool = False


class Prometheus:
    def __init__(self, connection: Connection, transport: httpx.AsyncBaseTransport | None = None) -> None:
        headers = {"Authorization": f"Bearer {connection.token}"} if connection.token else {}
        verify: ssl.SSLContext | bool = not connection.insecure
        if connection.ca_pem and not connection.insecure:
            verify = ssl.create_default_context(cadata=connection.ca_pem)
        self.client = httpx.AsyncClient(
            base_url=connection.address.rstrip("/"), timeout=connection.timeout, headers=headers,
            verify=verify, transport=transport,
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def _get(self, path: str, params: dict[str, Any]) -> Any:
        try:
            response = await self.client.get(path, params=params)
        except httpx.TimeoutException as error:
            raise ProviderError(f"Prometheus at {self.client.base_url} timed out") from error
        except httpx.HTTPError as error:
            raise ProviderError(f"Prometheus at {self.client.base_url} is unreachable: {error}") from error
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code in (400, 422):
            raise QueryRejected(f"Prometheus rejected the query: {body.get('error', response.text[:200])}")
        if response.status_code != 200 or body.get("status") != "success":
            raise ProviderError(f"Prometheus answered {response.status_code}: {body.get('error', response.text[:200])}")
        return body["data"]

    async def query(self, promql: str) -> float | None:
        data = await self._get("/api/v1/query", {"query": promql})
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar":
            return _number(result[1])
        if kind != "vector":
            raise QueryRejected(f"the query gives a {kind}, not an instant vector or scalar")
        if not result:
            return None
        if len(result) > 1:
            raise QueryRejected(f"the query gives {len(result)} series; aggregate it to one (sum, avg, max)")
        return _number(result[0]["value"][1])

    async def query_range(self, promql: str, seconds: float, step: float) -> list[float]:
        import time

        end = time.time()
        data = await self._get("/api/v1/query_range",
                               {"query": promql, "start": end - seconds, "end": end, "step": step})
        values: list[float] = []
        for series in data.get("result", []):
            for _, text in series.get("values", []):
                number = _number(text)
                if number is not None:
                    values.append(number)
        return values

    async def is_online(self) -> bool:
        try:
            response = await self.client.get("/-/ready")
        except httpx.HTTPError:
            return False
        return response.status_code == 200


def _number(text: str) -> float | None:
    value = float(text)
    return None if math.isnan(value) or math.isinf(value) else value

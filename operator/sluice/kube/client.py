"""Kubernetes access for the operator and the CLI: the official client, run in threads.

The operator's event loop must never block, so every call here is a coroutine that hands
the synchronous client call to a worker thread of the client's own, sized executor (not the
event loop's default pool, which other work shares). Every request has a connect and a read
timeout, so a half-open connection to the API server costs one call a few seconds, never a
frozen Release.

A `fence` guards every write: the operator passes its leader elector's check, which raises
`NotLeader` once this replica may no longer act. It is checked in the worker thread right
before the request is sent, so a call that waited in the executor's queue past the lease's
renew deadline is not sent.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from kubernetes import config, dynamic
from kubernetes.client import ApiClient, ApiException, Configuration
from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

from sluice import FIELD_MANAGER, metrics

Body = dict[str, Any]
P = ParamSpec("P")
T = TypeVar("T")
log = logging.getLogger(__name__)


def load_configuration(kubeconfig: str | None = None, context: str | None = None) -> Configuration:
    configuration = Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=configuration)
    return configuration


CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0  # the slowest honest answer is a large list; a watch is kopf's, not ours
WORKERS = 16  # calls in flight at once; the connection pool is sized to match


class Conflict(Exception):
    """The object changed since it was read (HTTP 409): read again and retry."""


class NotLeader(Exception):
    """This replica does not hold the leader lease (any more): it must not write."""


class _TimedApiClient(ApiClient):
    """An ApiClient whose every request has a timeout unless the caller gives one."""

    timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT)

    def call_api(self, method: Any, url: Any, header_params: Any = None, body: Any = None,
                 post_params: Any = None, _request_timeout: Any = None) -> Any:
        return super().call_api(method, url, header_params, body, post_params, _request_timeout or self.timeout)


class Kube:
    def __init__(self, configuration: Configuration | None = None, workers: int = WORKERS,
                 fence: Callable[[], None] | None = None,
                 timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT)) -> None:
        configuration = configuration or load_configuration()
        configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize or 0, workers)
        api = _TimedApiClient(configuration)
        api.timeout = timeout
        self.dynamic = dynamic.DynamicClient(api)  # type: ignore[no-untyped-call]
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube")
        self.fence = fence or (lambda: None)
        self.written: Callable[[Any], None] = lambda body: None  # told every object a write returns

    def watch_writes(self, written: Callable[[Any], None]) -> None:
        """Hand every object a write returns to `written` (a watch cache stores it at once)."""
        self.written = written

    async def _call(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(function, *args, **kwargs))

    async def _write(self, function: Callable[[], T], dry_run: bool = False) -> T:
        """A write, sent only if the fence still allows it when a worker picks it up; what the
        API server answers is handed to `written` (not for a dry run: nothing was stored)."""
        def fenced() -> T:
            try:
                self.fence()
            except NotLeader:
                metrics.WRITES.labels("fenced").inc()
                raise
            metrics.WRITES.labels("sent").inc()
            metrics.LAST_WRITE.set_to_current_time()
            return function()
        result = await self._call(fenced)
        if not dry_run:
            self.written(result)
        return result

    def _resource(self, api_version: str, kind: str) -> Any:
        return self.dynamic.resources.get(api_version=api_version, kind=kind)

    # Synchronous calls, for the CLI and for the threads below.
    def get_sync(self, api_version: str, kind: str, name: str, namespace: str) -> Body | None:
        metrics.API_READS.labels(kind, "get").inc()
        try:
            found: Body = self._resource(api_version, kind).get(name=name, namespace=namespace).to_dict()
        except (NotFoundError, ResourceNotFoundError):
            return None
        return found

    def list_sync(self, api_version: str, kind: str, namespace: str | None = None,
                  label_selector: str | None = None) -> list[Body]:
        metrics.API_READS.labels(kind, "list").inc()
        try:
            result = self._resource(api_version, kind).get(namespace=namespace, label_selector=label_selector)
        except ResourceNotFoundError:
            return []
        return [item.to_dict() for item in result.items]

    def patch_status_sync(self, api_version: str, kind: str, name: str, namespace: str, patch: Body) -> Body:
        resource = self._resource(api_version, kind).status
        result: Body = resource.patch(body=patch, name=name, namespace=namespace,
                                      content_type="application/merge-patch+json").to_dict()
        return result

    # Coroutines for the operator.
    async def get(self, api_version: str, kind: str, name: str, namespace: str) -> Body | None:
        return await self._call(self.get_sync, api_version, kind, name, namespace)

    async def list(self, api_version: str, kind: str, namespace: str | None = None,
                   label_selector: str | None = None) -> list[Body]:
        return await self._call(self.list_sync, api_version, kind, namespace, label_selector)

    async def apply(self, body: Body) -> Body:
        """Server-side apply as field manager `sluice`, taking over fields others changed."""
        def call() -> Body:
            resource = self._resource(body["apiVersion"], body["kind"])
            meta = body["metadata"]
            result: Body = resource.server_side_apply(
                body=body, name=meta["name"], namespace=meta.get("namespace"),
                field_manager=FIELD_MANAGER, force_conflicts=True,
            ).to_dict()
            return result
        return await self._write(call)

    async def create(self, body: Body) -> Body:
        """Create an object that must not exist yet: 409 (AlreadyExists) if another writer got
        there first, so two Releases racing for one name never both take it."""
        def call() -> Body:
            resource = self._resource(body["apiVersion"], body["kind"])
            result: Body = resource.create(body=body, namespace=body["metadata"].get("namespace"),
                                           field_manager=FIELD_MANAGER).to_dict()
            return result
        return await self._write(call)

    async def write(self, body: Body, exists: bool) -> Body:
        """Server-side apply of an object Sluice owns, or its creation when it was not there."""
        return await (self.apply(body) if exists else self.create(body))

    async def merge_patch(self, api_version: str, kind: str, name: str, namespace: str, patch: Body) -> Body:
        def call() -> Body:
            result: Body = self._resource(api_version, kind).patch(
                body=patch, name=name, namespace=namespace, content_type="application/merge-patch+json",
                field_manager=FIELD_MANAGER,
            ).to_dict()
            return result
        return await self._write(call)

    async def dry_run_create(self, body: Body) -> Body:
        """The object as the API server would create it (defaults, admission, strict field
        validation) without creating it; ApiException with the server's refusal otherwise."""
        def call() -> Body:
            resource = self._resource(body["apiVersion"], body["kind"])
            result: Body = resource.create(
                body=body, namespace=body["metadata"].get("namespace"), dry_run="All",
                field_manager=FIELD_MANAGER, query_params=[("fieldValidation", "Strict")],
            ).to_dict()
            return result
        return await self._write(call, dry_run=True)

    async def json_patch(self, api_version: str, kind: str, name: str, namespace: str,
                         operations: Sequence[Body]) -> Body:
        """A JSON patch (RFC 6902): `replace` swaps a whole subtree, fields others added included."""
        def call() -> Body:
            result: Body = self._resource(api_version, kind).patch(
                body=list(operations), name=name, namespace=namespace, content_type="application/json-patch+json",
                field_manager=FIELD_MANAGER,
            ).to_dict()
            return result
        return await self._write(call)

    async def replace(self, body: Body, status: bool = False) -> Body:
        """Replace (the object, or its status subresource) with the body's resourceVersion as a
        precondition; Conflict if the object moved on since it was read."""
        def call() -> Body:
            meta = body["metadata"]
            resource = self._resource(body["apiVersion"], body["kind"])
            try:
                result: Body = (resource.status if status else resource).replace(
                    body=body, name=meta["name"], namespace=meta.get("namespace"), field_manager=FIELD_MANAGER,
                ).to_dict()
            except ApiException as error:
                if error.status == 409:
                    raise Conflict(str(meta["name"])) from error
                raise
            return result
        return await self._write(call)

    async def delete(self, api_version: str, kind: str, name: str, namespace: str) -> None:
        """Delete an object and, in the background, what it owns (a Job's pods); gone already is fine."""
        def call() -> Body:
            try:
                result: Body = self._resource(api_version, kind).delete(
                    name=name, namespace=namespace, propagation_policy="Background").to_dict()
            except NotFoundError:
                return {}
            return result
        await self._write(call, dry_run=True)  # nothing to store: the watch reports the deletion

    async def event(self, regarding: Body, type_: str, reason: str, message: str, name: str | None = None) -> bool:
        """A core/v1 Event on `regarding`, as `kubectl describe` shows them. With `name`, posting
        it twice creates it once (AlreadyExists is success). True once it exists."""
        meta = regarding["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        metadata: Body = {"name": name} if name else {"generateName": f"{meta['name']}."}
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {**metadata, "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": regarding["apiVersion"], "kind": regarding["kind"],
                               "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
            "type": type_, "reason": reason, "message": message[:1024],
            "firstTimestamp": now[:19] + "Z", "lastTimestamp": now[:19] + "Z", "count": 1,
            "source": {"component": "sluice"}, "reportingComponent": "sluice", "reportingInstance": "sluice",
        }
        try:
            events = self._resource("v1", "Event")
            await self._write(functools.partial(events.create, body=body, namespace=meta["namespace"]))
        except ApiException as error:
            if error.status == 409:
                return True
            log.warning("could not post event %s on %s: %s", reason, meta["name"], error.reason)
            return False
        return True

"""Watch caches: what a reconcile pass reads, kept current by watches instead of read afresh.

A pass used to read the Release, its policy, two Deployments and their pods, three Services, a
route and a Secret from the API server every time: about a dozen calls, most of them answering
"nothing changed". Here one informer per kind lists once, then follows a watch from that list's
resourceVersion (with bookmarks; an expired one lists again), and a pass reads the copy in memory.

- Server-side label selectors: only Sluice's Deployments, pods, Services and EndpointSlices, and
  only the Secrets marked for analysis, ever reach this process. HTTPRoutes, Releases and
  RolloutPolicies are watched whole (they carry no label of ours).
- The client's watch blocks, so each informer runs in a thread of its own and hands what it
  reads to the event loop, where the store is changed and subscribers are told: the store is
  only ever touched on the loop, so it needs no lock.
- What Sluice writes is stored as the API server answered it (write-through), so the next pass
  sees its own write at once, and the watch event that follows, with the same resourceVersion,
  wakes nobody.
- managedFields, and for pods everything but metadata and status, are dropped: a pass never
  reads them, and at a few thousand pods they are most of the memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kubernetes.client import ApiClient, ApiException, Configuration
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError
from kubernetes.watch.watch import iter_resp_lines

from sluice import API_VERSION, metrics
from sluice.kube.objects import CREDENTIAL_LABEL, NAME, RELEASE, TRACK, VERSIONED

Body = dict[str, Any]
Change = Callable[[str, Body | None, Body | None, bool], None]  # (kind, before, after, own write)
log = logging.getLogger(__name__)

WATCH_SECONDS = 240  # the API server ends each watch after this; it is re-opened from where it stood
PAGE = 500  # objects per page of the initial list
RETRY = (1.0, 30.0)  # after a failed list or watch: first wait, cap (doubling)
ABSENT_RECHECK = 60.0  # a kind the API server does not serve (no Gateway API) is looked for again


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    selector: str | None = None  # server-side label selector
    index: str | None = None  # a label whose value lists are kept by (namespace, value)
    keep: tuple[str, ...] = ()  # top-level fields kept (all when empty; a kind not served lists empty)
    store: str | None = None  # a second store of one kind, under another selector (read by asking for its labels)

    @property
    def key(self) -> str:
        """The store's name: the kind, or the kind and the name of its second store."""
        return f"{self.kind}/{self.store}" if self.store else self.kind


def selected(labels: dict[str, str], selector: str | None) -> bool:
    """Whether labels match an equality selector: "a=b,c" (c: the label exists)."""
    for term in (selector or "").split(","):
        term = term.strip()
        if not term:
            continue
        key, _, value = term.partition("=")
        if key not in labels or ("=" in term and labels[key] != value):
            return False
    return True


def newer(before: Body | None, after: Body) -> bool:
    """Whether `after` is a later state than `before`. resourceVersions are opaque to clients,
    but every API server backed by etcd gives integers that grow; where either is not one, the
    later arrival wins, as it does in client-go's informers."""
    if before is None:
        return True
    old, new = before["metadata"].get("resourceVersion"), after["metadata"].get("resourceVersion")
    try:
        return int(new) > int(old)
    except (TypeError, ValueError):
        return bool(new != old)


class Store:
    """One kind's objects by (namespace, name), and by (namespace, index label value)."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self.objects: dict[tuple[str, str], Body] = {}
        self.indexed: dict[tuple[str, str], set[str]] = {}

    def _value(self, body: Body) -> str | None:
        if self.kind.index is None:
            return None
        return ((body["metadata"].get("labels") or {}).get(self.kind.index))

    def put(self, body: Body) -> Body | None:
        meta = body["metadata"]
        key = (meta.get("namespace") or "", meta["name"])
        before = self.objects.get(key)
        if before is not None:
            self._unindex(key, before)
        self.objects[key] = body
        value = self._value(body)
        if value is not None:
            self.indexed.setdefault((key[0], value), set()).add(key[1])
        return before

    def remove(self, namespace: str, name: str) -> Body | None:
        before = self.objects.pop((namespace, name), None)
        if before is not None:
            self._unindex((namespace, name), before)
        return before

    def _unindex(self, key: tuple[str, str], body: Body) -> None:
        value = self._value(body)
        if value is None:
            return
        names = self.indexed.get((key[0], value))
        if names is not None:
            names.discard(key[1])
            if not names:
                del self.indexed[(key[0], value)]

    def list(self, namespace: str | None, selector: str | None) -> list[Body]:
        wanted = dict(term.split("=", 1) for term in (selector or "").split(",") if "=" in term)
        if namespace is not None and self.kind.index in wanted:
            names = self.indexed.get((namespace, wanted[self.kind.index]), set())
            candidates: Iterator[Body] = (self.objects[(namespace, n)] for n in sorted(names))
        else:
            candidates = (body for (ns, _), body in sorted(self.objects.items()) if namespace in (None, ns))
        return [body for body in candidates if selected(body["metadata"].get("labels") or {}, selector)]


def trimmed(kind: Kind, body: Body) -> Body:
    meta = dict(body.get("metadata") or {})
    meta.pop("managedFields", None)
    kept = {key: value for key, value in body.items() if not kind.keep or key in kind.keep}
    kept["metadata"] = meta
    kept.setdefault("apiVersion", kind.api_version)
    kept.setdefault("kind", kind.kind)
    return kept


class Informer:
    """List, then watch, one kind in one scope (a namespace, or all of them), in a thread."""

    def __init__(self, cache: Cache, kind: Kind, namespace: str | None) -> None:
        self.cache, self.kind, self.namespace = cache, kind, namespace
        self.synced = asyncio.Event()
        self.absent = False
        self.stopping = threading.Event()
        self.response: Any = None
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"watch {kind.key} {namespace or '*'}")

    def _path(self) -> str | None:
        try:
            resource = self.cache.discovery.resources.get(api_version=self.kind.api_version, kind=self.kind.kind)
        except ResourceNotFoundError:
            return None
        path: str = resource.path(namespace=self.namespace)
        return path

    def _get(self, path: str, query: list[tuple[str, Any]], timeout: float) -> Any:
        """A GET whose answer is streamed, not parsed into models (a urllib3 response)."""
        api = self.cache.api
        request = api.param_serialize("GET", path, query_params=query, header_params={"Accept": "application/json"},
                                      auth_settings=["BearerToken"])
        answer = api.call_api(*request, _request_timeout=(5.0, timeout))
        if not 200 <= answer.status <= 299:
            answer.read()  # type: ignore[no-untyped-call]
            api.response_deserialize(answer, {})  # raises the ApiException with the server's status
        return answer.response

    def _list(self, path: str) -> tuple[list[Body], str]:
        items: list[Body] = []
        token: str | None = None
        while True:
            query: list[tuple[str, Any]] = [("limit", PAGE)]
            if self.kind.selector:
                query.append(("labelSelector", self.kind.selector))
            if token:
                query.append(("continue", token))
            answer = json.loads(self._get(path, query, 60.0).data)
            metrics.API_READS.labels(self.kind.kind, "list").inc()
            items += [trimmed(self.kind, item) for item in answer.get("items") or []]
            token = (answer.get("metadata") or {}).get("continue")
            if not token:
                return items, answer["metadata"]["resourceVersion"]

    def _run(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            try:
                path = self._path()
                if path is None:
                    self.absent = True
                    self.cache.post(self._replace, [])
                    self.stopping.wait(ABSENT_RECHECK)
                    self.cache.discovery.resources.invalidate_cache()
                    continue
                self.absent = False
                items, version = self._list(path)
                self.cache.post(self._replace, items)
                failures = 0
                self._watch(path, version)
            except Exception as error:  # a failed list or watch is tried again, never fatal
                if self.stopping.is_set():
                    return
                failures += 1
                wait = min(RETRY[1], RETRY[0] * 2 ** min(failures - 1, 10))
                reason = getattr(error, "reason", None) or error
                log.warning("watch of %s %s failed (%s); listing again in %.0fs", self.kind.kind,
                            f"in {self.namespace}" if self.namespace else "in all namespaces", reason, wait)
                self.stopping.wait(wait)

    def _watch(self, path: str, version: str) -> None:
        """Follow the watch until it ends; a fresh list is needed only when the API server says
        the resourceVersion is too old (410): a watch that simply ended resumes where it was."""
        while not self.stopping.is_set():
            query: list[tuple[str, Any]] = [("watch", "true"), ("resourceVersion", version),
                                            ("allowWatchBookmarks", "true"), ("timeoutSeconds", WATCH_SECONDS)]
            if self.kind.selector:
                query.append(("labelSelector", self.kind.selector))
            self.response = self._get(path, query, WATCH_SECONDS + 30.0)
            metrics.API_READS.labels(self.kind.kind, "watch").inc()
            try:
                for line in iter_resp_lines(self.response):  # type: ignore[no-untyped-call]
                    event = json.loads(line)
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            return  # expired: list again
                        raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                    version = obj.get("metadata", {}).get("resourceVersion") or version
                    if kind == "BOOKMARK":
                        continue
                    self.cache.post(self._event, kind, trimmed(self.kind, obj))
            finally:
                with contextlib.suppress(Exception):
                    self.response.release_conn()

    # On the event loop:
    def _replace(self, items: list[Body]) -> None:
        store = self.cache.stores[self.kind.key]
        seen = set()
        for body in items:
            meta = body["metadata"]
            seen.add((meta.get("namespace") or "", meta["name"]))
            self.cache.apply(self.kind.key, body)
        for key in [k for k in store.objects if k not in seen and self.covers(k[0])]:
            self.cache.drop(self.kind.key, *key)
        self.synced.set()

    def _event(self, kind: str, body: Body) -> None:
        meta = body["metadata"]
        if kind == "DELETED":
            self.cache.drop(self.kind.key, meta.get("namespace") or "", meta["name"])
        else:
            self.cache.apply(self.kind.key, body)

    def covers(self, namespace: str) -> bool:
        return self.namespace is None or self.namespace == namespace

    def stop(self) -> None:
        self.stopping.set()
        with contextlib.suppress(Exception):
            if self.response is not None:
                self.response.shutdown()


class Cache:
    """The stores of every kind a pass reads, in the namespaces the operator serves (all when
    `namespaces` is empty). `get` and `list` answer like sluice.kube.client.Kube's, from memory;
    for a namespace outside the watched ones (a `requires` gate naming another) they ask `fallback`."""

    def __init__(self, configuration: Configuration, kinds: list[Kind], namespaces: list[str] | None = None,
                 fallback: Any = None) -> None:
        configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize or 0,
                                                    len(kinds) * max(1, len(namespaces or [])) + 2)
        self.api = ApiClient(configuration)
        self.discovery = DynamicClient(self.api)  # type: ignore[no-untyped-call]
        self.kinds = {kind.key: kind for kind in kinds}
        self.stores = {kind.key: Store(kind) for kind in kinds}
        self.namespaces = list(namespaces or [])
        self.fallback = fallback
        self.subscribers: list[Change] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        scopes: list[str | None] = list(self.namespaces) or [None]
        self.informers = [Informer(self, kind, namespace) for kind in kinds for namespace in scopes]

    # Lifecycle.
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        for informer in self.informers:
            informer.thread.start()

    async def synced(self) -> None:
        """Until every informer has listed once (a kind not served counts as listed, empty)."""
        await asyncio.gather(*(informer.synced.wait() for informer in self.informers))

    def stop(self) -> None:
        for informer in self.informers:
            informer.stop()

    def subscribe(self, change: Change) -> None:
        self.subscribers.append(change)

    def post(self, function: Callable[..., None], *args: Any) -> None:
        """From an informer's thread: run `function` on the event loop."""
        assert self.loop is not None
        with contextlib.suppress(RuntimeError):  # the loop closed during shutdown
            self.loop.call_soon_threadsafe(function, *args)

    # The store, changed on the event loop only.
    def apply(self, kind: str, body: Body) -> None:
        store = self.stores[kind]
        meta = body["metadata"]
        before = store.objects.get((meta.get("namespace") or "", meta["name"]))
        if before is not None and not newer(before, body):
            return  # what Sluice wrote is already here, or this is older than what is
        store.put(body)
        self._tell(kind, before, body)

    def drop(self, kind: str, namespace: str, name: str) -> None:
        before = self.stores[kind].remove(namespace, name)
        if before is not None:
            self._tell(kind, before, None)

    def written(self, body: Any) -> None:
        """An object as the API server answered a write of it: stored now, and subscribers told
        it is the operator's own write (the writer's Release needs no wake-up; others that depend
        on it may); the watch event that follows finds it already here and tells nobody."""
        if not isinstance(body, dict) or body.get("kind") not in self.stores:
            return
        kind = self.kinds[body["kind"]]
        namespace = (body.get("metadata") or {}).get("namespace") or ""
        if not self._covers(namespace) or not selected((body["metadata"].get("labels") or {}), kind.selector):
            return
        store = self.stores[kind.kind]
        before = store.objects.get((namespace, body["metadata"]["name"]))
        if newer(before, body):
            after = trimmed(kind, body)
            store.put(after)
            self._tell(kind.kind, before, after, own=True)

    def _tell(self, kind: str, before: Body | None, after: Body | None, own: bool = False) -> None:
        for change in self.subscribers:
            try:
                change(kind, before, after, own)
            except Exception:  # a subscriber's bug must not stop the cache
                log.exception("a cache subscriber failed on a %s change", kind)

    def _covers(self, namespace: str) -> bool:
        return not self.namespaces or namespace in self.namespaces

    # Reads, as sluice.kube.client.Kube answers them.
    def keys(self, kind: str) -> list[tuple[str, str]]:
        return sorted(self.stores[kind].objects)

    def peek(self, kind: str, name: str, namespace: str) -> Body | None:
        found: Body | None = self.stores[kind].objects.get((namespace, name))
        return found

    async def get(self, api_version: str, kind: str, name: str, namespace: str) -> Body | None:
        if kind not in self.stores or not self._covers(namespace):
            asked: Body | None = await self._ask("get", api_version, kind, name, namespace)
            return asked
        return self.peek(kind, name, namespace)

    async def list(self, api_version: str, kind: str, namespace: str | None = None,
                   label_selector: str | None = None) -> list[Body]:
        if kind not in self.stores or (namespace is not None and not self._covers(namespace)):
            return list(await self._ask("list", api_version, kind, namespace, label_selector))
        return self.stores[self._store_for(kind, label_selector)].list(namespace, label_selector)

    def _store_for(self, kind: str, selector: str | None) -> str:
        """The store a list asks: a second store of the kind when the selector asks for every
        label its informer selects on (a list of Secrets by sluice.dev/versioned), else the kind's."""
        asked = {term.split("=", 1)[0].strip() for term in (selector or "").split(",") if term.strip()}
        for key, known in self.kinds.items():
            if known.kind == kind and known.store and known.selector and \
                    {term.split("=", 1)[0].strip() for term in known.selector.split(",")} <= asked:
                return key
        return kind

    async def _ask(self, verb: str, *args: Any) -> Any:
        if self.fallback is None:
            return None if verb == "get" else []
        metrics.API_READS.labels(args[1], verb).inc()
        return await getattr(self.fallback, verb)(*args)

    def sizes(self) -> dict[str, int]:
        return {kind: len(store.objects) for kind, store in self.stores.items()}


def kinds() -> list[Kind]:
    """What a reconcile pass reads, each selected on the server as narrowly as its labels allow."""
    return [
        Kind(API_VERSION, "Release"),
        Kind(API_VERSION, "RolloutPolicy"),
        Kind("apps/v1", "Deployment", selector=RELEASE, index=RELEASE),
        Kind("v1", "Pod", selector=f"{TRACK},{NAME}", index=NAME, keep=("metadata", "status")),
        Kind("v1", "Service", selector=RELEASE, index=RELEASE),
        Kind("discovery.k8s.io/v1", "EndpointSlice", selector=RELEASE, index="kubernetes.io/service-name"),
        Kind("gateway.networking.k8s.io/v1", "HTTPRoute"),  # absent without the Gateway API CRDs
        Kind("v1", "Secret", selector=f"{CREDENTIAL_LABEL}=true"),
        Kind("batch/v1", "Job", selector=RELEASE, index=RELEASE, keep=("metadata", "status")),  # hooks, job metrics
        # ConfigMaps and Secrets whose versions roll out and back with the code, and their copies
        Kind("v1", "ConfigMap", selector=VERSIONED),
        Kind("v1", "Secret", selector=VERSIONED, store="versioned"),
    ]

"""The watch caches' store (sluice.kube.cache) and which Releases a change wakes (sluice.wakeups).

The informers themselves (list, watch, bookmarks, relist on 410) run against the real API server
in tests/e2e/test_cache.py; here, what they feed: the store, write-through, and the wake rules.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sluice.kube.cache import Cache, Kind, Store, newer, selected
from sluice.wakeups import woken

Body = dict[str, Any]
POD = Kind("v1", "Pod", selector="sluice.dev/track,app.kubernetes.io/name", index="app.kubernetes.io/name")


def obj(kind: str, name: str, rv: str, namespace: str = "shop", labels: dict[str, str] | None = None,
        **rest: Any) -> Body:
    return {"apiVersion": "v1", "kind": kind,
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": rv, "labels": labels or {},
                         **rest.pop("meta", {})}, **rest}


def pod(name: str, rv: str, release: str = "checkout", track: str = "canary", ready: bool = True,
        template: str = "abc", deleting: bool = False) -> Body:
    meta: Body = {"annotations": {"sluice.dev/template-hash": template}}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-28T00:00:00Z"
    return obj("Pod", name, rv, labels={"app.kubernetes.io/name": release, "sluice.dev/track": track}, meta=meta,
               status={"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]})


@pytest.mark.parametrize(("labels", "selector", "expected"), [
    pytest.param({"a": "b"}, "a=b", True, id="equal"),
    pytest.param({"a": "c"}, "a=b", False, id="different value"),
    pytest.param({"a": "c"}, "a", True, id="exists"),
    pytest.param({}, "a", False, id="missing"),
    pytest.param({"a": "b", "c": "d"}, "a=b,c", True, id="both terms"),
    pytest.param({"a": "b"}, "a=b,c", False, id="one term missing"),
    pytest.param({}, None, True, id="no selector"),
])
def test_label_selectors(labels: dict[str, str], selector: str | None, expected: bool) -> None:
    assert selected(labels, selector) is expected


@pytest.mark.parametrize(("before", "after", "expected"), [
    pytest.param(None, "5", True, id="nothing stored"),
    pytest.param("5", "6", True, id="later"),
    pytest.param("9", "10", True, id="numerically later, not by string order"),
    pytest.param("6", "5", False, id="an older event after a write-through"),
    pytest.param("6", "6", False, id="the write's own event"),
    pytest.param("x", "y", True, id="not integers: the later arrival wins"),
])
def test_which_state_is_newer(before: str | None, after: str, expected: bool) -> None:
    old = None if before is None else obj("Pod", "p", before)
    assert newer(old, obj("Pod", "p", after)) is expected


def test_the_store_lists_by_its_index_and_by_selector() -> None:
    store = Store(POD)
    store.put(pod("a-1", "1"))
    store.put(pod("a-2", "2", track="stable"))
    store.put(pod("b-1", "3", release="other"))
    chosen = store.list("shop", "app.kubernetes.io/name=checkout,sluice.dev/track=canary")
    names = [p["metadata"]["name"] for p in chosen]
    assert names == ["a-1"]
    assert [p["metadata"]["name"] for p in store.list(None, "sluice.dev/track=stable")] == ["a-2"]
    store.put(pod("a-1", "4", release="other"))  # relabelled: it leaves the old index entry
    assert store.list("shop", "app.kubernetes.io/name=checkout") == [store.objects[("shop", "a-2")]]
    store.remove("shop", "a-2")
    assert store.list("shop", "app.kubernetes.io/name=checkout") == []
    assert store.indexed.get(("shop", "checkout")) is None


def test_a_write_is_stored_at_once_and_its_watch_event_tells_nobody() -> None:
    async def scenario() -> None:
        cache = Cache.__new__(Cache)
        cache.kinds = {"Pod": POD}
        cache.stores = {"Pod": Store(POD)}
        cache.namespaces = []
        told: list[tuple[str, bool]] = []
        cache.subscribers = [lambda kind, before, after, own: told.append((after["metadata"]["resourceVersion"], own))]
        cache.apply("Pod", pod("a-1", "5", ready=False))
        cache.written({**pod("a-1", "7"), "kind": "Pod"})
        cache.apply("Pod", pod("a-1", "6", ready=False))  # an older event arriving late: ignored
        cache.apply("Pod", pod("a-1", "7"))  # the write's own event
        assert told == [("5", False), ("7", True)]
        assert (await cache.get("v1", "Pod", "a-1", "shop"))["metadata"]["resourceVersion"] == "7"
        cache.written({**pod("x", "8", track=""), "metadata": {"name": "x", "namespace": "shop",
                                                               "resourceVersion": "8", "labels": {}}})
        assert await cache.get("v1", "Pod", "x", "shop") is None, "outside the selector: never cached"
    asyncio.run(scenario())


RELEASES = [
    {"metadata": {"name": "checkout", "namespace": "shop"},
     "spec": {"policyRef": {"name": "careful"}, "trafficRouting": {"gatewayAPI": {"httpRoute": "web"}}}},
    {"metadata": {"name": "cart", "namespace": "shop"}, "spec": {"policyRef": {"name": "fast"}}},
    {"metadata": {"name": "checkout", "namespace": "prod"}, "spec": {"policyRef": {"name": "careful"}}},
]


@pytest.mark.parametrize(("kind", "before", "after", "own", "expected"), [
    pytest.param("Pod", None, pod("p", "1"), False, [("shop", "checkout")], id="a pod appears"),
    pytest.param("Pod", pod("p", "1", ready=False), pod("p", "2"), False, [("shop", "checkout")],
                 id="a pod becomes Ready"),
    pytest.param("Pod", pod("p", "1"), pod("p", "2"), False, [], id="a pod changes nothing the planner reads"),
    pytest.param("Pod", pod("p", "1"), pod("p", "2", deleting=True), False, [("shop", "checkout")],
                 id="a pod is being deleted"),
    pytest.param("Pod", pod("p", "1"), None, False, [("shop", "checkout")], id="a pod goes"),
    pytest.param("RolloutPolicy", None, obj("RolloutPolicy", "careful", "1"), False, [("shop", "checkout")],
                 id="a policy wakes the Releases of its namespace that use it"),
    pytest.param("HTTPRoute", obj("HTTPRoute", "web", "1", spec={"a": 1}), obj("HTTPRoute", "web", "2", spec={"a": 2}),
                 False, [("shop", "checkout")], id="a route wakes the Releases that route through it"),
    pytest.param("Secret", None, obj("Secret", "token", "1"), False, [("shop", "checkout"), ("shop", "cart")],
                 id="an analysis Secret wakes the Releases with a policy in its namespace"),
    pytest.param("Deployment", obj("Deployment", "checkout", "1", labels={"sluice.dev/release": "checkout"}),
                 obj("Deployment", "checkout", "2", labels={"sluice.dev/release": "checkout"},
                     status={"readyReplicas": 1}), False, [("shop", "checkout")], id="a Deployment's status"),
    pytest.param("Deployment", None, obj("Deployment", "checkout", "2", labels={"sluice.dev/release": "checkout"}),
                 True, [], id="Sluice's own write wakes nobody"),
    pytest.param("Release", obj("Release", "checkout", "1", spec={"v": 1}),
                 obj("Release", "checkout", "2", spec={"v": 2}), False, [("shop", "checkout"), ("prod", "checkout")],
                 id="a Release, and the one its gate holds"),
    pytest.param("Release", obj("Release", "checkout", "1"),
                 obj("Release", "checkout", "2", status={"phase": "Succeeded"}), True, [("prod", "checkout")],
                 id="its own status write wakes only the gated Release"),
])
def test_which_releases_a_change_wakes(kind: str, before: Body | None, after: Body | None, own: bool,
                                       expected: list[tuple[str, str]]) -> None:
    assert list(woken(kind, before, after, own, RELEASES).releases) == expected


def test_a_deleted_release_ends_its_loop() -> None:
    wake = woken("Release", obj("Release", "cart", "1"), None, False, RELEASES)
    assert wake.gone == ("shop", "cart")

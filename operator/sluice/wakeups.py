"""Which Releases a change in the watch caches concerns: the only ones whose loops it wakes.

A pass costs nothing to read now, but it still plans, and at a thousand Releases a pod that
merely changed its resourceVersion must not cost a thousand plans. So a change wakes a Release
only when it alters something that Release's planner reads: a pod appearing, going, becoming
Ready or not, or changing template; its own Deployments and Services in anything but their
resourceVersion; its policy, route or an analysis Secret of its namespace; a Release whose
`requires` gate it is. A change Sluice wrote itself wakes no loop of the Release that wrote it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sluice.kube.config import uses
from sluice.kube.objects import NAME, RELEASE, TEMPLATE_HASH, VERSIONED

Body = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class Wake:
    releases: tuple[Key, ...] = ()
    gone: Key | None = None  # a Release deleted: its loop ends


def _meta(body: Body | None) -> Body:
    return (body or {}).get("metadata") or {}


def _label(body: Body | None, label: str) -> str | None:
    return (_meta(body).get("labels") or {}).get(label)


def _namespace(before: Body | None, after: Body | None) -> str:
    return str(_meta(after or before).get("namespace") or "")


def _without_version(body: Body | None) -> Body | None:
    if body is None:
        return None
    meta = {k: v for k, v in _meta(body).items() if k not in ("resourceVersion", "managedFields")}
    return {**body, "metadata": meta}


def pod_view(pod: Body | None) -> tuple[Any, ...] | None:
    """What a planner reads of a pod: that it exists, its template, Ready, being deleted."""
    if pod is None:
        return None
    meta = _meta(pod)
    conditions = ((pod.get("status") or {}).get("conditions")) or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return ((meta.get("annotations") or {}).get(TEMPLATE_HASH), ready, bool(meta.get("deletionTimestamp")),
            (meta.get("labels") or {}).get("sluice.dev/track"))


def endpoints_view(piece: Body | None) -> tuple[Any, ...] | None:
    if piece is None:
        return None
    return tuple(sorted(((e.get("targetRef") or {}).get("name", ""), bool((e.get("conditions") or {}).get("ready")))
                        for e in piece.get("endpoints") or []))


def _using(releases: Iterable[Body], namespace: str, wants: Any) -> tuple[Key, ...]:
    return tuple((namespace, _meta(r)["name"]) for r in releases
                 if _meta(r).get("namespace") == namespace and wants(r.get("spec") or {}))


def woken(kind: str, before: Body | None, after: Body | None, own: bool, releases: Iterable[Body]) -> Wake:
    """The Releases to wake for one change of one cached object (`releases`: every Release cached)."""
    namespace = _namespace(before, after)
    if kind == "Release":
        name = _meta(after or before)["name"]
        # a Release gated on this one (`requires` names a namespace; the Release has the same name)
        gated = tuple((_meta(r).get("namespace") or "", name) for r in releases
                      if _meta(r).get("name") == name and _meta(r).get("namespace") != namespace
                      and (r.get("spec") or {}).get("policyRef"))
        if after is None:
            return Wake(gated, gone=(namespace, name))
        if own or _without_version(before) == _without_version(after):
            return Wake(gated if own else ())
        return Wake(((namespace, name), *gated))
    if kind == "RolloutPolicy":
        policy = _meta(after or before)["name"]
        return Wake(_using(releases, namespace, lambda s: (s.get("policyRef") or {}).get("name") == policy))
    if kind == "HTTPRoute":
        route = _meta(after or before)["name"]
        if _without_version(before) == _without_version(after):
            return Wake()
        return Wake(_using(releases, namespace, lambda s: (((s.get("trafficRouting") or {}).get("gatewayAPI") or {})
                                                            .get("httpRoute")) == route))
    if kind == "Secret":
        return Wake(_using(releases, namespace, lambda s: bool(s.get("policyRef"))))
    if kind in ("ConfigMap", "Secret/versioned"):
        # a versioned original changed: a new version of every Release whose pod template uses it
        name = _meta(after or before)["name"]
        if _label(after or before, VERSIONED) != "true" or _without_version(before) == _without_version(after):
            return Wake()
        return Wake(_using(releases, namespace, lambda s: name in uses(s.get("template") or {})))
    if kind == "Pod":
        owner = _label(after or before, NAME)
        if owner is None or pod_view(before) == pod_view(after):
            return Wake()
        return Wake(((namespace, owner),))
    if kind == "EndpointSlice":
        owner = _label(after or before, RELEASE)
        if owner is None or endpoints_view(before) == endpoints_view(after):
            return Wake()
        return Wake(((namespace, owner),))
    # Deployments and Services: the Release whose label they carry
    owner = _label(after or before, RELEASE)
    if owner is None or own or _without_version(before) == _without_version(after):
        return Wake()
    return Wake(((namespace, owner),))

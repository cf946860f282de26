"""The objects Sluice owns, built from a Release: pure functions, so they are unit-tested.

Names: Deployment and Service <name> are the stable track, <name>-canary the candidate.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from sluice import API_VERSION
from sluice.api.models import ReleaseSpec

NAME = "app.kubernetes.io/name"
VERSION = "app.kubernetes.io/version"
MANAGED_BY = "app.kubernetes.io/managed-by"
TRACK = "sluice.dev/track"
RELEASE = "sluice.dev/release"
TEMPLATE_HASH = "sluice.dev/template-hash"

Body = dict[str, Any]


def template_hash(spec: ReleaseSpec) -> str:
    """Names a pod template and version: any change to either is a new candidate."""
    content = {"version": spec.version, "template": spec.template.model_dump(by_alias=True, exclude_none=True)}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:10]


def template_hash_of(obj: Body, in_template: bool = False) -> str | None:
    """The sluice.dev/template-hash annotation of an object, or of its pod template."""
    metadata = obj["spec"]["template"]["metadata"] if in_template else obj["metadata"]
    return (metadata.get("annotations") or {}).get(TEMPLATE_HASH)


def deployment_name(release: str, track: str) -> str:
    return release if track == "stable" else f"{release}-{track}"


def pod_template(release: str, spec: ReleaseSpec, track: str, digest: str) -> Body:
    """The Release's pod template with Sluice's labels; the hash annotation lets a rollback find
    this template again in the Deployment's ReplicaSet history."""
    template = copy.deepcopy(spec.template.model_dump(by_alias=True, exclude_none=True))
    metadata = template.setdefault("metadata", {})
    metadata["labels"] = {**(metadata.get("labels") or {}), NAME: release, VERSION: spec.version, TRACK: track}
    metadata["annotations"] = {**(metadata.get("annotations") or {}), TEMPLATE_HASH: digest}
    return template


def restored_template(replica_set: Body, track: str) -> Body:
    """A ReplicaSet's pod template made fit for a Deployment again (no pod-template-hash)."""
    template: Body = copy.deepcopy(replica_set["spec"]["template"])
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    labels.pop("pod-template-hash", None)
    labels[TRACK] = track
    return template


def owner(release: Body) -> Body:
    meta = release["metadata"]
    return {"apiVersion": API_VERSION, "kind": "Release", "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}


def deployment(release: Body, track: str, replicas: int, template: Body, digest: str,
               surge: int | str = "25%", unavailable: int | str = 0) -> Body:
    name = release["metadata"]["name"]
    version = template["metadata"]["labels"][VERSION]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(name, track),
            "namespace": release["metadata"]["namespace"],
            "labels": {NAME: name, VERSION: version, TRACK: track, RELEASE: name, MANAGED_BY: "sluice"},
            "annotations": {TEMPLATE_HASH: digest},
            "ownerReferences": [owner(release)],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {NAME: name, TRACK: track}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
            "template": template,
        },
    }


def service(release: Body, spec: ReleaseSpec, name: str, selector: dict[str, str]) -> Body:
    release_name = release["metadata"]["name"]
    target = spec.service.target_port if spec.service.target_port is not None else spec.service.port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": release["metadata"]["namespace"],
            "labels": {NAME: release_name, RELEASE: release_name, MANAGED_BY: "sluice"},
            "ownerReferences": [owner(release)],
        },
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": spec.service.port, "targetPort": target, "protocol": "TCP"}],
        },
    }


def services(release: Body, spec: ReleaseSpec, selects_canary: bool, active: str = "stable",
             preview: bool = False, preview_track: str = "canary") -> list[Body]:
    """<name> selects the active track (both tracks under a replica-ratio split while a canary
    runs); <name>-canary, and <name>-preview for blue-green, select the candidate's pods."""
    name = release["metadata"]["name"]
    main = {NAME: name} if selects_canary else {NAME: name, TRACK: active}
    canary = {NAME: name, TRACK: "canary"}
    owned = [service(release, spec, name, main), service(release, spec, f"{name}-canary", canary)]
    if preview:
        owned.append(service(release, spec, f"{name}-preview", {NAME: name, TRACK: preview_track}))
    return owned


def route_weights(route: Body, release: str, weight: int) -> tuple[Body | None, str | None]:
    """The HTTPRoute with canary weight `weight` on every rule that routes to <release>:
    (new route, None), or (None, None) when nothing changes, or (None, problem)."""
    canary_name = f"{release}-canary"
    updated = copy.deepcopy(route)
    touched = False
    for rule in updated.get("spec", {}).get("rules", []) or []:
        refs = rule.get("backendRefs") or []
        stable = next((r for r in refs if r.get("name") == release and r.get("kind", "Service") == "Service"), None)
        if stable is None:
            continue
        touched = True
        canary = next((r for r in refs if r.get("name") == canary_name), None)
        if canary is None:
            canary = {k: v for k, v in stable.items() if k in ("group", "kind", "port", "namespace")}
            canary["name"] = canary_name
            refs.append(canary)
        stable["weight"] = 100 - weight
        canary["weight"] = weight
        rule["backendRefs"] = refs
    if not touched:
        return None, f"HTTPRoute {route['metadata']['name']} has no backendRef to Service {release}"
    return (None, None) if updated == route else (updated, None)


def route_weight(route: Body, release: str) -> int | None:
    """The canary weight an HTTPRoute carries now, or None if it has no canary backend."""
    for rule in route.get("spec", {}).get("rules", []) or []:
        for ref in rule.get("backendRefs") or []:
            if ref.get("name") == f"{release}-canary":
                return int(ref.get("weight", 1))
    return None

"""What a rollout changed, as the short list a release engineer writes in a handover: computed
when a version is promoted or rolled back, and kept in status.history[].changes, because after a
promotion the previous template is gone from status (status.stableSpec is the new one).

Pure: two pod templates as written in the Release (no server defaults), no I/O.
"""

from __future__ import annotations

import re
from typing import Any

from sluice.api.models import StableSpec

MAX_CHANGES = 20  # lines kept per rollout; status carries ten rollouts of history
MAX_VALUE = 40  # characters of an env value or annotation shown before it is cut
FIRST = "no earlier stable template to compare with"
VERSIONED_COPY = re.compile(r"(.+)-([0-9a-f]{10})")

Body = dict[str, Any]


def between(before: StableSpec | None, version: str, template: Body) -> list[str]:
    """The changes from the stable version `before` to `version` running `template`.

    Worked examples. One container, a new image, a new variable and a bigger CPU limit:

        before = StableSpec(version="1.2.0", template={"spec": {"containers": [
            {"name": "app", "image": "shop:1.2.0", "resources": {"limits": {"cpu": "500m"}}}]}})
        between(before, "1.3.0", {"spec": {"containers": [
            {"name": "app", "image": "shop:1.3.0", "env": [{"name": "FEATURE_X", "value": "on"}],
             "resources": {"limits": {"cpu": "1"}}}]}})
        == ["version 1.2.0 -> 1.3.0", "image app: shop:1.2.0 -> shop:1.3.0", "env FEATURE_X: added",
            "resources app: cpu limit 500m -> 1"]

    A versioned ConfigMap (one Sluice copies by content) edited: "config ConfigMap shop-config: new
    content (3f2a9c1b0d -> 9bc1d4e7aa)". A ConfigMap renamed in the template: the version line, then
    "env LEVEL: from ConfigMap shop-v1 key level -> from ConfigMap shop-v2 key level" and
    "config ConfigMap shop-v1 -> shop-v2". A second container gets "container proxy: added (image
    envoy:1.28)"; a change this module has no words for is still named:
    "container app: readinessProbe changed", "pod: nodeSelector changed".

    Nothing recorded before (a first version, or a status older than stableSpec):
    between(None, "1.0.0", t) == ["version 1.0.0: no earlier stable template to compare with"].
    The list is never empty, so an empty history entry means "not recorded", never "no change".
    """
    if before is None:
        return [f"version {version}: {FIRST}"]
    lines = [f"version {before.version} -> {version}"] if before.version != version else []
    old, new = _dict(before.template), _dict(template)
    old_spec, new_spec = _dict(old.get("spec")), _dict(new.get("spec"))
    several = max(len(_containers(old_spec)), len(_containers(new_spec))) > 1
    for kind, key in (("container", "containers"), ("init container", "initContainers")):
        lines += _containers_changed(kind, _by_name(_dicts(old_spec.get(key))), _by_name(_dicts(new_spec.get(key))),
                                     several)
    lines += _config(old_spec, new_spec)
    lines += _metadata(old, new)
    rest = sorted(k for k in set(old_spec) | set(new_spec) if k not in ("containers", "initContainers")
                  and _unnamed(old_spec.get(k)) != _unnamed(new_spec.get(k)))
    if rest:
        lines.append(f"pod: {', '.join(rest)} changed")
    if not lines:
        lines.append(f"version {version}: same pod template as before")
    if len(lines) > MAX_CHANGES:
        lines = [*lines[:MAX_CHANGES - 1], f"... and {len(lines) - MAX_CHANGES + 1} more"]
    return lines


def _dict(value: Any) -> Body:
    """A mapping where one is expected; anything else (input no schema checked) as empty."""
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[Body]:
    """The mappings of a list where a list of them is expected; anything else as none."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE - 3] + "..."


def _metadata(old: Body, new: Body) -> list[str]:
    lines = []
    for key, singular in (("labels", "label"), ("annotations", "annotation")):
        before = _dict(_dict(old.get("metadata")).get(key))
        after = _dict(_dict(new.get("metadata")).get(key))
        for name in sorted(set(before) | set(after)):
            if name not in after:
                lines.append(f"{singular} {name}: removed")
            elif name not in before:
                lines.append(f"{singular} {name}: added ({_short(after[name])})")
            elif before[name] != after[name]:
                lines.append(f"{singular} {name}: {_short(before[name])} -> {_short(after[name])}")
    return lines


def _containers(spec: Body) -> list[Body]:
    return [*_dicts(spec.get("initContainers")), *_dicts(spec.get("containers"))]


def _by_name(items: list[Body]) -> dict[str, Body]:
    return {str(item.get("name")): item for item in items}


def _containers_changed(kind: str, before: dict[str, Body], after: dict[str, Body], several: bool) -> list[str]:
    lines = []
    for name in [*before, *(n for n in after if n not in before)]:
        label = name if kind == "container" else f"{name} (init)"
        if name not in after:
            lines.append(f"{kind} {name}: removed")
            continue
        if name not in before:
            lines.append(f"{kind} {name}: added (image {after[name].get('image')})")
            continue
        old, new = before[name], after[name]
        if old.get("image") != new.get("image"):
            lines.append(f"image {label}: {old.get('image')} -> {new.get('image')}")
        lines += _env(label if several else "", _dicts(old.get("env")), _dicts(new.get("env")))
        lines += _resources(label, _dict(old.get("resources")), _dict(new.get("resources")))
        rest = sorted(k for k in set(old) | set(new) if k not in ("name", "image", "env", "resources")
                      and _unnamed(old.get(k)) != _unnamed(new.get(k)))
        if rest:
            lines.append(f"{kind} {name}: {', '.join(rest)} changed")
    return lines


def _env_value(variable: Body) -> str:
    source = _dict(variable.get("valueFrom"))
    if not source:
        return _short(variable.get("value", ""))
    for key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
        if key in source:
            ref = _dict(source[key])
            return f"from {kind} {ref.get('name')} key {ref.get('key')}"
    field = _dict(source.get("fieldRef")).get("fieldPath") or _dict(source.get("resourceFieldRef")).get("resource")
    return f"from {field}" if field else "from elsewhere"


def _env(container: str, before: list[Body], after: list[Body]) -> list[str]:
    """"env FEATURE_X: added", "env LOG_LEVEL: info -> debug"; with several containers the
    container is named: "env FEATURE_X in app: added"."""
    where = f" in {container}" if container else ""
    old, new = _by_name(before), _by_name(after)
    lines = []
    for name in [*old, *(n for n in new if n not in old)]:
        if name not in new:
            lines.append(f"env {name}{where}: removed")
        elif name not in old:
            lines.append(f"env {name}{where}: added")
        elif _env_value(old[name]) != _env_value(new[name]):
            lines.append(f"env {name}{where}: {_env_value(old[name])} -> {_env_value(new[name])}")
        elif old[name] != new[name]:
            lines.append(f"env {name}{where}: changed")
    return lines


def _resources(container: str, before: Body, after: Body) -> list[str]:
    """"resources app: cpu limit 500m -> 1", "resources app: memory request none -> 256Mi"."""
    lines = []
    for key, word in (("requests", "request"), ("limits", "limit")):
        old, new = _dict(before.get(key)), _dict(after.get(key))
        for resource in sorted(set(old) | set(new)):
            if old.get(resource) != new.get(resource):
                lines.append(f"resources {container}: {resource} {word} {old.get(resource, 'none')} -> "
                             f"{new.get(resource, 'none')}")
    return lines


def config_refs(spec: Body) -> dict[str, set[str]]:
    """The ConfigMaps and Secrets a pod spec reads: volumes (projected too), envFrom and env.
    config_refs({"volumes": [{"name": "c", "configMap": {"name": "shop-v2"}}]})
    == {"ConfigMap": {"shop-v2"}, "Secret": set()}."""
    refs: dict[str, set[str]] = {"ConfigMap": set(), "Secret": set()}
    def add(kind: str, ref: Any, key: str = "name") -> None:
        name = _dict(ref).get(key)
        if name:
            refs[kind].add(str(name))

    for volume in _dicts(spec.get("volumes")):
        for source in [volume, *_dicts(_dict(volume.get("projected")).get("sources"))]:
            add("ConfigMap", source.get("configMap"))
            add("Secret", source.get("secret"), "secretName")
            add("Secret", source.get("secret"))
    for container in _containers(spec):
        for source in _dicts(container.get("envFrom")):
            add("ConfigMap", source.get("configMapRef"))
            add("Secret", source.get("secretRef"))
        for variable in _dicts(container.get("env")):
            add("ConfigMap", _dict(variable.get("valueFrom")).get("configMapKeyRef"))
            add("Secret", _dict(variable.get("valueFrom")).get("secretKeyRef"))
    return refs


CONFIG_SOURCES = ("configMap", "secret", "configMapRef", "secretRef")


def _unnamed(value: Any) -> Any:
    """`value` without the names of the ConfigMaps and Secrets it references: a config line says
    those, so a volume or envFrom that changed only its ConfigMap is not listed twice."""
    if isinstance(value, list):
        return [_unnamed(item) for item in value]
    if not isinstance(value, dict):
        return value
    return {k: ({n: v for n, v in item.items() if n not in ("name", "secretName")}
                if k in CONFIG_SOURCES and isinstance(item, dict) else _unnamed(item))
            for k, item in value.items()}


def copy_of(name: str) -> str | None:
    """The original of a versioned config copy, which Sluice names `<original>-<10 hex of its
    content>`: copy_of("shop-config-3f2a9c1b0d") == "shop-config"; copy_of("shop-config") is None."""
    found = VERSIONED_COPY.fullmatch(name)
    return found.group(1) if found else None


def _config(before: Body, after: Body) -> list[str]:
    """Configuration: "config ConfigMap shop-v1 -> shop-v2" when one name replaced another, else
    "config Secret db-creds: added" / "...: removed". Versioned config (a content-named copy
    Sluice made) says what changed: "config ConfigMap shop-config: new content (3f2a9c1b0d ->
    9bc1d4e7aa)"."""
    old, new = config_refs(before), config_refs(after)
    lines = []
    for kind in ("ConfigMap", "Secret"):
        gone, came = sorted(old[kind] - new[kind]), sorted(new[kind] - old[kind])
        for name in list(gone):
            twin = next((c for c in came if copy_of(c) is not None and copy_of(c) == copy_of(name)), None)
            if twin is not None:
                lines.append(f"config {kind} {copy_of(name)}: new content ({name[-10:]} -> {twin[-10:]})")
                gone.remove(name)
                came.remove(twin)
        if len(gone) == 1 and len(came) == 1:
            lines.append(f"config {kind} {gone[0]} -> {came[0]}")
            continue
        lines += [f"config {kind} {name}: removed" for name in gone]
        lines += [f"config {kind} {name}: added" for name in came]
    return lines

"""Config that rolls back with the code: pure functions, so they are unit-tested.

A ConfigMap or Secret labelled `sluice.dev/versioned: "true"` that a Release's pod template uses
is not used as is. Sluice copies it to an immutable, content-named copy owned by the Release
(`<name>-<digest of its data>`, labelled `sluice.dev/versioned: copy`) and rewrites the template
to use the copy. So a change of the config is a new version of the pod template, rolled out (and
judged) like a code change, and a rollback restores the old pods with the old config: the stable
template names the old copy, which is still there. Copies no template of the Release uses any
more are deleted.

Only a labelled object is versioned: whoever labels it may edit it, so the copy gives nobody a
read they did not have (a Release's author can mount any Secret of the namespace in its pods
anyway), and the operator reads no other Secret.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sluice.kube.objects import MANAGED_BY, RELEASE, VERSIONED, owner

Body = dict[str, Any]
CONFIG_OF = "sluice.dev/config-of"  # on a copy: the original's name
Ref = tuple[str, str]  # (kind, name): ("ConfigMap", "checkout-config")


def _containers(spec: Body) -> list[Body]:
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def references(template: Body) -> set[Ref]:
    """Every ConfigMap and Secret a pod template reads: volumes (projected sources too), envFrom
    and env valueFrom, of containers and init containers."""
    spec = template.get("spec") or {}
    found: set[Ref] = set()
    for volume in spec.get("volumes") or []:
        if (volume.get("configMap") or {}).get("name"):
            found.add(("ConfigMap", volume["configMap"]["name"]))
        if (volume.get("secret") or {}).get("secretName"):
            found.add(("Secret", volume["secret"]["secretName"]))
        for source in (volume.get("projected") or {}).get("sources") or []:
            if (source.get("configMap") or {}).get("name"):
                found.add(("ConfigMap", source["configMap"]["name"]))
            if (source.get("secret") or {}).get("name"):
                found.add(("Secret", source["secret"]["name"]))
    for container in _containers(spec):
        for source in container.get("envFrom") or []:
            if (source.get("configMapRef") or {}).get("name"):
                found.add(("ConfigMap", source["configMapRef"]["name"]))
            if (source.get("secretRef") or {}).get("name"):
                found.add(("Secret", source["secretRef"]["name"]))
        for variable in container.get("env") or []:
            value_from = variable.get("valueFrom") or {}
            if (value_from.get("configMapKeyRef") or {}).get("name"):
                found.add(("ConfigMap", value_from["configMapKeyRef"]["name"]))
            if (value_from.get("secretKeyRef") or {}).get("name"):
                found.add(("Secret", value_from["secretKeyRef"]["name"]))
    return found


def uses(template: Body) -> set[str]:
    """The names of the ConfigMaps and Secrets a pod template reads (for waking a Release)."""
    return {name for _, name in references(template)}


def rewrite(template: Body, names: dict[Ref, str]) -> Body:
    """The template with each reference in `names` pointing at its new name instead."""
    out = copy.deepcopy(template)
    spec = out.get("spec") or {}

    def swap(holder: Body | None, key: str, kind: str) -> None:
        if holder and holder.get(key) and (kind, holder[key]) in names:
            holder[key] = names[kind, holder[key]]
    for volume in spec.get("volumes") or []:
        swap(volume.get("configMap"), "name", "ConfigMap")
        swap(volume.get("secret"), "secretName", "Secret")
        for source in (volume.get("projected") or {}).get("sources") or []:
            swap(source.get("configMap"), "name", "ConfigMap")
            swap(source.get("secret"), "name", "Secret")
    for container in _containers(spec):
        for source in container.get("envFrom") or []:
            swap(source.get("configMapRef"), "name", "ConfigMap")
            swap(source.get("secretRef"), "name", "Secret")
        for variable in container.get("env") or []:
            value_from = variable.get("valueFrom") or {}
            swap(value_from.get("configMapKeyRef"), "name", "ConfigMap")
            swap(value_from.get("secretKeyRef"), "name", "Secret")
    return out


def digest(original: Body) -> str:
    """Names a version of a ConfigMap's or Secret's content: its data (and type), nothing else."""
    content = {key: original.get(key) for key in ("data", "binaryData", "type") if original.get(key) is not None}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:10]


def copy_name(name: str, content: str) -> str:
    return f"{name[:242]}-{content}"


@dataclass(frozen=True)
class Copy:
    kind: str
    original: str
    name: str
    body: Body | None  # what to create; None: it exists already


def make_copy(kind: str, original: Body, release: Body, name: str) -> Body:
    """An immutable copy of `original`, owned by the Release."""
    meta = original["metadata"]
    body: Body = {
        "apiVersion": "v1", "kind": kind,
        "metadata": {"name": name, "namespace": meta["namespace"],
                     "labels": {VERSIONED: "copy", RELEASE: release["metadata"]["name"], CONFIG_OF: meta["name"],
                                MANAGED_BY: "sluice"},
                     "ownerReferences": [owner(release)]},
        "immutable": True,
    }
    for key in ("data", "binaryData", "type"):
        if original.get(key) is not None:
            body[key] = original[key]
    return body


def versioned(template: Body, release: Body, found: dict[str, list[Body]], kept: Body | None
              ) -> tuple[Body, list[Copy]]:
    """The pod template to run, each labelled ConfigMap and Secret it uses swapped for a copy of
    its current content, and the copies that needs. `found` holds the namespace's objects labelled
    sluice.dev/versioned (originals and copies) by kind. An original that is gone keeps the copy
    `kept` (the stable version's template) already uses, so deleting it starts no rollout."""
    mine = release["metadata"]["name"]
    names: dict[Ref, str] = {}
    copies: list[Copy] = []
    in_use = references(kept or {})
    for kind, name in sorted(references(template)):
        objects = found.get(kind, [])
        labels = [(body, (body["metadata"].get("labels") or {})) for body in objects]
        original = next((body for body, label in labels if body["metadata"]["name"] == name
                         and label.get(VERSIONED) == "true"), None)
        existing = {body["metadata"]["name"]: body for body, label in labels
                    if label.get(VERSIONED) == "copy" and label.get(CONFIG_OF) == name and label.get(RELEASE) == mine}
        if original is None:
            previous = next((copied for copied in existing if (kind, copied) in in_use), None)
            if previous is not None:
                names[kind, name] = previous
            continue
        target = copy_name(name, digest(original))
        names[kind, name] = target
        copies.append(Copy(kind, name, target,
                           None if target in existing else make_copy(kind, original, release, target)))
    return (rewrite(template, names) if names else template), copies


def unused(release: Body, found: dict[str, list[Body]], templates: list[Body]) -> list[Ref]:
    """This Release's copies that none of `templates` (the desired, the stable, the live
    Deployments') uses: to delete."""
    mine = release["metadata"]["name"]
    used = set().union(*(references(template) for template in templates)) if templates else set()
    return [(kind, body["metadata"]["name"]) for kind, bodies in found.items() for body in bodies
            if (body["metadata"].get("labels") or {}).get(VERSIONED) == "copy"
            and (body["metadata"].get("labels") or {}).get(RELEASE) == mine
            and (kind, body["metadata"]["name"]) not in used]

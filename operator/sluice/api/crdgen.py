"""Generates the CustomResourceDefinitions in crds/ from the pydantic models.

pydantic emits JSON Schema; the API server wants a *structural* OpenAPI v3 schema: no $ref,
no anyOf for optional fields, every object typed. This module does that translation, so the
models stay the one place where the API is written down. `python -m sluice.api.crdgen crds/`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from sluice import GROUP, VERSION
from sluice.api.models import PolicyStatus, ReleaseSpec, ReleaseStatus, RolloutPolicySpec

Schema = dict[str, Any]

# Longest Release name for which "<name>-canary" and "<name>-preview" are valid Service names.
MAX_RELEASE_NAME = 63 - len("-preview")

_DROP = {"title"}


def _resolve(node: Any, defs: dict[str, Schema]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = dict(defs[node["$ref"].rsplit("/", 1)[-1]])
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return _resolve({**target, **extra}, defs)
    return {key: _resolve(value, defs) for key, value in node.items() if key not in _DROP}


def _structural(node: Schema) -> Schema:
    """One schema node made structural; recurses into properties, items and maps."""
    node = dict(node)
    while "anyOf" in node:  # an optional IntOrString is an anyOf (null) around an anyOf (int, string)
        variants = [v for v in node.pop("anyOf") if v.get("type") != "null"]
        types = {v.get("type") for v in variants}
        if types == {"integer", "string"}:
            node.setdefault("x-kubernetes-int-or-string", True)
        elif len(variants) == 1:
            node = {**variants[0], **node}
        else:
            raise ValueError(f"cannot express anyOf {variants} structurally")
    if node.get("default", "") is None:
        node.pop("default")
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), (int, float)) and not isinstance(node.get(bound), bool):
            node[limit] = node.pop(bound)  # JSON Schema 2020 form -> OpenAPI 3.0 form
            node[bound] = True
    if node.get("x-kubernetes-int-or-string"):
        node.pop("type", None)
        return node
    kind = node.get("type")
    if "properties" in node or kind == "object":
        node["type"] = "object"
        props = node.get("properties")
        if props is not None:
            node["properties"] = {name: _structural(sub) for name, sub in props.items()}
        additional = node.pop("additionalProperties", None)
        if isinstance(additional, dict):
            node["additionalProperties"] = _structural(additional)
        elif additional is True or (props is None and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["x-kubernetes-preserve-unknown-fields"] = True
    elif kind == "array":
        node["items"] = _structural(node.get("items", {"type": "string"}))
    elif "enum" in node and "type" not in node:
        node["type"] = "string"
    elif "const" in node:
        node["enum"] = [node.pop("const")]
        node.setdefault("type", "string")
    return node


def openapi(model: type[BaseModel], mode: str = "validation") -> Schema:
    """The structural schema of a model, with descriptions from its docstrings and fields."""
    raw = model.model_json_schema(by_alias=True, mode=mode)  # type: ignore[arg-type]
    defs = raw.pop("$defs", {})
    return _structural(_resolve(raw, defs))


def _crd(kind: str, plural: str, short: str, spec: Schema, status: Schema,
         columns: list[dict[str, Any]], rules: list[dict[str, str]], description: str) -> Schema:
    root: Schema = {
        "type": "object",
        "description": description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    if rules:
        root["x-kubernetes-validations"] = rules
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind, "plural": plural, "singular": kind.lower(),
                "shortNames": [short], "categories": ["sluice"],
            },
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": root},
            }],
        },
    }


def release_crd() -> Schema:
    return _crd(
        "Release", "releases", "rel",
        openapi(ReleaseSpec), openapi(ReleaseStatus, "serialization"),
        [
            {"name": "Version", "type": "string", "jsonPath": ".spec.version"},
            {"name": "Stable", "type": "string", "jsonPath": ".status.stableVersion", "priority": 1},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Weight", "type": "integer", "jsonPath": ".status.canaryWeight"},
            {"name": "Step", "type": "integer", "jsonPath": ".status.currentStep"},
            {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
        [{
            "rule": f"self.metadata.name.size() <= {MAX_RELEASE_NAME}",
            "message": f"a Release name is at most {MAX_RELEASE_NAME} characters, so that its Services "
                       "<name>-canary and <name>-preview are valid names",
        }],
        "A Release is the desired version of one application, shipped step by step by Sluice.",
    )


def policy_crd() -> Schema:
    return _crd(
        "RolloutPolicy", "rolloutpolicies", "rp",
        openapi(RolloutPolicySpec), openapi(PolicyStatus, "serialization"),
        [
            {"name": "Strategy", "type": "string", "jsonPath": ".status.message"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
        [],
        "A RolloutPolicy is a reusable, reviewed way to ship: strategy steps, analysis and failure handling.",
    )


def render() -> dict[str, str]:
    """File name -> YAML text of every CRD."""
    header = "# Generated by `make crds` from operator/sluice/api/models.py. Do not edit.\n"
    return {
        f"{GROUP}_releases.yaml": header + yaml.safe_dump(release_crd(), sort_keys=False, width=100),
        f"{GROUP}_rolloutpolicies.yaml": header + yaml.safe_dump(policy_crd(), sort_keys=False, width=100),
    }


OUTPUTS = ("crds", "charts/sluice/crds")  # kubectl apply -f crds/, and Helm's crds/ folder


def main(folders: list[str]) -> None:
    for out in folders:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in render().items():
            (folder / name).write_text(text)
            print(f"wrote {folder / name}")


if __name__ == "__main__":
    main(sys.argv[1:] or list(OUTPUTS))

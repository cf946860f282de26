"""What the `requires` gate reads in another namespace, made from the API objects read there.

One pure function, used by observe (reconcile._upstream) and by `sluice pipeline`, so the CLI
says a version has run in an environment exactly when the gate would open on it. The other
Release's status is read as text, leniently: plan.requires lets it only keep the gate shut.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from sluice.api.models import ReleaseSpec, ReleaseStatus
from sluice.kube import objects
from sluice.plan.requires import images_of
from sluice.plan.types import Declared, Upstream

Body = dict[str, Any]


def _text(body: Body, key: str) -> str | None:
    value = body.get(key)
    return value if isinstance(value, str) else None


def _declared(source: str, version: Any, template: Any) -> Declared | None:
    """The template a Release declares for `version`, named as Sluice names the template it
    writes; None when it is no valid version and template (then it declares nothing)."""
    try:
        spec = ReleaseSpec.model_validate({"version": version, "template": template})
    except ValidationError:
        return None
    dumped = spec.template.model_dump(by_alias=True, exclude_none=True)
    return Declared(source, spec.version, objects.template_hash(spec), tuple(sorted(images_of(dumped).items())))


def declared_by(release: Body) -> tuple[Declared, ...]:
    """What a Release declares: first the template of the version it promoted last, as Sluice
    wrote it (status.stableSpec: its spec may have moved on to the next version, and a template
    reading versioned config runs content-named copies, so only this one names the Deployment's
    template then), and its spec's template, Git's word."""
    found: list[Declared] = []
    try:
        stable = ReleaseStatus.model_validate(release.get("status") or {}).stable_spec
    except ValidationError:
        stable = None
    if stable is not None:
        kept = _declared("status.stableSpec", stable.version, stable.template)
        if kept:
            found.append(kept)
    spec = release.get("spec") or {}
    from_spec = _declared("spec", spec.get("version"), spec.get("template"))
    if from_spec and all(from_spec.template_hash != d.template_hash for d in found):
        found.append(from_spec)
    return tuple(found)


def upstream(namespace: str, name: str, release: Body | None, deployment: Body | None) -> Upstream:
    """The facts about Release `name` in `namespace` and its stable Deployment, as plan.requires
    reads them: upstream("staging", "checkout", None, None) == Upstream("staging", "checkout")."""
    if release is None:
        return Upstream(namespace, name)
    said = release.get("status")
    said = said if isinstance(said, dict) else {}
    told = Upstream(namespace, name, release=True, declared=declared_by(release), phase=_text(said, "phase"),
                    stable_version=_text(said, "stableVersion"), candidate_version=_text(said, "candidateVersion"))
    if deployment is None:
        return told
    meta, spec, state = deployment["metadata"], deployment.get("spec") or {}, deployment.get("status") or {}
    template = spec.get("template") or {}
    return Upstream(
        namespace, name, release=True, deployment=True,
        controlled=objects.controller_uid(deployment) == release["metadata"].get("uid"),
        version=objects.version_of(template), images=tuple(sorted(images_of(template).items())),
        replicas=spec.get("replicas", 1), updated=state.get("updatedReplicas") or 0,
        available=state.get("availableReplicas") or 0, total=state.get("replicas") or 0,
        settled=(state.get("observedGeneration") or 0) >= meta.get("generation", 0),
        template_hash=((template.get("metadata") or {}).get("annotations") or {}).get(objects.TEMPLATE_HASH),
        declared=told.declared, phase=told.phase, stable_version=told.stable_version,
        candidate_version=told.candidate_version)

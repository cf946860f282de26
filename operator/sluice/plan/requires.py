"""The environment promotion gate (`requires`): has this version really run in the other namespace?

A Release's status is no evidence: anyone allowed to patch `releases/status` there (the right
`sluice promote` needs, so often a CI robot or a whole team) can write stableVersion: X. The gate
therefore opens only on what the operator reads itself in the required namespace (the facts in
`Upstream`, gathered by observe):

- the same-named Release exists, and the Deployment <name> there is the one Sluice manages for
  it: its controller ownerReference carries that Release's uid (a look-alike Deployment
  someone created by hand, or one of another controller, proves nothing);
- that Deployment has finished rolling out, as `kubectl rollout status` means it: the
  Deployment controller has seen its latest spec, every replica (at least one) runs the current
  pod template and is available, and no pod of an older template is left. Only then are the
  images read from its template the ones its pods run;
- its pod template carries this version, and every container and init container of this
  Release's template runs there, under the same name, with the same image reference. Containers
  only the other namespace has (a debugging sidecar in staging) do not matter; a container only
  this one has was never tried there, so it closes the gate.

What is compared is the artifact, not the whole pod template. Sluice's template hash covers the
entire template (environment variables, resources, ConfigMap names, replicas of sidecars), and
environments differ in exactly those on purpose: requiring equal hashes would close the gate for
every real staging -> production pipeline. The hash that does matter is the one inside the
other namespace, the Deployment's own pod-template-hash: "every replica updated and available,
none of an older template left" is that check. An image reference is compared as written: a tag
is trusted as far as the tag is; teams that need the identical bytes pin digests
(app@sha256:...), and then the same reference is the same image.

The other Release's status is still read, but only as a further condition, never as the
evidence: the gate stays closed while that Release is itself still rolling this version out
(a post-promotion analysis may yet roll it back), so a forged status can only close the gate,
never open it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sluice.api.models import ReleaseSpec
from sluice.plan.types import Upstream

IN_FLIGHT = ("Pending", "Progressing", "Paused")


def images_of(template: Mapping[str, Any]) -> dict[str, str]:
    """Container name -> image of a pod template, init containers included:
    images_of({"spec": {"containers": [{"name": "app", "image": "app:1"}]}}) == {"app": "app:1"}."""
    spec = template.get("spec") or {}
    return {str(c.get("name")): str(c.get("image"))
            for key in ("initContainers", "containers") for c in spec.get(key) or []}


def _rollout(up: Upstream) -> str | None:
    """Why the Deployment has not finished rolling out, or None (kubectl rollout status)."""
    if not up.settled:
        return "its latest change has not been seen by the Deployment controller yet"
    if up.replicas < 1:
        return "it is scaled to zero, so nothing runs there"
    if up.updated < up.replicas or up.total > up.updated:
        return f"{up.updated} of {up.replicas} replicas run its current template ({up.total} pods in all)"
    if up.available < up.replicas:
        return f"{up.available} of {up.replicas} replicas are available"
    return None


def _why_not(version: str, wanted: Mapping[str, str], up: Upstream) -> str | None:
    name = up.name
    here = f"Deployment {name} in namespace {up.namespace}"
    if not up.release:
        return f"there is no Release {name} in namespace {up.namespace}"
    if not up.deployment:
        return f"{here} does not exist"
    if not up.controlled:
        return f"{here} is not managed by Sluice for Release {name} there"
    if up.version != version:
        return f"{here} runs {up.version or 'no version Sluice knows'}, not {version}"
    for container, image in sorted(wanted.items()):
        theirs = dict(up.images).get(container)
        if theirs is None:
            return f"{here} has no container {container}"
        if theirs != image:
            return f"{here} runs image {theirs} in container {container}, not {image}"
    rollout = _rollout(up)
    if rollout:
        return f"{here} has not finished rolling out {version}: {rollout}"
    if up.stable_version != version:
        return f"Release {name} in namespace {up.namespace} does not report {version} as its stable version"
    if up.phase in IN_FLIGHT and up.candidate_version == version:
        return f"Release {name} in namespace {up.namespace} is still rolling out {version}"
    return None


def unmet(spec: ReleaseSpec, upstream: tuple[Upstream, ...]) -> str | None:
    """Why the gate is closed, as a sentence for status, or None when every required namespace
    runs this version's images, fully rolled out, under the same-named Release."""
    wanted = images_of(spec.template.model_dump(by_alias=True, exclude_none=True))
    for up in upstream:
        why = _why_not(spec.version, wanted, up)
        if why:
            return f"{spec.version} is not running in namespace {up.namespace} yet: {why} (requires)"
    return None

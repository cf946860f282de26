"""The environment promotion gate (`requires`): has this version really run in the other namespace?

"The same version" means the same artifact, not the same pod template. Sluice's template hash
(sluice.dev/template-hash) covers the version and the entire template: environment variables,
resources, ConfigMap names, sidecars. Environments differ in exactly those on purpose, so equal
hashes across namespaces would close the gate for every real dev -> staging -> prod pipeline.
The gate compares, on what the operator reads itself in the required namespace (the facts in
`Upstream`, gathered by observe through kube.upstream):

- **this Release against the live pod template there**: the version it carries, and every
  container and init container of this Release's template, under the same name, with the same
  image reference. Containers only the other namespace has (a debugging sidecar in staging) do
  not matter; a container only this one has was never tried there, so it closes the gate;
- **the live pod template against what the other Release declares** (the template it promoted,
  status.stableSpec, as Sluice wrote it: versioned config already swapped for its content-named
  copies, and kept when its spec moves on to a newer version; or its spec's, Git's word): the
  template-hash the live template carries must name a template that Release declares for this
  version, and every image declared there must be the one the live template runs. This is where
  the template hash earns its place: it ties the running pods to a template Sluice wrote for that
  Release (and so rolled out under that namespace's policy), while the images, read from the
  live template and not from any annotation, catch an edit made behind Sluice's back (`kubectl
  set image` keeps the annotation but not the image). A forged stableSpec cannot open the gate:
  it would still have to name what the Deployment, which a status patch cannot touch, runs;
- the Deployment <name> there is the one Sluice manages for that Release (its controller
  ownerReference carries the Release's uid: a look-alike someone created proves nothing), and it
  has finished rolling out as `kubectl rollout status` means it: the Deployment controller has
  seen its latest spec, every replica (at least one) runs the current template and is available,
  and no pod of an older template is left. Only then do its pods run the images of its template.

Not compared: environment variables, command and args, resources, replicas, probes, volumes,
the names of ConfigMaps and Secrets, labels and annotations, containers only the other
namespace has, and the bytes behind a tag. An image reference is compared as written: a tag is
trusted as far as the tag is; teams that need identical bytes pin digests (app@sha256:...).

A Release's status is no evidence: anyone allowed to patch `releases/status` there (the right
`sluice promote` needs, so often a CI robot or a whole team) can write stableVersion: X. It is
still read, but only to keep the gate shut: while that Release is itself still rolling this
version out (a post-promotion analysis may yet roll it back), or when it does not name this
version stable. What remains trusted: the Deployment controller's status of that Deployment, and
whoever may both edit that Deployment and patch that Release's status (they could declare, run
and report an artifact no analysis there ever judged).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sluice.api.models import ReleaseSpec
from sluice.plan.types import Declared, Upstream

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


def why_not(version: str, wanted: Mapping[str, str], up: Upstream) -> str | None:
    """Why `version`, with the images `wanted` (container name -> image), has not run in `up`'s
    namespace the way the gate demands, or None when it has. `sluice pipeline` asks the same."""
    name = up.name
    here = f"Deployment {name} in namespace {up.namespace}"
    there = f"Release {name} in namespace {up.namespace}"
    if not up.release:
        return f"there is no Release {name} in namespace {up.namespace}"
    if not up.deployment:
        return f"{here} does not exist"
    if not up.controlled:
        return f"{here} is not managed by Sluice for Release {name} there"
    if up.version != version:
        return f"{here} runs {up.version or 'no version Sluice knows'}, not {version}"
    running = dict(up.images)
    for container, image in sorted(wanted.items()):
        theirs = running.get(container)
        if theirs is None:
            return f"{here} has no container {container}"
        if theirs != image:
            return f"{here} runs image {theirs} in container {container}, not {image}"
    declared = _declared(version, up)
    if isinstance(declared, str):
        return declared
    for container, image in declared.images:
        if running.get(container) != image:
            live = running.get(container)
            return (f"{here} runs {f'image {live}' if live else 'no image'} in container {container}, but {there} "
                    f"declares {image}: the Deployment was changed behind Sluice's back")
    rollout = _rollout(up)
    if rollout:
        return f"{here} has not finished rolling out {version}: {rollout}"
    if up.stable_version != version:
        return f"{there} does not report {version} as its stable version"
    if up.phase in IN_FLIGHT and up.candidate_version == version:
        return f"{there} is still rolling out {version}"
    return None


def _declared(version: str, up: Upstream) -> Declared | str:
    """The template the other Release declares for `version` that the live template carries, or
    why there is none."""
    there = f"Release {up.name} in namespace {up.namespace}"
    candidates = [d for d in up.declared if d.version == version]
    if not candidates:
        return f"{there} declares no template for {version} (neither its spec nor its status.stableSpec)"
    for declared in candidates:
        if declared.template_hash == up.template_hash:
            return declared
    return (f"Deployment {up.name} in namespace {up.namespace} does not carry the template {there} declares for "
            f"{version} (template hash {up.template_hash or 'none'}, declared {candidates[0].template_hash})")


def wanted_images(spec: ReleaseSpec) -> dict[str, str]:
    """The images a Release's template runs, by container name (init containers too)."""
    return images_of(spec.template.model_dump(by_alias=True, exclude_none=True))


def sentence(version: str, namespace: str, why: str) -> str:
    """The gate's message, as status and `sluice pipeline` show it."""
    return f"{version} is not running in namespace {namespace} yet: {why} (requires)"


def unmet(spec: ReleaseSpec, upstream: tuple[Upstream, ...]) -> str | None:
    """Why the gate is closed, as a sentence for status, or None when every required namespace
    runs this version's images, fully rolled out, under the same-named Release and the template
    it declares."""
    wanted = wanted_images(spec)
    for up in upstream:
        why = why_not(spec.version, wanted, up)
        if why:
            return sentence(spec.version, up.namespace, why)
    return None

"""The objects Sluice owns, built from a Release: pure functions, so they are unit-tested.

Names: Deployment and Service <name> are the stable track, <name>-canary the candidate.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from typing import Any

from sluice import API_VERSION
from sluice.api.models import Hook, HookRun, ReleaseSpec

NAME = "app.kubernetes.io/name"
VERSION = "app.kubernetes.io/version"
MANAGED_BY = "app.kubernetes.io/managed-by"
TRACK = "sluice.dev/track"
RELEASE = "sluice.dev/release"
TEMPLATE_HASH = "sluice.dev/template-hash"
CREDENTIAL_LABEL = "sluice.dev/analysis-credential"  # a Secret analysis may read carries it, set to "true"
FULL_VERSION = "sluice.dev/version"  # the whole version; the label holds a label-safe form of it
HOOK = "sluice.dev/hook"  # on a hook's Job: the hook's name
# "true" on a ConfigMap/Secret whose versions roll out with the code; "copy" on Sluice's copy of one
VERSIONED = "sluice.dev/versioned"
STAGE = "sluice.dev/hook-stage"
ROLLOUT = "sluice.dev/rollout"

Body = dict[str, Any]


def template_hash(spec: ReleaseSpec) -> str:
    """Names a pod template and version: any change to either is a new candidate."""
    content = {"version": spec.version, "template": spec.template.model_dump(by_alias=True, exclude_none=True)}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:10]


def label_version(version: str) -> str:
    """A version as a label value (at most 63 characters of [A-Za-z0-9._-], alphanumeric at both
    ends), so that every valid semver ships: label_version("1.0.0") == "1.0.0",
    label_version("1.0.0-rc.1+build.5") == "1.0.0-rc.1_build.5"; a longer one is cut and given
    a hash suffix so that two long versions never share a label."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", version)
    if len(safe) > 63:
        digest = hashlib.sha256(version.encode()).hexdigest()[:8]
        safe = safe[:54] + "-" + digest
    return safe.strip("._-") or "0"


def version_of(obj: Body) -> str | None:
    """The full version an owned object or pod template carries."""
    metadata = obj.get("metadata") or {}
    return (metadata.get("annotations") or {}).get(FULL_VERSION) or (metadata.get("labels") or {}).get(VERSION)


def normalized_hash(template: Body) -> str:
    """A pod template as the API server stores it (defaults filled in), minus the track label, as
    a digest: the live template of either Deployment compares with a dry-run of the desired one,
    so an edit made behind Sluice's back (`kubectl set image`) is seen, whatever the annotation says."""
    body = copy.deepcopy(template)
    ((body.get("metadata") or {}).get("labels") or {}).pop(TRACK, None)
    ((body.get("metadata") or {}).get("labels") or {}).pop("pod-template-hash", None)
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def template_hash_of(obj: Body, in_template: bool = False) -> str | None:
    """The sluice.dev/template-hash annotation of an object, or of its pod template."""
    metadata = obj["spec"]["template"]["metadata"] if in_template else obj["metadata"]
    return (metadata.get("annotations") or {}).get(TEMPLATE_HASH)


def deployment_name(release: str, track: str) -> str:
    return release if track == "stable" else f"{release}-{track}"


def pod_template(release: str, spec: ReleaseSpec, track: str, digest: str) -> Body:
    """The Release's pod template with Sluice's labels and annotations."""
    return pod_template_of(release, spec.version, spec.template.model_dump(by_alias=True, exclude_none=True),
                           track, digest)


def pod_template_of(release: str, version: str, template: Body, track: str, digest: str) -> Body:
    """A version's pod template with Sluice's labels; the hash annotation names the template, the
    version annotation keeps the whole version where the label keeps a label-safe form."""
    template = copy.deepcopy(template)
    metadata = template.setdefault("metadata", {})
    metadata["labels"] = {**(metadata.get("labels") or {}), NAME: release, VERSION: label_version(version),
                          TRACK: track}
    metadata["annotations"] = {**(metadata.get("annotations") or {}), TEMPLATE_HASH: digest, FULL_VERSION: version}
    return template


def controller_uid(obj: Body) -> str | None:
    """The uid of the object's controlling owner, if it has one."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


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
    full = (template["metadata"].get("annotations") or {}).get(FULL_VERSION, version)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(name, track),
            "namespace": release["metadata"]["namespace"],
            "labels": {NAME: name, VERSION: version, TRACK: track, RELEASE: name, MANAGED_BY: "sluice"},
            "annotations": {TEMPLATE_HASH: digest, FULL_VERSION: full},
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
             preview: bool = False, preview_track: str = "canary", canary: bool = True) -> list[Body]:
    """<name> selects the active track (both tracks under a replica-ratio split while a canary
    runs); <name>-canary (only where a route sends traffic to it), and <name>-preview for
    blue-green, select the candidate's pods."""
    name = release["metadata"]["name"]
    main = {NAME: name} if selects_canary else {NAME: name, TRACK: active}
    owned = [service(release, spec, name, main)]
    if canary:
        owned.append(service(release, spec, f"{name}-canary", {NAME: name, TRACK: "canary"}))
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


def job_pod(template: Body, labels: dict[str, str], env: dict[str, str]) -> Body:
    """The pod template of a Job Sluice runs (a hook, a job metric), from a user's: none of the
    labels Sluice's Services select on (app.kubernetes.io/name, the track, the version), whatever
    the template says, so no Service ever sends it traffic; `labels` instead; restartPolicy Never
    unless set; `env` added where the template does not set the variable itself; and the end of a
    failed container's log kept in its status (FallbackToLogsOnError), which is what a failed Job's
    message shows: no log request reaches the kubelet."""
    pod: Body = copy.deepcopy(template)
    own_labels = pod.setdefault("metadata", {}).setdefault("labels", {})
    for selected in (NAME, TRACK, VERSION):
        own_labels.pop(selected, None)
    own_labels.update(labels)
    spec = pod["spec"]
    spec.setdefault("restartPolicy", "Never")
    for container in spec["containers"]:
        container.setdefault("terminationMessagePolicy", "FallbackToLogsOnError")
        given = container.setdefault("env", [])
        named = {variable.get("name") for variable in given}
        given.extend({"name": key, "value": value} for key, value in env.items() if key not in named)
    return pod


def hook_job(release: Body, run: HookRun, hook: Hook, stable_version: str, timeout: float) -> Body:
    """The Job of one hook run, owned by the Release. Its pods carry none of the labels Sluice's
    Services select on (app.kubernetes.io/name, the track), whatever the hook's template says, so
    no Service ever sends traffic to a migration. The pod learns what it runs for from its
    environment; a variable the template sets itself is kept as written."""
    name, namespace = release["metadata"]["name"], release["metadata"]["namespace"]
    template = job_pod(hook.template.model_dump(by_alias=True, exclude_none=True), {RELEASE: name, HOOK: run.hook},
                       {"SLUICE_RELEASE": name, "SLUICE_NAMESPACE": namespace, "SLUICE_VERSION": run.version,
                        "SLUICE_STABLE_VERSION": stable_version, "SLUICE_HOOK": run.hook,
                        "SLUICE_HOOK_STAGE": run.stage})
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": run.job,
            "namespace": namespace,
            "labels": {RELEASE: name, HOOK: run.hook, STAGE: run.stage, MANAGED_BY: "sluice"},
            "annotations": {ROLLOUT: run.rollout, FULL_VERSION: run.version},
            "ownerReferences": [owner(release)],
        },
        "spec": {"backoffLimit": hook.backoff_limit, "activeDeadlineSeconds": max(1, int(timeout)),
                 "template": template},
    }


def job_state(job: Body) -> tuple[bool, bool, bool, str]:
    """(active, succeeded, failed, reason) of a Job, from its conditions (Complete / Failed) as
    the Job controller sets them; a Job being deleted is neither active nor finished."""
    status = job.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
    if "Complete" in conditions:
        return False, True, False, ""
    if "Failed" in conditions:
        return False, False, True, str(conditions["Failed"].get("reason") or "")
    deleting = bool((job.get("metadata") or {}).get("deletionTimestamp"))
    return not deleting, False, False, ""


def failure_message(pod: Body) -> str:
    """What a failed pod's containers left as their termination message (with
    FallbackToLogsOnError, the end of the log), the last container to fail first."""
    finished = [state["terminated"] for state in
                ((status.get("state") or {}) for status in (pod.get("status") or {}).get("containerStatuses") or [])
                if state.get("terminated") and state["terminated"].get("exitCode")]
    finished.sort(key=lambda terminated: terminated.get("finishedAt") or "", reverse=True)
    return str(finished[0].get("message") or "") if finished else ""


def clean_log(text: str, lines: int = 8, limit: int = 600) -> str:
    """The end of a pod's log as one line a message can carry: control characters dropped,
    the last `lines` non-empty lines joined with " | ", at most `limit` characters:
    clean_log("a\nb\x1b[31m\n\n") == "a | b[31m"."""
    kept = ["".join(ch for ch in line if ch.isprintable()).strip() for line in text.splitlines()]
    tail = " | ".join([line for line in kept if line][-lines:])
    return tail if len(tail) <= limit else "..." + tail[-(limit - 3):]

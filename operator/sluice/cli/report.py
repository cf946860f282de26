"""`sluice report`: the deployment report of a Release's latest rollout, in the shape release
engineers hand over: summary, changes, timeline, zero downtime, rollback plan, next steps.

build() gathers the facts into one JSON object (`sluice report -o json`); report_markdown turns
that object into Markdown, so both outputs always say the same. Both are pure functions of
(release, events, policy, before, now, cluster): the CLI fetches those, tests pass them in.

Status is the source: it outlives events (the API server drops them after an hour by default).
Events only add times that status does not keep, such as when each earlier step completed.

The JSON object ("schema": "sluice.dev/report/v1") has stable keys, listed in docs/report.md
(tests/unit/test_report.py checks that every key is there): release, summary, changes,
timeline, zeroDowntime, rollback, handoff, history. Times are RFC 3339 UTC strings; a fact the
report does not know is null, never guessed.
"""

from __future__ import annotations

import difflib
import json
from datetime import datetime
from typing import Any

import yaml

from sluice.api.durations import format_duration
from sluice.api.models import HistoryEntry, Phase, ReleaseStatus, RolloutPolicySpec, StableSpec
from sluice.cli import report_handover, report_timeline
from sluice.cli.report_markdown import markdown
from sluice.cli.report_timeline import event_time, stamp, time_of
from sluice.kube import objects
from sluice.plan import changes

SCHEMA = "sluice.dev/report/v1"
Body = dict[str, Any]

SLUICE_KEYS = {objects.NAME, objects.VERSION, objects.TRACK, objects.TEMPLATE_HASH, objects.FULL_VERSION,
               "pod-template-hash"}
# What the API server fills into a pod template that its author did not write.
POD_DEFAULTS = {"dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                "securityContext": {}, "terminationGracePeriodSeconds": 30}
CONTAINER_DEFAULTS = {"imagePullPolicy": "IfNotPresent", "resources": {}, "terminationMessagePolicy": "File",
                      "terminationMessagePath": "/dev/termination-log"}
PROBE_DEFAULTS = {"timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
IN_FLIGHT = (Phase.PENDING, Phase.PROGRESSING, Phase.PAUSED)


# --- templates ---------------------------------------------------------------------------------


def _drop(body: Body, defaults: Body) -> Body:
    return {k: v for k, v in body.items() if defaults.get(k, object()) != v}


def _container(container: Body) -> Body:
    container = _drop(container, CONTAINER_DEFAULTS)
    if "ports" in container:
        container["ports"] = [_drop(port, {"protocol": "TCP"}) for port in container["ports"]]
    for key in PROBES:
        if key in container:
            probe = _drop(container[key], PROBE_DEFAULTS)
            if "httpGet" in probe:
                probe["httpGet"] = _drop(probe["httpGet"], {"scheme": "HTTP"})
            container[key] = probe
    return container


def _without_defaults(spec: Body) -> Body:
    spec = _drop(spec, POD_DEFAULTS)
    for key in ("containers", "initContainers"):
        if key in spec:
            spec[key] = [_container(c) for c in spec[key]]
    if "volumes" in spec:
        spec["volumes"] = [{k: _drop(v, {"defaultMode": 420}) if k in ("configMap", "secret") and isinstance(v, dict)
                            else v for k, v in volume.items()} for volume in spec["volumes"]]
    return spec


def clean(template: Body | None) -> Body | None:
    """A pod template without what Sluice and Kubernetes add, to compare what a person wrote. Both
    sides of a comparison are cleaned alike: a default its author wrote is dropped from both."""
    if template is None:
        return None
    metadata = dict(template.get("metadata") or {})
    for key in ("labels", "annotations"):
        kept = {k: v for k, v in (metadata.get(key) or {}).items() if k not in SLUICE_KEYS}
        if kept:
            metadata[key] = kept
        else:
            metadata.pop(key, None)
    metadata.pop("creationTimestamp", None)
    cleaned = {**template, "metadata": metadata, "spec": _without_defaults(template.get("spec") or {})}
    return {k: v for k, v in cleaned.items() if v}


def template_diff(before: Body | None, after: Body | None, old: str = "stable", new: str = "candidate") -> str | None:
    """A unified diff of two pod templates as written, or None when one of them is unknown."""
    if before is None or after is None:
        return None
    lines = [yaml.safe_dump(clean(t), sort_keys=True).splitlines() for t in (before, after)]
    diff = list(difflib.unified_diff(lines[0], lines[1], old, new, lineterm="", n=2))
    return "\n".join(diff) if diff else "(no change to the pod template besides the version)"


def previous_template_hash(release: Body) -> str | None:
    """The template hash of the version before the reported one, when status does not hold its
    template: after a promotion status.stableSpec is the new version (and a status written before
    stableSpec existed has none). The CLI looks it up in the stable Deployment's ReplicaSet
    history (template_in) and passes it to build() as `before`."""
    status = ReleaseStatus.model_validate(release.get("status") or {})
    entry = _subject(status)
    if entry is not None and entry.outcome == "Succeeded":
        earlier = _previous_entry(status, entry)
        return (earlier.template_hash or None) if earlier else None
    return status.stable_hash if status.stable_spec is None else None


def template_in(replica_sets: list[Body], deployment: str, digest: str) -> Body | None:
    """The pod template of `digest` among a Deployment's ReplicaSets, as its author wrote it (near
    enough: defaults the API server added that clean() does not know stay)."""
    for replica_set in replica_sets:
        owners = replica_set["metadata"].get("ownerReferences") or []
        if any(o.get("name") == deployment and o.get("kind") == "Deployment" for o in owners) \
                and objects.template_hash_of(replica_set, in_template=True) == digest:
            return clean(replica_set["spec"]["template"])
    return None


# --- the subject -------------------------------------------------------------------------------


def _subject(status: ReleaseStatus) -> HistoryEntry | None:
    """The rollout to report: None for the one under way, else the latest finished one."""
    if status.candidate_version and status.phase in IN_FLIGHT:
        return None
    return status.history[-1] if status.history else None


def _previous_entry(status: ReleaseStatus, entry: HistoryEntry) -> HistoryEntry | None:
    index = max(i for i, h in enumerate(status.history) if h is entry)
    earlier = [h for h in status.history[:index] if h.outcome == "Succeeded" and h.version != entry.version]
    return earlier[-1] if earlier else None


def _policy(policy: Body | None, status: ReleaseStatus) -> tuple[RolloutPolicySpec | None, str | None]:
    """The policy the reported rollout ran, and its name: the snapshot in status while in flight,
    else the policy as it is now, if it still has the rollout's strategy."""
    if status.policy is not None and status.candidate_version and status.phase in IN_FLIGHT:
        try:
            return RolloutPolicySpec.model_validate(status.policy.spec), status.policy.name
        except ValueError:
            pass
    if not policy:
        return None, None
    name = (policy.get("metadata") or {}).get("name")
    try:
        parsed = RolloutPolicySpec.model_validate(policy.get("spec") or {})
    except ValueError:
        return None, name
    return (parsed if parsed.strategy.name == status.strategy else None), name


# --- build -------------------------------------------------------------------------------------


def build(release: Body, events: list[Body], policy: Body | None, before: Body | None, now: datetime,
          cluster: str | None = None) -> Body:
    """The report as one JSON object (its keys: docs/report.md).

    `events` are the Release's core/v1 Events, `policy` its RolloutPolicy (or None), `before` the
    pod template of the version before the reported one when status does not hold it (after a
    promotion, or in a status older than stableSpec; see previous_template_hash; None if unknown),
    `cluster` the kubeconfig context's cluster name (None if unknown)."""
    meta, spec = release["metadata"], release["spec"]
    name, namespace = meta["name"], meta["namespace"]
    status = ReleaseStatus.model_validate(release.get("status") or {})
    entry = _subject(status)
    version = (entry.version if entry else status.candidate_version) or status.stable_version or spec["version"]
    stepping = stamp(entry.started_at if entry else status.rollout_started_at)  # when the first step began
    # preRollout hooks run before that, and are part of the rollout
    gates = [h.started_at for h in report_timeline.hook_runs(status, version, stepping) if h.stage == "preRollout"]
    started = min([*gates, stepping]) if stepping else stepping
    finished = stamp(entry.finished_at) if entry else None
    begun = time_of(started)
    seconds = round(((time_of(finished) or now) - begun).total_seconds()) if begun else None
    previous = _previous_version(status, entry)
    parsed, policy_name = _policy(policy, status)
    prior, source = _prior(status, entry, previous, before)
    policy_name = policy_name or (spec.get("policyRef") or {}).get("name")
    outcome = entry.outcome if entry else "InProgress"
    window = [e for e in events if started is None or (stamp(event_time(e)) or "") >= started]
    summary = {
        "version": version, "previousVersion": previous, "strategy": status.strategy, "policy": policy_name,
        "environment": {"namespace": namespace, "cluster": cluster},
        "startedAt": started, "finishedAt": finished, "durationSeconds": seconds,
        "duration": format_duration(seconds) if seconds is not None else None,
        "outcome": outcome, "phase": status.phase.value, "reason": entry.reason if entry else "",
        "message": status.message,
    }
    return {
        "schema": SCHEMA,
        "release": {"name": name, "namespace": namespace, "cluster": cluster},
        "summary": summary,
        "changes": _changes(release, status, entry, version, started, prior, source),
        "timeline": report_timeline.timeline(status, parsed, policy_name is not None and status.strategy != "initial",
                                             entry, version, stepping, window),
        "zeroDowntime": report_handover.zero_downtime(name, status, window),
        "rollback": report_handover.rollback(release, status, entry, version, previous, prior, source),
        "handoff": report_handover.handoff(release, status, parsed, entry, version, started, previous, policy),
        "history": [{"version": h.version, "outcome": h.outcome, "startedAt": h.started_at,
                     "finishedAt": h.finished_at, "reason": h.reason, "changes": h.changes}
                    for h in reversed(status.history)],
    }


def render(release: Body, events: list[Body], policy: Body | None, before: Body | None, now: datetime,
           cluster: str | None = None) -> str:
    """The report in Markdown."""
    return markdown(build(release, events, policy, before, now, cluster))


def as_json(release: Body, events: list[Body], policy: Body | None, before: Body | None, now: datetime,
            cluster: str | None = None) -> str:
    return json.dumps(build(release, events, policy, before, now, cluster), indent=2) + "\n"


def _previous_version(status: ReleaseStatus, entry: HistoryEntry | None) -> str | None:
    """The stable version the reported rollout started from."""
    if entry is None or entry.outcome != "Succeeded":
        return status.stable_version if status.stable_version != (entry.version if entry else None) \
            else None
    earlier = _previous_entry(status, entry)
    return earlier.version if earlier else None


# --- changes -----------------------------------------------------------------------------------


def _objects(release: Body, status: ReleaseStatus, version: str, started: str | None) -> Body:
    name, spec = release["metadata"]["name"], release["spec"]
    route = ((spec.get("trafficRouting") or {}).get("gatewayAPI") or {}).get("httpRoute")
    deployments, services = [name], [name]
    runs = report_timeline.hook_runs(status, version, started)
    # a failed preRollout hook ends a rollout before its candidate's Deployment is written
    stopped_before = any(run.stage == "preRollout" and run.state == "Failed" for run in runs)
    if status.strategy in ("canary", "blueGreen") and not stopped_before:
        deployments.append(objects.deployment_name(name, "canary"))
        if route:
            services.append(f"{name}-canary")
        if status.strategy == "blueGreen":
            services.append(f"{name}-preview")
    jobs = [h.job for h in runs]
    return {"deployments": deployments, "services": services, "httpRoutes": [route] if route else [],
            "jobs": list(dict.fromkeys(jobs))}


def _prior(status: ReleaseStatus, entry: HistoryEntry | None, previous: str | None,
           before: Body | None) -> tuple[StableSpec | None, str]:
    """The version the reported rollout started from and its pod template as written, and where
    that comes from: status.stableSpec until a promotion replaces it, else `before`."""
    if entry is None or entry.outcome != "Succeeded":
        if status.stable_spec is not None:
            return status.stable_spec, "status"
        previous = status.stable_version
    if previous is None or before is None:
        return None, ""
    return StableSpec(version=previous, template=before), "replicaSetHistory"


def _reported_template(release: Body, status: ReleaseStatus, entry: HistoryEntry | None, version: str) -> Body | None:
    """The reported version's pod template: the promoted one in status.stableSpec, else the spec's."""
    if entry is not None and entry.outcome == "Succeeded" and status.stable_spec is not None \
            and status.stable_spec.version == version:
        return status.stable_spec.template
    template: Body | None = release["spec"]["template"] if release["spec"].get("version") == version else None
    return template


def _changes(release: Body, status: ReleaseStatus, entry: HistoryEntry | None, version: str, started: str | None,
             prior: StableSpec | None, source: str) -> Body:
    """The change list recorded in history at promotion or rollback; for the rollout under way
    (or one older than the recording) it is computed the same way (plan.changes) from what is
    left: status.stableSpec, or the ReplicaSet history the CLI read."""
    template = _reported_template(release, status, entry, version)
    diff = template_diff(prior.template, template, prior.version, version) if prior else None
    if entry is not None and entry.changes:
        items, source = entry.changes, "history"
    elif prior is not None and template is not None:
        if source == "replicaSetHistory":  # stored with the API server's defaults: compare like with like
            prior, template = StableSpec(version=prior.version, template=clean(prior.template) or {}), clean(template)
        items = changes.between(prior, version, template or {})
    else:
        items, source = [], "notRecorded"
    return {"source": source, "items": items, "templateDiff": diff, "note": _versioned_note(prior, template, source),
            "objects": _objects(release, status, version, started)}


def _versioned_note(prior: StableSpec | None, template: Body | None, source: str) -> str | None:
    """The spec names versioned config by its original name, while the stable template in status
    reads Sluice's content-named copies: a list computed from the two says so."""
    if source == "history" or prior is None or template is None:
        return None
    old = changes.config_refs(prior.template.get("spec") or {})
    new = changes.config_refs(template.get("spec") or {})
    if not any(changes.copy_of(name) in new[kind] for kind in old for name in old[kind]):
        return None
    return ("versioned config: the stable version reads Sluice's content-named copies, the spec names the "
            "originals; the candidate's own copies are recorded in history when the rollout ends")



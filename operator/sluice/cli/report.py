"""`sluice report`: a Markdown deployment report of a Release's latest rollout, from its status,
its events and its templates. A pure function of those objects."""

from __future__ import annotations

import difflib
from datetime import UTC, datetime
from typing import Any

import yaml

from sluice.api.durations import format_duration
from sluice.api.models import HistoryEntry, Phase, ReleaseStatus
from sluice.kube import objects

SLUICE_KEYS = {objects.NAME, objects.VERSION, objects.TRACK, objects.TEMPLATE_HASH, "pod-template-hash"}
# What the API server fills into a pod template that its author did not write.
POD_DEFAULTS = {"dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                "securityContext": {}, "terminationGracePeriodSeconds": 30}
CONTAINER_DEFAULTS = {"imagePullPolicy": "IfNotPresent", "resources": {}, "terminationMessagePolicy": "File",
                      "terminationMessagePath": "/dev/termination-log"}


def _without_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    spec = {k: v for k, v in spec.items() if POD_DEFAULTS.get(k, object()) != v}
    if "containers" in spec:
        spec["containers"] = [{k: v for k, v in c.items() if CONTAINER_DEFAULTS.get(k, object()) != v}
                              for c in spec["containers"]]
    return spec


def _time(stamp: str | None) -> datetime | None:
    return datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC) if stamp else None


def _clean(template: dict[str, Any] | None) -> dict[str, Any] | None:
    """A pod template without what Sluice and Kubernetes add, to compare what a person wrote."""
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


def template_diff(before: dict[str, Any] | None, after: dict[str, Any]) -> str:
    if before is None:
        return "(the previous template is no longer available)"
    old = yaml.safe_dump(_clean(before), sort_keys=True).splitlines()
    new = yaml.safe_dump(_clean(after), sort_keys=True).splitlines()
    diff = list(difflib.unified_diff(old, new, "stable", "candidate", lineterm="", n=2))
    return "\n".join(diff) if diff else "(no change to the pod template besides the version)"


def _subject(status: ReleaseStatus) -> tuple[HistoryEntry | None, str]:
    """The rollout to report: the one under way, or the latest finished one."""
    if status.candidate_version and status.phase in (Phase.PROGRESSING, Phase.PAUSED, Phase.PENDING):
        return None, status.candidate_version
    if status.history:
        return status.history[-1], status.history[-1].version
    return None, status.stable_version or "-"


def render(release: dict[str, Any], events: list[dict[str, Any]], before: dict[str, Any] | None,
           now: datetime) -> str:
    meta, spec = release["metadata"], release["spec"]
    name, namespace = meta["name"], meta["namespace"]
    status = ReleaseStatus.model_validate(release.get("status") or {})
    entry, version = _subject(status)
    started = _time(entry.started_at if entry else status.rollout_started_at)
    finished = _time(entry.finished_at) if entry else None
    outcome = entry.outcome if entry else f"{status.phase.value} (in progress)"
    duration = format_duration(((finished or now) - started).total_seconds()) if started else "-"
    previous = status.stable_version if version != status.stable_version else _previous(status, version)
    lines = [
        f"# Deployment report: {namespace}/{name} {version}",
        "",
        "| | |", "|---|---|",
        f"| Release | `{name}` |",
        f"| Environment (namespace) | `{namespace}` |",
        f"| Version | `{version}` (stable before: `{previous or '-'}`) |",
        f"| Strategy | {status.strategy or '-'} (policy `{(spec.get('policyRef') or {}).get('name', '-')}`) |",
        f"| Started | {started.isoformat() if started else '-'} |",
        f"| Duration | {duration} |",
        f"| Outcome | **{outcome}** |",
    ]
    if entry and entry.reason:
        lines.append(f"| Reason | {entry.reason} |")
    lines += ["", f"Now: {status.message}", "", "## Step timeline", ""]
    timeline = [e for e in events if started is None or (_time(_event_time(e)) or now) >= started]
    if timeline:
        lines += ["| Time | After | Event | |", "|---|---|---|---|"]
        for event in timeline:
            at = _time(_event_time(event))
            after = format_duration((at - started).total_seconds()) if at and started else "-"
            mark = "⚠️ " if event.get("type") == "Warning" else ""
            lines.append(f"| {at.strftime('%H:%M:%S') if at else '-'} | +{after} | {mark}{event.get('reason')} | "
                         f"{event.get('message', '')} |")
    else:
        lines.append("(no events left: Kubernetes keeps events for an hour by default)")
    lines += ["", "## Analysis", ""]
    measurements = [m for m in status.analysis if m.version == version]
    if measurements:
        lines += ["| Time | Step | Metric | Value | Verdict | Detail |", "|---|---|---|---|---|---|"]
        for m in measurements:
            value = "-" if m.value is None else f"{m.value:.4g}"
            step = "-" if m.step is None else str(m.step + 1)
            lines.append(f"| {m.at[11:19]} | {step} | {m.metric} | {value} | {m.verdict.value} | {m.message} |")
    else:
        lines.append("(no measurements of this version)")
    lines += ["", "## What changed in the template", "", "```diff",
              template_diff(before, spec["template"]), "```", "", "## Rolling back", ""]
    lines += _rollback(name, namespace, status, version)
    if status.history:
        lines += ["", "## History", "", "| Version | Outcome | Started | Finished | Reason |", "|---|---|---|---|---|"]
        for h in reversed(status.history):
            lines.append(f"| {h.version} | {h.outcome} | {h.started_at} | {h.finished_at or '-'} | {h.reason} |")
    return "\n".join(lines) + "\n"


def _event_time(event: dict[str, Any]) -> str | None:
    stamp = event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")
    return str(stamp) if stamp else None


def _previous(status: ReleaseStatus, version: str) -> str | None:
    earlier = [h.version for h in status.history if h.outcome == "Succeeded" and h.version != version]
    return earlier[-1] if earlier else None


def _rollback(name: str, namespace: str, status: ReleaseStatus, version: str) -> list[str]:
    flags = f"{name} -n {namespace}"
    if status.phase in (Phase.PROGRESSING, Phase.PAUSED):
        return ["The rollout is under way; this puts all traffic back on "
                f"`{status.stable_version}` at once, then scales the candidate down:", "", "```sh",
                f"sluice abort {flags}", "```"]
    if status.phase in (Phase.ROLLED_BACK, Phase.FAILED):
        return [f"Already rolled back: all traffic is on `{status.stable_version}`. To try `{version}` again "
                "without changing the spec:", "", "```sh", f"sluice retry {flags}", "```",
                "", f"To stop trying it, set `spec.version` back to `{status.stable_version}` (and its image) in Git."]
    earlier = _previous(status, version)
    if not earlier:
        return ["There is no earlier version of this Release to go back to."]
    return [f"`{version}` is stable. To go back to `{earlier}`, apply its manifest again (in Git, revert the "
            "commit that changed `spec.version`); Sluice rolls it out like any new version:", "", "```sh",
            f"git revert <commit that set {name} to {version}>   # GitOps", f"kubectl get rel {flags} -w", "```"]

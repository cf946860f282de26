"""`sluice report`: the deployment report of a Release's latest rollout, in the shape release
engineers hand over: summary, changes, timeline, zero downtime, rollback plan, next steps.

build() gathers the facts into one JSON object (`sluice report -o json`); report_markdown turns
that object into Markdown, so both outputs always say the same. Both are pure functions of
(release, events, policy, before, now, cluster): the CLI fetches those, tests pass them in.

Status is the source: it outlives events (the API server drops them after an hour by default).
Events only add times that status does not keep, such as when each earlier step completed.

The JSON object ("schema": "sluice.dev/report/v1"; keys are stable, new ones may be added):
  release       {name, namespace, cluster}
  summary       {version, previousVersion, strategy, policy, environment {namespace, cluster},
                 startedAt, finishedAt, durationSeconds, duration, outcome (Succeeded | RolledBack |
                 Failed | Superseded | InProgress), phase, reason, message}
  changes       {source (history | status | replicaSetHistory | notRecorded), items [str], templateDiff,
                 objects {deployments, services, httpRoutes, jobs: [name]}}
  timeline      {steps [{number, step, weight, startedAt, endedAt, state, approximate [key]}], hooks [{stage, hook, job,
                 version, state, startedAt, finishedAt, message}], measurements [{at, step, stepName,
                 metric, value, verdict, message}], measurementsNote, events [{at, type, reason,
                 message, count}], eventsNote}
  zeroDowntime  {recorded (bool), activeService, readyNow {stable, canary}, withdrawn [str], note}
  rollback      {summary, commands [{what, run}], notes [str]}
  handoff       {watch [str], cleanup [str], links [{name, url}]}
  history       [{version, outcome, startedAt, finishedAt, reason, changes [str]}]
Times are RFC 3339 UTC strings ("2026-11-28T12:01:00Z"); absent facts are null, never guessed.
A step's state is one of done, skipped, current, paused, failed, stopped, notReached, unknown.
"""

from __future__ import annotations

import difflib
import json
import re
import shlex
from datetime import UTC, datetime
from typing import Any

import yaml

from sluice.api.durations import format_duration
from sluice.api.models import HistoryEntry, Phase, ReleaseStatus, RolloutPolicySpec, StableSpec
from sluice.cli.report_markdown import markdown
from sluice.kube import objects
from sluice.plan import bluegreen, canary, changes, reasons
from sluice.plan.analysis import MAX_MEASUREMENTS
from sluice.plan.release import step_list
from sluice.plan.types import iso, show

SCHEMA = "sluice.dev/report/v1"
Body = dict[str, Any]

SLUICE_KEYS = {objects.NAME, objects.VERSION, objects.TRACK, objects.TEMPLATE_HASH, objects.FULL_VERSION,
               "pod-template-hash"}
# What the API server fills into a pod template that its author did not write.
POD_DEFAULTS = {"dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                "securityContext": {}, "terminationGracePeriodSeconds": 30}
CONTAINER_DEFAULTS = {"imagePullPolicy": "IfNotPresent", "resources": {}, "terminationMessagePolicy": "File",
                      "terminationMessagePath": "/dev/termination-log"}
IN_FLIGHT = (Phase.PENDING, Phase.PROGRESSING, Phase.PAUSED)
STEP_DONE = re.compile(r"^step (\d+)/\d+ \(.*\) complete$")
STEP_PROMOTED = re.compile(r"^step (\d+) promoted by ")
EVENTS_GONE = ("no events left: the API server keeps events for an hour by default; the steps above "
               "come from status")


# --- templates ---------------------------------------------------------------------------------


def _without_defaults(spec: Body) -> Body:
    spec = {k: v for k, v in spec.items() if POD_DEFAULTS.get(k, object()) != v}
    if "containers" in spec:
        spec["containers"] = [{k: v for k, v in c.items() if CONTAINER_DEFAULTS.get(k, object()) != v}
                              for c in spec["containers"]]
    return spec


def clean(template: Body | None) -> Body | None:
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


def _time(stamp: str | None) -> datetime | None:
    return datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC) if stamp else None


def _stamp(stamp: str | None) -> str | None:
    moment = _time(stamp)
    return iso(moment) if moment else None


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
    """The report as one JSON object (see the module docstring for its keys).

    `events` are the Release's core/v1 Events, `policy` its RolloutPolicy (or None), `before` the
    pod template of the version before the reported one when status does not hold it (after a
    promotion, or in a status older than stableSpec; see previous_template_hash; None if unknown),
    `cluster` the kubeconfig context's cluster name (None if unknown)."""
    meta, spec = release["metadata"], release["spec"]
    name, namespace = meta["name"], meta["namespace"]
    status = ReleaseStatus.model_validate(release.get("status") or {})
    entry = _subject(status)
    version = (entry.version if entry else status.candidate_version) or status.stable_version or spec["version"]
    started = _stamp(entry.started_at if entry else status.rollout_started_at)
    finished = _stamp(entry.finished_at) if entry else None
    begun = _time(started)
    seconds = round(((_time(finished) or now) - begun).total_seconds()) if begun else None
    previous = _previous_version(status, entry)
    parsed, policy_name = _policy(policy, status)
    prior, source = _prior(status, entry, previous, before)
    policy_name = policy_name or (spec.get("policyRef") or {}).get("name")
    outcome = entry.outcome if entry else "InProgress"
    window = [e for e in events if started is None or (_stamp(_event_time(e)) or "") >= started]
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
        "changes": _changes(release, status, entry, version, prior, source),
        "timeline": _timeline(status, parsed, entry, version, started, window),
        "zeroDowntime": _zero_downtime(name, status, window),
        "rollback": _rollback(release, status, entry, version, previous, prior, source),
        "handoff": _handoff(release, status, parsed, entry, version, previous, policy),
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


def _event_time(event: Body) -> str | None:
    stamp = event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")
    return str(stamp) if stamp else None


# --- changes -----------------------------------------------------------------------------------


def _objects(release: Body, status: ReleaseStatus, version: str) -> Body:
    name, spec = release["metadata"]["name"], release["spec"]
    route = ((spec.get("trafficRouting") or {}).get("gatewayAPI") or {}).get("httpRoute")
    deployments, services = [name], [name]
    if status.strategy in ("canary", "blueGreen"):
        deployments.append(objects.deployment_name(name, "canary"))
        if route:
            services.append(f"{name}-canary")
        if status.strategy == "blueGreen":
            services.append(f"{name}-preview")
    jobs = [h.job for h in status.hooks if h.version == version]
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


def _changes(release: Body, status: ReleaseStatus, entry: HistoryEntry | None, version: str,
             prior: StableSpec | None, source: str) -> Body:
    """The change list recorded in history at promotion or rollback; for the rollout under way
    (or one older than the recording) it is computed the same way (plan.changes) from what is
    left: status.stableSpec, or the ReplicaSet history the CLI read."""
    template = _reported_template(release, status, entry, version)
    diff = template_diff(prior.template, template, prior.version, version) if prior else None
    if entry is not None and entry.changes:
        items, source = entry.changes, "history"
    elif prior is not None and template is not None:
        items = changes.between(prior, version, template)
    else:
        items, source = [], "notRecorded"
    return {"source": source, "items": items, "templateDiff": diff,
            "objects": _objects(release, status, version)}


# --- timeline ----------------------------------------------------------------------------------


def _weights(policy: RolloutPolicySpec) -> list[int]:
    """Percent of traffic on the new version once each step is done."""
    strategy = policy.strategy
    if strategy.canary:
        return [canary.weight_at(strategy.canary.steps, i) for i in range(len(strategy.canary.steps))]
    if strategy.blue_green:
        names = bluegreen.step_names(strategy.blue_green)
        return [100 if i >= names.index(bluegreen.SWITCH) else 0 for i in range(len(names))]
    return [100] * len(step_list(policy))


def _step_events(window: list[Body], count: int) -> tuple[dict[int, str], int | None]:
    """When steps completed, from events: StepCompleted and `sluice promote`; and the index from
    which `sluice promote --full` skipped the rest."""
    done: dict[int, str] = {}
    skipped_from = None
    for event in window:
        at, message = _stamp(_event_time(event)), str(event.get("message", ""))
        found = STEP_DONE.match(message) if event.get("reason") == reasons.STEP_COMPLETED else \
            STEP_PROMOTED.match(message) if event.get("reason") == reasons.REQUEST_APPLIED else None
        if found and at:
            done.setdefault(int(found.group(1)) - 1, at)
        elif event.get("reason") == reasons.REQUEST_APPLIED and message.startswith("promoted fully") \
                and skipped_from is None:
            skipped_from = next((i for i in range(count) if i not in done), count)
    return done, skipped_from


def _steps(status: ReleaseStatus, policy: RolloutPolicySpec | None, entry: HistoryEntry | None,
           started: str | None, window: list[Body], measured: list[Body]) -> list[Body]:
    """One row per step. Times come from events (StepCompleted, `sluice promote`) while they
    exist, and from status: when the rollout started and when the current step did; and, marked
    approximate, from the measurements of analysis steps (their first is taken as the step starts,
    their last in the pass that completes it)."""
    finished = _stamp(entry.finished_at) if entry else None
    if policy is None:  # a plain rolling update (or a first version): the Deployment does it all
        state = "current" if entry is None else {"Succeeded": "done", "Failed": "failed"}.get(entry.outcome, "stopped")
        return [{"number": 1, "step": "rolling update of the Deployment", "weight": None, "startedAt": started,
                 "endedAt": finished, "state": state, "approximate": []}]
    names, weights = step_list(policy), _weights(policy)
    exact, skipped_from = _step_events(window, len(names))
    ends = {index: (at, False) for index, at in exact.items()}
    current = status.current_step
    if current is not None and current > 0 and status.step_started_at:
        ends.setdefault(current - 1, (_stamp(status.step_started_at) or "", False))  # the next step began then
    states = [_state(index, current, entry, status, skipped_from) for index in range(len(names))]
    for index, state in enumerate(states):
        if state in ("failed", "stopped") and finished:
            ends.setdefault(index, (finished, False))
    for index in range(len(names)):
        times = [m["at"] for m in measured if m["step"] == index + 1]
        if times and index > 0:
            ends.setdefault(index - 1, (times[0], True))
        if times and states[index] == "done":
            ends.setdefault(index, (times[-1], True))
    rows = []
    for index, (step, weight) in enumerate(zip(names, weights, strict=True)):
        begun: tuple[str | None, bool] = (started, False) if index == 0 else ends.get(index - 1, (None, False))
        if index == current and begun[0] is None and status.step_started_at:
            begun = (_stamp(status.step_started_at), False)
        if states[index] == "notReached":
            begun = (None, False)
        end = (None, False) if states[index] in ("skipped", "notReached") else ends.get(index, (None, False))
        rows.append({"number": index + 1, "step": step, "weight": weight, "startedAt": begun[0],
                     "endedAt": end[0], "state": states[index],
                     "approximate": [key for key, guess in (("startedAt", begun[1]), ("endedAt", end[1])) if guess]})
    return rows


def _state(index: int, current: int | None, entry: HistoryEntry | None, status: ReleaseStatus,
           skipped_from: int | None) -> str:
    if skipped_from is not None and index >= skipped_from:
        return "skipped"
    if entry is not None and entry.outcome == "Succeeded":
        return "done"
    if current is None:
        return "unknown"
    if index < current:
        return "done"
    if index > current:
        return "notReached"
    if entry is None:
        return "paused" if status.phase == Phase.PAUSED else "current"
    by_hand = "re-applied" in entry.reason or entry.reason.startswith("aborted by")
    return "failed" if entry.outcome in ("RolledBack", "Failed") and not by_hand else "stopped"


def _timeline(status: ReleaseStatus, policy: RolloutPolicySpec | None, entry: HistoryEntry | None, version: str,
              started: str | None, window: list[Body]) -> Body:
    since = started or ""
    names = step_list(policy) if policy else []
    measurements = [
        {"at": m.at, "step": None if m.step is None else m.step + 1,
         "stepName": names[m.step] if m.step is not None and 0 <= m.step < len(names) else None,
         "metric": m.metric, "value": None if m.value is None else show(m.value), "verdict": m.verdict.value,
         "message": m.message}
        for m in status.analysis if m.version == version and m.at >= since]
    note = None
    if len(status.analysis) >= MAX_MEASUREMENTS:
        note = (f"status keeps the latest {MAX_MEASUREMENTS} measurements of all metrics; earlier ones of this "
                "rollout may be gone")
    elif not measurements:
        note = "no measurements of this version"
    hooks = [{"stage": h.stage, "hook": h.hook, "job": h.job, "version": h.version, "state": h.state,
              "startedAt": h.started_at, "finishedAt": h.finished_at, "message": h.message}
             for h in status.hooks if h.version == version and h.started_at >= since]
    events = [{"at": _stamp(_event_time(e)), "type": e.get("type", "Normal"), "reason": e.get("reason", ""),
               "message": e.get("message", ""), "count": e.get("count") or 1} for e in window]
    return {"steps": _steps(status, policy, entry, started, window, measurements), "hooks": hooks,
            "measurements": measurements, "measurementsNote": note,
            "events": events, "eventsNote": None if events else EVENTS_GONE}


# --- zero downtime -----------------------------------------------------------------------------


def _zero_downtime(name: str, status: ReleaseStatus, window: list[Body]) -> Body:
    """Not recorded yet: status holds only the Ready pods of each track at the last pass. What the
    operator did about a candidate losing readiness is in TrafficWithdrawn events while they last."""
    withdrawn = [f"{_stamp(_event_time(e))}: {e.get('message', '')}" for e in window
                 if e.get("reason") == reasons.TRAFFIC_WITHDRAWN]
    return {
        "recorded": False, "activeService": name,
        "readyNow": {"stable": status.replicas.get("stable", 0), "canary": status.replicas.get("canary", 0)},
        "withdrawn": withdrawn,
        "note": (f"The operator does not yet record whether Service {name} ever had no Ready endpoint during "
                 "the rollout. By design it never selects a track with no Ready pod while the other has some, "
                 "but no status field shows that this held."),
    }


# --- rollback plan -----------------------------------------------------------------------------


def patch_command(name: str, namespace: str, version: str, template: Body) -> str:
    """`kubectl patch` that sets the Release's version and pod template, and nothing else."""
    ops = [{"op": "replace", "path": "/spec/version", "value": version},
           {"op": "replace", "path": "/spec/template", "value": template}]
    return f"kubectl patch rel {name} -n {namespace} --type json -p " + shlex.quote(
        json.dumps(ops, separators=(",", ":"), sort_keys=True))


def _revert(name: str, version: str) -> str:
    return (f"git log --oneline -S '{version}' -- <path of {name}'s manifest>   # find the commit\n"
            "git revert <that commit> && git push")


def _rollback(release: Body, status: ReleaseStatus, entry: HistoryEntry | None, version: str,
              previous: str | None, prior: StableSpec | None, source: str) -> Body:
    """The commands that go back, right for where the rollout is. `prior` is the version it
    started from with its template as written, from status (exact: re-applying it is Sluice's fast
    rollback) or from ReplicaSet history (server defaults included: maybe seen as a new template)."""
    name, namespace = release["metadata"]["name"], release["metadata"]["namespace"]
    flags = f"{name} -n {namespace}"
    stable = prior if entry is None or entry.outcome != "Succeeded" else None
    found = "" if source == "status" else f" (its template from Deployment {name}'s ReplicaSet history)"
    gitops = ("With Argo CD or Flux self-heal, a `kubectl patch` is undone from Git: change Git instead.")
    notes: list[str] = []
    commands: list[Body] = []
    if entry is None:
        summary = (f"The rollout of {version} is under way: it has {status.canary_weight}% of the traffic, "
                   f"{status.stable_version} the rest.")
        if status.strategy == "blueGreen" and status.canary_weight == 100:
            summary += f" The switch is done, and {status.stable_version} is still warm: going back is instant."
        commands.append({"what": f"Roll back now: all traffic to {status.stable_version} at once, then the "
                                 f"candidate scaled down", "run": f"sluice abort {flags}"})
        commands.append({"what": f"Then make Git ask for {status.stable_version} again (until then the spec names "
                                 f"{version}; Sluice will not ship it again unless retried)",
                         "run": _revert(name, version)})
        if stable is not None:
            commands.append({"what": f"Or, without Git, re-apply {stable.version}{found}: a fast rollback, no new "
                                     "rollout",
                             "run": patch_command(name, namespace, stable.version, stable.template)})
        notes.append(gitops)
    elif status.phase == Phase.ROLLED_BACK:
        summary = (f"Already rolled back: all traffic is on {status.stable_version}, and {version}'s pods were "
                   "scaled down. The spec still asks for " + f"{version}.")
        commands.append({"what": f"Stay on {status.stable_version}: revert the change in Git",
                         "run": _revert(name, version)})
        if stable is not None:
            commands.append({"what": f"Or, without Git, set the spec back to {stable.version}{found} (the stable "
                                     "version: no new rollout)",
                             "run": patch_command(name, namespace, stable.version, stable.template)})
        commands.append({"what": f"Or try {version} again as it is, from the first step",
                         "run": f"sluice retry {flags}"})
        notes.append(gitops)
    elif status.phase == Phase.FAILED:
        summary = (f"{version} failed ({entry.reason}) and nothing was rolled back: a plain rolling update has no "
                   f"policy to roll back by, so Deployment {name} may run pods of both versions.")
        if stable is not None and stable.version != version:
            commands.append({"what": f"Go back to {stable.version}{found}: re-applying the stable version is a "
                                     "fast rollback, Sluice restores its template at once",
                             "run": patch_command(name, namespace, stable.version, stable.template)})
            commands.append({"what": "Or revert the change in Git", "run": _revert(name, version)})
            notes.append(gitops)
        else:
            notes.append("There is no earlier version of this Release to go back to: fix forward.")
        commands.append({"what": f"Or try {version} again (after fixing what kept it from being Ready)",
                         "run": f"sluice retry {flags}"})
    elif entry.outcome != "Succeeded":
        summary = (f"The rollout of {version} ended ({entry.outcome}: {entry.reason}); "
                   f"{status.stable_version} is stable and serves all traffic. Nothing to roll back.")
    elif previous is None:
        summary = f"{version} is the first version of this Release: there is nothing earlier to go back to."
    else:
        policy = (release["spec"].get("policyRef") or {}).get("name")
        how = f"under policy {policy} (its steps and analysis)" if policy else "as a plain rolling update"
        summary = (f"{version} is stable. Going back to {previous} is a new rollout of {previous} {how}; "
                   "`sluice abort` during it keeps " + f"{version}.")
        commands.append({"what": f"Revert the change in Git (GitOps): Sluice rolls {previous} out",
                         "run": _revert(name, version)})
        if prior is not None:
            commands.append({"what": f"Or, without Git, apply {previous} again{found}",
                             "run": patch_command(name, namespace, prior.version, prior.template)})
        else:
            notes.append(f"{previous}'s pod template is no longer in the cluster (status or ReplicaSet history): "
                         "take it from Git.")
        if policy:
            commands.append({"what": "In an emergency, skip the remaining steps of that rollout",
                             "run": f"sluice promote --full {flags}"})
        notes.append(gitops)
    return {"summary": summary, "commands": commands, "notes": notes}


# --- handoff -----------------------------------------------------------------------------------


def _handoff(release: Body, status: ReleaseStatus, policy: RolloutPolicySpec | None, entry: HistoryEntry | None,
             version: str, previous: str | None, raw_policy: Body | None) -> Body:
    name, namespace = release["metadata"]["name"], release["metadata"]["namespace"]
    flags = f"{name} -n {namespace}"
    watch: list[str] = []
    if entry is None:
        watch.append(f"`sluice get rel {flags} --watch`: step, weight, pods and measurements, live")
        if status.phase == Phase.PAUSED:
            watch.append(f"It waits for a person: {status.message}")
        if status.pause_reason == reasons.WAITING_FOR_PROMOTE:
            watch.append(f"To go on once satisfied: `sluice promote {flags}`")
    elif status.phase == Phase.ROLLED_BACK:
        watch.append(f"Why {version} was rolled back: {entry.reason}")
        watch.append(f"The Release stays Stalled (RolledBack) until Git stops asking for {version} or someone "
                     "retries it: decide (see the rollback plan)")
    elif status.phase == Phase.FAILED:
        watch.append(f"Act now: {status.message}. `sluice get rel {flags} --watch` shows the pods of both versions")
    else:
        watch.append(f"`kubectl get rel {flags}`: Ready=True while {status.stable_version} runs all its pods")
    subject = version if entry is None else status.stable_version
    for metric in policy.analysis.metrics if policy else []:
        rule = metric.success_condition or (f"fails when {metric.failure_condition}" if metric.failure_condition
                                            else "against the stable version")
        watch.append(f"metric {metric.name} ({rule}) for {subject}")
    for hook in status.hooks:
        if hook.version == version and hook.stage != "preRollout":
            watch.append(f"{hook.stage} hook {hook.hook} (Job {hook.job}): {hook.state}"
                         + (f", {hook.message}" if hook.message else ""))
    spec = (raw_policy or {}).get("spec") or {}
    links = [{"name": link.get("name", ""), "url": link.get("url", "")} for link in spec.get("links") or []]
    return {"watch": watch, "cleanup": _cleanup(name, status, policy, entry, version, previous), "links": links}


def _cleanup(name: str, status: ReleaseStatus, policy: RolloutPolicySpec | None, entry: HistoryEntry | None,
             version: str, previous: str | None) -> list[str]:
    canary_deployment = objects.deployment_name(name, "canary")
    old = previous or status.stable_version or "the old version"
    done = entry is not None
    succeeded = entry is not None and entry.outcome == "Succeeded"
    lines: list[str] = []
    if status.strategy == "canary":
        lines.append(f"Deployment {canary_deployment} was scaled to zero at once when the rollout ended"
                     if done else f"At promotion, Deployment {name} takes {version} at full size and "
                     f"{canary_deployment} is scaled to zero at once"
                     + ("" if policy is not None and policy.bake is not None else f": {old} is not kept warm"))
    elif status.strategy == "blueGreen":
        delay = policy.strategy.blue_green.scale_down_delay if policy and policy.strategy.blue_green else None
        kept = f"scaleDownDelay ({delay})" if delay else "scaleDownDelay"
        if succeeded:
            lines.append(f"{old} was kept warm on Deployment {name} for {kept} after the switch, then replaced "
                         f"by {version}; {canary_deployment} was scaled to zero")
        elif done:
            lines.append(f"Deployment {canary_deployment} was scaled to zero once traffic was back on {old}")
        else:
            lines.append(f"After the switch, {old} stays warm on Deployment {name} for {kept}: a rollback "
                         f"meanwhile is an instant switch back. Then {name} takes {version} and "
                         f"{canary_deployment} is scaled to zero")
    elif status.phase == Phase.FAILED:
        lines.append(f"Deployment {name} stopped part way: the pods of {old} it has not replaced keep serving "
                     f"beside those of {version}")
    elif status.phase == Phase.ROLLED_BACK:
        lines.append(f"Deployment {name} took {old}'s template back (from status) and replaced {version}'s pods")
    else:
        verb = "replaced" if done else "replaces"
        lines.append(f"Deployment {name} {verb} {old}'s pods in place; its ReplicaSet history keeps {old}'s "
                     "template at zero pods")
    if policy is not None and policy.bake is not None:
        lines.append(f"The policy bakes for {policy.bake.duration} after promotion, {old} kept warm: a breach "
                     "rolls back to it at once")
    return lines

"""What the report hands over: zero downtime as far as it is known, the rollback plan with the
exact commands for the phase the Release is in, and the next steps (what to watch, when the old
version goes away, the policy's links)."""

from __future__ import annotations

import json
import shlex
from datetime import timedelta
from typing import Any

from sluice.api.durations import parse_duration
from sluice.api.models import HistoryEntry, Phase, ReleaseStatus, RolloutPolicySpec, StableSpec
from sluice.cli.report_timeline import event_time, hook_runs, stamp, time_of
from sluice.kube import objects
from sluice.plan import bluegreen, reasons
from sluice.plan.release import step_list
from sluice.plan.types import iso

Body = dict[str, Any]


def zero_downtime(name: str, status: ReleaseStatus, window: list[Body]) -> Body:
    """Not recorded yet: status holds only the Ready pods of each track at the last pass. What the
    operator did about a candidate losing readiness is in TrafficWithdrawn events while they last."""
    withdrawn = [f"{stamp(event_time(e))}: {e.get('message', '')}" for e in window
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


def rollback(release: Body, status: ReleaseStatus, entry: HistoryEntry | None, version: str,
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
        weight, stable_version = status.canary_weight, status.stable_version
        share = (f"{stable_version} serves all traffic" if weight == 0 else f"{version} has all the traffic"
                 if weight == 100 else f"{version} has {weight}% of the traffic, {stable_version} the rest")
        summary = f"The rollout of {version} is under way: {share}."
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


def handoff(release: Body, status: ReleaseStatus, policy: RolloutPolicySpec | None, entry: HistoryEntry | None,
            version: str, started: str | None, previous: str | None, raw_policy: Body | None) -> Body:
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
    for hook in hook_runs(status, version, started):
        if hook.stage != "preRollout":
            watch.append(f"{hook.stage} hook {hook.hook} (Job {hook.job}): {hook.state}"
                         + (f", {hook.message}" if hook.message else ""))
    spec = (raw_policy or {}).get("spec") or {}
    links = [{"name": link.get("name", ""), "url": link.get("url", "")} for link in spec.get("links") or []]
    return {"watch": watch, "cleanup": _cleanup(name, status, policy, entry, version, previous), "links": links}


def _warm_until(status: ReleaseStatus, policy: RolloutPolicySpec | None) -> str | None:
    """When the old version stops being warm, once a blue-green rollout waits out scaleDownDelay."""
    if policy is None or policy.strategy.blue_green is None or status.current_step is None:
        return None
    names = step_list(policy)
    began = time_of(status.step_started_at)
    if began is None or status.current_step >= len(names) or names[status.current_step] != bluegreen.WARM:
        return None
    return iso(began + timedelta(seconds=parse_duration(policy.strategy.blue_green.scale_down_delay)))


def _cleanup(name: str, status: ReleaseStatus, policy: RolloutPolicySpec | None, entry: HistoryEntry | None,
             version: str, previous: str | None) -> list[str]:
    canary_deployment = objects.deployment_name(name, "canary")
    old = previous or status.stable_version or "the old version"
    done = entry is not None
    succeeded = entry is not None and entry.outcome == "Succeeded"
    lines: list[str] = []
    if status.strategy == "canary":
        ended = f"at once at promotion ({old} was not kept warm)" if succeeded else \
            f"once all traffic was back on {old}"
        lines.append(f"Deployment {canary_deployment} was scaled to zero {ended}"
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
            until = _warm_until(status, policy)
            if until:
                lines.append(f"{old} is kept warm until {until[11:19]} UTC (unless the rollout is held)")
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

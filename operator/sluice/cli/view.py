"""What `sluice get` shows: a Release as a rich panel on a terminal, plain text elsewhere.

Pure functions of API objects, so they are tested without a cluster.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from sluice.api.durations import format_duration
from sluice.api.models import Phase, ReleaseStatus, RolloutPolicySpec, Verdict
from sluice.plan.release import step_list

PHASE_STYLE = {
    Phase.SUCCEEDED: "bold green", Phase.PROGRESSING: "bold cyan", Phase.PAUSED: "bold yellow",
    Phase.ROLLED_BACK: "bold red", Phase.FAILED: "bold red", Phase.PENDING: "dim",
}
VERDICT_STYLE = {
    Verdict.SUCCESSFUL: "green", Verdict.FAILED: "red", Verdict.ERROR: "red", Verdict.INCONCLUSIVE: "yellow",
    Verdict.WAITING: "dim",
}
MEASUREMENTS = 5  # per metric
STATE_STYLE = {"Ready": "green", "Reconciling": "cyan", "Stalled": "red"}


def state(status: ReleaseStatus) -> str:
    """The kstatus condition that holds, with its reason, as GitOps tools see the Release:
    "Ready", "Reconciling (WaitingForPromote)", "Stalled (RolledBack)"; "-" before the first pass."""
    for kind in ("Stalled", "Reconciling", "Ready"):
        held = next((c for c in status.conditions if c.type == kind and c.status == "True"), None)
        if held:
            return kind if kind == "Ready" else f"{kind} ({held.reason})"
    return "-"


def age(stamp: str | None, now: datetime) -> str:
    if not stamp:
        return "-"
    then = datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return format_duration(max(0.0, (now - then).total_seconds()))


def _policy(policy: dict[str, Any] | None) -> RolloutPolicySpec | None:
    try:
        return RolloutPolicySpec.model_validate(policy["spec"]) if policy else None
    except ValueError:
        return None


def facts(release: dict[str, Any], policy: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
    """Everything the view shows, computed once for both renderings."""
    status = ReleaseStatus.model_validate(release.get("status") or {})
    spec = release["spec"]
    # A rollout runs against the policy it started with (its snapshot): its steps are listed, not
    # those of the policy as edited since.
    running = {"spec": status.policy.spec} if status.policy is not None and status.candidate_version else None
    parsed = _policy(running) or _policy(policy)
    steps = step_list(parsed) if parsed else []
    rolling = status.candidate_version is not None
    current = status.current_step if rolling else None
    versions = status.stable_version or "-"
    if status.candidate_version:
        versions += f" -> {status.candidate_version}"
    by_metric: dict[str, list[Any]] = {}
    subject = status.candidate_version or status.stable_version
    for measurement in status.analysis:
        if measurement.version == subject:
            by_metric.setdefault(measurement.metric, []).append(measurement)
    return {
        "name": release["metadata"]["name"], "namespace": release["metadata"]["namespace"],
        "versions": versions, "phase": status.phase, "strategy": status.strategy or "-",
        "weight": status.canary_weight, "steps": steps, "current": current,
        "step_age": age(status.step_started_at, now) if rolling else "-",
        "pods": status.replicas, "replicas": spec.get("replicas", 1),
        "metrics": {k: v[-MEASUREMENTS:] for k, v in by_metric.items()},
        "message": status.message, "conditions": status.conditions, "state": state(status),
        "policy": (spec.get("policyRef") or {}).get("name", "(none: plain rolling update)"),
        "hooks": _latest_hooks(status),
    }


def _latest_hooks(status: ReleaseStatus) -> list[str]:
    """The hook runs of the latest rollout that had any, as lines: "preRollout migrate: Succeeded (Job ...)"."""
    if not status.hooks:
        return []
    latest = status.hooks[-1].rollout
    return [f"{run.stage} {run.hook} ({run.version}): {run.state}, Job {run.job}"
            + (f": {run.message}" if run.state == "Failed" else "")
            for run in status.hooks if run.rollout == latest]


def plain(release: dict[str, Any], policy: dict[str, Any] | None, now: datetime) -> str:
    f = facts(release, policy, now)
    lines = [
        f"Release {f['namespace']}/{f['name']}",
        f"  Version:   {f['versions']}",
        f"  Phase:     {f['phase'].value}",
        f"  State:     {f['state']}",
        f"  Strategy:  {f['strategy']} (policy {f['policy']})",
        f"  Weight:    {f['weight']}%",
        f"  Pods:      stable {f['pods'].get('stable', 0)}/{f['replicas']} ready, "
        f"canary {f['pods'].get('canary', 0)} ready",
    ]
    if f["steps"]:
        lines.append("  Steps:")
        for i, step in enumerate(f["steps"]):
            mark = ">" if i == f["current"] else "x" if f["current"] is not None and i < f["current"] else " "
            extra = f"  (for {f['step_age']})" if i == f["current"] else ""
            lines.append(f"    {mark} {i + 1}. {step}{extra}")
    if f["metrics"]:
        lines.append("  Analysis:")
        for metric, measurements in f["metrics"].items():
            shown = ", ".join(_measure_text(m) for m in measurements)
            lines.append(f"    {metric}: {shown}")
    if f["hooks"]:
        lines.append("  Hooks:")
        lines += [f"    {hook}" for hook in f["hooks"]]
    lines.append(f"  Message:   {f['message']}")
    return "\n".join(lines)


def _measure_text(m: Any) -> str:
    value = "-" if m.value is None else f"{m.value:.4g}"
    return f"{value} {m.verdict.value}"


def rich_view(release: dict[str, Any], policy: dict[str, Any] | None, now: datetime) -> Panel:
    f = facts(release, policy, now)
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("Version", f["versions"])
    head.add_row("Phase", Text(f["phase"].value, style=PHASE_STYLE.get(f["phase"], "")))
    head.add_row("State", Text(f["state"], style=STATE_STYLE.get(f["state"].split(" ")[0], "")))
    head.add_row("Strategy", f"{f['strategy']}  [dim](policy {f['policy']})[/dim]")
    weight = int(f["weight"])
    head.add_row("Weight", f"[magenta]{'█' * (weight // 5)}[/magenta][dim]{'░' * (20 - weight // 5)}[/dim] {weight}%")
    head.add_row("Pods", f"stable {f['pods'].get('stable', 0)}/{f['replicas']} ready   "
                         f"canary {f['pods'].get('canary', 0)} ready")
    parts: list[Any] = [head]
    if f["steps"]:
        steps = Table(box=None, show_header=False, padding=(0, 1))
        for i, step in enumerate(f["steps"]):
            if f["current"] is not None and i < f["current"]:
                steps.add_row("[green]✔[/green]", f"[dim]{i + 1}. {step}[/dim]", "")
            elif i == f["current"]:
                steps.add_row("[cyan]▶[/cyan]", f"[bold]{i + 1}. {step}[/bold]", f"[dim]{f['step_age']}[/dim]")
            else:
                steps.add_row(" ", f"{i + 1}. {step}", "")
        parts += [Text("Steps", style="bold"), steps]
    if f["metrics"]:
        table = Table(box=None, padding=(0, 1), header_style="bold")
        table.add_column("Analysis")
        table.add_column(f"last {MEASUREMENTS} measurements")
        for metric, measurements in f["metrics"].items():
            cells = Text()
            for m in measurements:
                cells.append(_measure_text(m) + "  ", style=VERDICT_STYLE.get(m.verdict, ""))
            table.add_row(metric, cells)
        parts.append(table)
    if f["hooks"]:
        parts += [Text("Hooks", style="bold"), Text("\n".join(f["hooks"]))]
    parts.append(Text(f["message"], style="italic"))
    return Panel(Group(*parts), title=f"[bold]{f['namespace']}/{f['name']}[/bold]", expand=False)


def listing(releases: list[dict[str, Any]], now: datetime, all_namespaces: bool) -> Table:
    table = Table(box=None, header_style="bold", padding=(0, 2), pad_edge=False)
    for column in (["NAMESPACE"] if all_namespaces else []) + ["NAME", "VERSION", "PHASE", "WEIGHT", "STEP",
                                                               "AGE", "MESSAGE"]:
        table.add_column(column, overflow="fold" if column == "MESSAGE" else "ellipsis")
    for release in releases:
        f = facts(release, None, now)
        row = [f["name"], f["versions"], Text(f["phase"].value, style=PHASE_STYLE.get(f["phase"], "")),
               f"{f['weight']}%", "-" if f["current"] is None else str(f["current"] + 1),
               age(release["metadata"].get("creationTimestamp"), now), f["message"]]
        table.add_row(*([f["namespace"]] if all_namespaces else []), *row)
    return table

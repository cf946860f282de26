"""The deployment report as Markdown: a view of report.build()'s JSON object and nothing else, so
`sluice report` and `sluice report -o json` always say the same."""

from __future__ import annotations

from typing import Any

Body = dict[str, Any]

OUTCOME = {"Succeeded": "✅ Succeeded", "RolledBack": "↩️ RolledBack", "Failed": "❌ Failed",
           "Superseded": "Superseded", "InProgress": "⏳ In progress"}
STATE = {"done": "✔ done", "skipped": "⏭ skipped", "current": "▶ current", "paused": "⏸ paused",
         "failed": "✖ failed", "stopped": "■ stopped", "notReached": "not reached", "unknown": "-"}


def _cell(value: Any) -> str:
    """A table cell: no line breaks, no column separators."""
    return "-" if value is None or value == "" else str(value).replace("|", "\\|").replace("\n", " ")


def _clock(stamp: str | None, day: str | None, approximate: bool = False) -> str:
    """"12:01:05" on the rollout's first day, "2026-11-29 00:00:05" after it; "~12:01:05" when
    it is approximate."""
    if not stamp:
        return "-"
    return ("~" if approximate else "") + (stamp[11:19] if day and stamp[:10] == day else
                                            f"{stamp[:10]} {stamp[11:19]}")


def _when(stamp: str | None) -> str:
    return f"{stamp[:10]} {stamp[11:19]} UTC" if stamp else "-"


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows)]


def markdown(report: Body) -> str:
    s, release = report["summary"], report["release"]
    day = (s["startedAt"] or "")[:10] or None
    title = f"# Deployment report: {release['namespace']}/{release['name']} {s['version']}"
    lines = [title, ""]
    lines += _summary(s)
    lines += _changes(report["changes"])
    lines += _timeline(report["timeline"], day)
    lines += _zero_downtime(report["zeroDowntime"])
    lines += _rollback(report["rollback"])
    lines += _handoff(report["handoff"])
    lines += _history(report["history"])
    return "\n".join(lines).rstrip("\n") + "\n"


def _summary(s: Body) -> list[str]:
    env = s["environment"]
    where = f"namespace `{env['namespace']}`" + (f", cluster `{env['cluster']}`" if env["cluster"] else "")
    previous = f" (previous stable: `{s['previousVersion']}`)" if s["previousVersion"] else ""
    strategy = s["strategy"] or "-"
    strategy += f", policy `{s['policy']}`" if s["policy"] else " (no policy: a plain rolling update)"
    outcome = f"**{OUTCOME.get(s['outcome'], s['outcome'])}**"
    if s["outcome"] == "InProgress":
        outcome += f" ({s['phase']})"
    if s["reason"]:
        outcome += f": {s['reason']}"
    rows = [["Version", f"`{s['version']}`{previous}"], ["Strategy", strategy], ["Environment", where],
            ["Started", _when(s["startedAt"])], ["Finished", _when(s["finishedAt"])],
            ["Duration", (s["duration"] or "-") + (" so far" if s["outcome"] == "InProgress" else "")],
            ["Outcome", outcome]]
    return ["## Summary", "", *_table(["", ""], rows), "", f"Status now: {s['message'] or '-'}", ""]


def _changes(c: Body) -> list[str]:
    lines = ["## Changes", ""]
    if c["items"]:
        lines += [f"- {item}" for item in c["items"]]
        if c["source"] == "status":
            lines += ["", "(computed from the stable template in status; recorded in history when the rollout ends)"]
        if c["note"]:
            lines += ["", f"({c['note']})"]
    else:
        lines.append("Not recorded: the history entry of this rollout has none (a rollout superseded or abandoned "
                     "for the stable version, or one older than change lists), and the templates to compare "
                     "are no longer in status.")
    touched = [(kind, c["objects"][key]) for kind, key in (
        ("Deployments", "deployments"), ("Services", "services"), ("HTTPRoute", "httpRoutes"), ("Jobs", "jobs"))]
    named = [f"{kind} {', '.join(f'`{n}`' for n in names)}" for kind, names in touched if names]
    lines += ["", "Objects touched: " + "; ".join(named) + "."]
    if c["templateDiff"]:
        lines += ["", "Pod template:", "", "```diff", c["templateDiff"], "```"]
    return [*lines, ""]


def _timeline(t: Body, day: str | None) -> list[str]:
    lines = ["## Timeline", "", "### Steps", ""]
    lines += _table(["#", "Step", "Weight", "Started", "Ended", "State"], [
        [r["number"], r["step"], "-" if r["weight"] is None else f"{r['weight']}%",
         _clock(r["startedAt"], day, "startedAt" in r["approximate"]),
         _clock(r["endedAt"], day, "endedAt" in r["approximate"]),
         STATE.get(r["state"], r["state"])] for r in t["steps"]]) if t["steps"] else [
        "(the steps are unknown: the rollout's RolloutPolicy is gone, or uses another strategy now)"]
    if any(r["approximate"] for r in t["steps"]):
        lines += ["", "(~: inferred from the measurements of the analysis steps, as the events are gone)"]
    lines += ["", "### Hooks", ""]
    if t["hooks"]:
        lines += _table(["Stage", "Hook", "Job", "State", "Started", "Finished", "Message"], [
            [h["stage"], h["hook"], f"`{h['job']}`", h["state"], _clock(h["startedAt"], day),
             _clock(h["finishedAt"], day), h["message"]] for h in t["hooks"]])
    else:
        lines.append("(no hooks ran in this rollout)")
    lines += ["", "### Measurements", ""]
    if t["measurements"]:
        lines += _table(["Time", "Step", "Metric", "Value", "Verdict", "Detail"], [
            [_clock(m["at"], day), "-" if m["step"] is None else
             f"{m['step']}" + (f" ({m['stepName']})" if m["stepName"] else ""),
             m["metric"], m["value"], m["verdict"], m["message"]] for m in t["measurements"]])
    if t["measurementsNote"]:
        lines += ([""] if t["measurements"] else []) + [f"({t['measurementsNote']})"]
    lines += ["", "### Events", ""]
    if t["events"]:
        lines += _table(["Time", "Event", "Message"], [
            [_clock(e["at"], day), ("⚠️ " if e["type"] == "Warning" else "") + e["reason"]
             + (f" ({e['count']} times)" if e["count"] > 1 else ""), e["message"]] for e in t["events"]])
    else:
        lines.append(f"({t['eventsNote']})")
    return [*lines, ""]


def _zero_downtime(z: Body) -> list[str]:
    ready = z["readyNow"]
    lines = ["## Zero downtime", "", ("" if z["recorded"] else "**Not recorded.** ") + z["note"], "",
             f"Ready pods at the operator's last pass: stable {ready['stable']}, canary {ready['canary']}."]
    if z["withdrawn"]:
        lines += ["", "Traffic the operator withdrew from a candidate that lost readiness:", "",
                  *(f"- {line}" for line in z["withdrawn"])]
    return [*lines, ""]


def _rollback(r: Body) -> list[str]:
    lines = ["## Rollback plan", "", r["summary"], ""]
    for number, command in enumerate(r["commands"], 1):
        lines += [f"{number}. {command['what']}:", "", "   ```sh",
                  *(f"   {line}" for line in command["run"].splitlines()), "   ```", ""]
    lines += [f"{note}" for note in r["notes"]]
    return [*lines, ""] if r["notes"] else lines


def _handoff(h: Body) -> list[str]:
    lines = ["## Next steps", "", "Watch:", "", *(f"- {line}" for line in h["watch"]), "", "Clean-up:", "",
             *(f"- {line}" for line in h["cleanup"]), ""]
    if h["links"]:
        lines += ["Links:", "", *(f"- [{link['name']}]({link['url']})" for link in h["links"]), ""]
    else:
        lines += ["Links: none declared (a RolloutPolicy lists them in `spec.links`).", ""]
    return lines


def _history(history: list[Body]) -> list[str]:
    if not history:
        return []
    return ["## History", "", *_table(["Version", "Outcome", "Started", "Finished", "Reason", "Changes"], [
        [h["version"], h["outcome"], h["startedAt"], h["finishedAt"], h["reason"],
         "; ".join(h["changes"]) if h["changes"] else None] for h in history]), ""]

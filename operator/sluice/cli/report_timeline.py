"""The report's timeline: steps with their weights and times, hooks, measurements and events.
Times come from events while they exist, else from status (see report.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sluice.api.models import HistoryEntry, HookRun, Phase, ReleaseStatus, RolloutPolicySpec
from sluice.plan import bluegreen, canary, reasons
from sluice.plan.analysis import MAX_MEASUREMENTS
from sluice.plan.release import step_list
from sluice.plan.types import iso, show

Body = dict[str, Any]
STEP_DONE = re.compile(r"^step (\d+)/\d+ \(.*\) complete$")
STEP_PROMOTED = re.compile(r"^step (\d+)( \(.*\))? promoted by ")
EVENTS_GONE = ("no events left: the API server keeps events for an hour by default; the steps above "
               "come from status")


def time_of(text: str | None) -> datetime | None:
    """An API server time (RFC 3339, maybe with fractions) as a datetime, to the second."""
    return datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC) if text else None


def stamp(text: str | None) -> str | None:
    """The same time as the report writes it: stamp("2026-11-28T12:00:00.123456Z") == "2026-11-28T12:00:00Z"."""
    moment = time_of(text)
    return iso(moment) if moment else None


def event_time(event: Body) -> str | None:
    found = event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")
    return str(found) if found else None


def hook_runs(status: ReleaseStatus, version: str, since: str | None) -> list[HookRun]:
    """The hook runs of the reported rollout: those of status.rolloutId (the latest rollout's
    id, kept after it ended), or for a status older than ids, this version's since it started."""
    if status.rollout_id:
        return [h for h in status.hooks if h.rollout == status.rollout_id]
    return [h for h in status.hooks if h.version == version and h.started_at >= (since or "")]


def _weights(policy: RolloutPolicySpec) -> list[int]:
    """Percent of traffic on the new version once each step of step_list() is done. Steps past a
    canary's own (a bake) and past a blue-green switch run with all of it."""
    strategy, names = policy.strategy, step_list(policy)
    if strategy.canary:
        steps = strategy.canary.steps
        return [canary.weight_at(steps, i) if i < len(steps) else 100 for i in range(len(names))]
    if strategy.blue_green:
        switch = names.index(bluegreen.SWITCH)
        return [100 if i >= switch else 0 for i in range(len(names))]
    return [100] * len(names)


def _step_events(window: list[Body], count: int) -> tuple[dict[int, str], int | None]:
    """When steps completed, from events: StepCompleted and `sluice promote`; and the index from
    which `sluice promote --full` skipped the rest."""
    done: dict[int, str] = {}
    skipped_from = None
    for event in window:
        at, message = stamp(event_time(event)), str(event.get("message", ""))
        found = STEP_DONE.match(message) if event.get("reason") == reasons.STEP_COMPLETED else \
            STEP_PROMOTED.match(message) if event.get("reason") == reasons.REQUEST_APPLIED else None
        if found and at:
            done.setdefault(int(found.group(1)) - 1, at)
        elif event.get("reason") == reasons.REQUEST_APPLIED and message.startswith("promoted fully") \
                and skipped_from is None:
            skipped_from = next((i for i in range(count) if i not in done), count)
    return done, skipped_from


def _steps(status: ReleaseStatus, policy: RolloutPolicySpec | None, planned: bool, entry: HistoryEntry | None,
           started: str | None, window: list[Body], measured: list[Body]) -> list[Body]:
    """One row per step. Times come from events (StepCompleted, `sluice promote`) while they
    exist, and from status: when the rollout started and when the current step did; and, marked
    approximate, from the measurements of analysis steps (their first is taken as the step starts,
    their last in the pass that completes it)."""
    finished = stamp(entry.finished_at) if entry else None
    if policy is None and not planned:  # a plain rolling update (or a first version): the Deployment does it all
        state = "current" if entry is None else {"Succeeded": "done", "Failed": "failed"}.get(entry.outcome, "stopped")
        return [{"number": 1, "step": "rolling update of the Deployment", "weight": None, "startedAt": started,
                 "endedAt": finished, "state": state, "approximate": []}]
    if policy is None:
        return []  # the policy is gone, or has another strategy now: its steps are unknown
    names, weights = step_list(policy), _weights(policy)
    exact, skipped_from = _step_events(window, len(names))
    ends = {index: (at, False) for index, at in exact.items()}
    current = status.current_step
    if current is not None and current > 0 and status.step_started_at:
        ends.setdefault(current - 1, (stamp(status.step_started_at) or "", False))  # the next step began then
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
            begun = (stamp(status.step_started_at), False)
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


def timeline(status: ReleaseStatus, policy: RolloutPolicySpec | None, planned: bool, entry: HistoryEntry | None,
             version: str, started: str | None, window: list[Body]) -> Body:
    """`planned`: the rollout ran under a policy (whose steps are unknown if `policy` is None)."""
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
             for h in hook_runs(status, version, started)]
    events = [{"at": stamp(event_time(e)), "type": e.get("type", "Normal"), "reason": e.get("reason", ""),
               "message": e.get("message", ""), "count": e.get("count") or 1} for e in window]
    return {"steps": _steps(status, policy, planned, entry, started, window, measurements), "hooks": hooks,
            "measurements": measurements, "measurementsNote": note,
            "events": events, "eventsNote": None if events else EVENTS_GONE}



"""The deployment report against golden files.

Each case is tests/unit/golden/<case>.input.yaml (release, events, policy, before, now, cluster:
what `sluice report` fetches), rendered to <case>.md, and for one case also to <case>.json. The
inputs were made by the real planner (tests/unit/report_cases.py), or, for the real-* cases,
captured from rollouts the e2e tests ran on the local cluster (a failed migration hook against a
real PostgreSQL, a bad version rolled back with its versioned config): SLUICE_CAPTURE_GOLDEN=1 with
those e2e tests rewrites them (`sluice report --save-inputs`). After an intended change of the report:

    UPDATE_GOLDEN=1 PYTHONPATH=operator pytest tests/unit/test_report.py   # rewrites the goldens

and read the diff before committing it.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice.cli import report
from sluice.cli.report_markdown import markdown

GOLDEN = Path(__file__).parent / "golden"
DOCS = Path(__file__).resolve().parents[2] / "docs"
CASES = sorted(p.name.removesuffix(".input.yaml") for p in GOLDEN.glob("*.input.yaml"))
JSON_GOLDEN = {"canary-succeeded"}
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def inputs(case: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((GOLDEN / f"{case}.input.yaml").read_text())
    return loaded


def args(case: str) -> tuple[Any, ...]:
    given = inputs(case)
    now = datetime.fromisoformat(given["now"].replace("Z", "+00:00"))
    return given["release"], given["events"], given["policy"], given["before"], now, given["cluster"]


def check(path: Path, text: str) -> None:
    if UPDATE:
        path.write_text(text)
    assert path.exists(), f"{path.name} is missing: run with UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{path.name} differs: run with UPDATE_GOLDEN=1 and read the diff"


def test_the_cases_are_there() -> None:
    assert CASES == ["bluegreen-succeeded", "bluegreen-switched", "canary-rolled-back", "canary-succeeded",
                     "in-progress", "real-config-rolled-back", "real-hook-failed", "real-hook-succeeded",
                     "rolling-failed"]


@pytest.mark.parametrize("case", CASES)
def test_markdown_golden(case: str) -> None:
    check(GOLDEN / f"{case}.md", report.render(*args(case)))


@pytest.mark.parametrize("case", sorted(JSON_GOLDEN))
def test_json_golden(case: str) -> None:
    check(GOLDEN / f"{case}.json", report.as_json(*args(case)))


KEYS = {
    "": {"schema", "release", "summary", "changes", "timeline", "zeroDowntime", "rollback", "handoff", "history"},
    "summary": {"version", "previousVersion", "strategy", "policy", "environment", "startedAt", "finishedAt",
                "durationSeconds", "duration", "outcome", "phase", "reason", "message"},
    "changes": {"source", "items", "templateDiff", "note", "objects"},
    "timeline": {"steps", "hooks", "measurements", "measurementsNote", "events", "eventsNote"},
    "zeroDowntime": {"recorded", "activeService", "readyNow", "withdrawn", "note"},
    "rollback": {"summary", "commands", "notes"},
    "handoff": {"watch", "cleanup", "links"},
}


@pytest.mark.parametrize("case", CASES)
def test_json_has_the_documented_keys_and_markdown_is_its_view(case: str) -> None:
    built = report.build(*args(case))
    for section, keys in KEYS.items():
        assert set(built[section] if section else built) == keys, section
    assert built["schema"] == "sluice.dev/report/v1"
    assert json.loads(report.as_json(*args(case))) == built
    assert markdown(built) == report.render(*args(case))
    documented = (DOCS / "report.md").read_text()
    assert [key for keys in KEYS.values() for key in keys if f"`{key}`" not in documented] == []


def test_canary_succeeded_says_what_shipped_and_how_to_go_back() -> None:
    built = report.build(*args("canary-succeeded"))
    assert built["summary"]["outcome"] == "Succeeded" and built["summary"]["previousVersion"] == "1.2.0"
    assert built["summary"]["environment"] == {"namespace": "shop", "cluster": "prod-eu-1"}
    assert built["changes"]["source"] == "history"
    assert built["changes"]["items"] == [
        "version 1.2.0 -> 1.3.0",
        "image app: registry.example.com/shop/checkout:1.2.0 -> registry.example.com/shop/checkout:1.3.0",
        "env FEATURE_X: added", "resources app: cpu limit 500m -> 1",
        "config ConfigMap checkout-config-v7 -> checkout-config-v8"]
    assert built["changes"]["objects"] == {
        "deployments": ["checkout", "checkout-canary"], "services": ["checkout", "checkout-canary"],
        "httpRoutes": ["checkout"], "jobs": ["checkout-migrate-3bc78cf3", "checkout-smoke-test-e0bb6d2a"]}
    steps = built["timeline"]["steps"]
    assert [s["state"] for s in steps] == ["done"] * 6 and [s["weight"] for s in steps] == [20, 20, 50, 50, 50, 100]
    assert all(s["endedAt"] for s in steps) and not any(s["approximate"] for s in steps)
    assert {m["stepName"] for m in built["timeline"]["measurements"]} == {"analysis"}
    commands = [c["run"] for c in built["rollback"]["commands"]]
    assert commands[0].startswith("git log --oneline -S '1.3.0'")
    assert commands[1].startswith("kubectl patch rel checkout -n shop --type json -p ")
    assert '"value":"1.2.0"' in commands[1] and "checkout-config-v7" in commands[1]
    assert commands[2] == "sluice promote --full checkout -n shop"
    assert built["handoff"]["links"][0] == {"name": "runbook", "url": "https://runbooks.example.com/shop/checkout"}
    assert built["handoff"]["cleanup"] == [
        "Deployment checkout-canary was scaled to zero at once at promotion (1.2.0 was not kept warm)"]


def test_the_patch_command_re_applies_the_stable_version_exactly() -> None:
    release, *_ = args("canary-rolled-back")
    built = report.build(*args("canary-rolled-back"))
    patch = next(c["run"] for c in built["rollback"]["commands"] if c["run"].startswith("kubectl patch"))
    ops = json.loads(patch.split(" -p ", 1)[1].strip("'"))
    stable = release["status"]["stableSpec"]
    assert ops == [{"op": "replace", "path": "/spec/version", "value": stable["version"]},
                   {"op": "replace", "path": "/spec/template", "value": stable["template"]}]


def test_rolled_back_canary_names_the_failing_step_and_measurement() -> None:
    built = report.build(*args("canary-rolled-back"))
    assert built["summary"]["outcome"] == "RolledBack"
    states = [s["state"] for s in built["timeline"]["steps"]]
    assert states == ["done", "failed", "notReached", "notReached", "notReached", "notReached"]
    failed = [m for m in built["timeline"]["measurements"] if m["verdict"] == "Failed"]
    assert failed and failed[-1]["value"] == "0.271027" and failed[-1]["step"] == 2
    assert built["rollback"]["commands"][-1]["run"] == "sluice retry checkout -n shop"
    assert [h["stage"] for h in built["timeline"]["hooks"]] == ["preRollout", "postRollback"]


def test_without_events_the_steps_still_have_their_times_from_status() -> None:
    built = report.build(*args("bluegreen-succeeded"))
    assert built["timeline"]["events"] == [] and "an hour" in built["timeline"]["eventsNote"]
    steps = built["timeline"]["steps"]
    assert [s["step"] for s in steps] == ["preview", "prePromotionAnalysis", "switch", "postPromotionAnalysis",
                                          "scaleDownDelay"]
    assert all(s["startedAt"] and s["endedAt"] for s in steps)
    assert [s["approximate"] for s in steps] == [
        ["endedAt"], ["startedAt", "endedAt"], ["startedAt", "endedAt"], ["startedAt", "endedAt"], ["startedAt"]]
    assert "kept warm on Deployment checkout for scaleDownDelay (1m)" in built["handoff"]["cleanup"][0]


def test_a_failed_plain_rolling_update_points_back_to_the_stable_template() -> None:
    built = report.build(*args("rolling-failed"))
    assert built["summary"]["outcome"] == "Failed" and built["summary"]["policy"] is None
    assert "nothing was rolled back" in built["rollback"]["summary"]
    assert built["rollback"]["commands"][0]["run"].startswith("kubectl patch rel checkout -n shop")
    assert built["changes"]["items"][-1] == "resources app: cpu limit 500m -> 1"


def test_in_progress_waits_for_a_person_and_offers_abort() -> None:
    built = report.build(*args("in-progress"))
    assert built["summary"]["outcome"] == "InProgress" and built["summary"]["phase"] == "Paused"
    assert built["changes"]["source"] == "status"
    assert [s["state"] for s in built["timeline"]["steps"]] == ["done", "done", "done", "paused", "notReached"]
    assert built["rollback"]["commands"][0]["run"] == "sluice abort checkout -n shop"
    assert any("waits for a person" in line for line in built["handoff"]["watch"])
    assert built["zeroDowntime"]["recorded"] is False


DOC_HEADER = """> An example of `sluice report rel checkout -n shop`, produced by running the renderer
> (`sluice.cli.report.render`) on `tests/unit/golden/{case}.input.yaml`: a Release whose status
> the real planner wrote while driven through the rollout (`tests/unit/report_cases.py`), with the
> events its passes posted. It is the golden file `tests/unit/golden/{case}.md`, kept equal by
> `tests/unit/test_report.py` (`UPDATE_GOLDEN=1` rewrites both). The hook Jobs ran in that
> simulated cluster too.

"""


REAL_HEADER = """> A report of a real rollout: `sluice report` run by `tests/e2e/{test}` on the local cluster,
> its inputs saved with `--save-inputs` as `tests/unit/golden/{case}.input.yaml` (the namespace is
> the test's own). It is the golden file `tests/unit/golden/{case}.md`, kept equal by
> `tests/unit/test_report.py` (`UPDATE_GOLDEN=1` rewrites both).

"""


@pytest.mark.parametrize(("doc", "case"), [("report-rolled-back.md", "canary-rolled-back"),
                                           ("report-succeeded.md", "canary-succeeded")])
def test_the_example_reports_in_docs_are_the_goldens(doc: str, case: str) -> None:
    check(DOCS / doc, DOC_HEADER.format(case=case) + report.render(*args(case)))


@pytest.mark.parametrize(("doc", "case", "test"), [
    ("report-real-hook-succeeded.md", "real-hook-succeeded",
     "test_hooks.py (a migration against PostgreSQL, then the canary)"),
    ("report-real-hook-failed.md", "real-hook-failed", "test_hooks.py (a migration that fails against PostgreSQL)"),
    ("report-real-config-rolled-back.md", "real-config-rolled-back",
     "test_config.py (a bad version rolled back with its config)"),
])
def test_the_real_reports_in_docs_are_the_goldens(doc: str, case: str, test: str) -> None:
    check(DOCS / doc, REAL_HEADER.format(case=case, test=test) + report.render(*args(case)))


def test_the_cli_looks_for_the_previous_template_only_where_status_lacks_it() -> None:
    succeeded, rolled_back = inputs("canary-succeeded")["release"], inputs("canary-rolled-back")["release"]
    history = succeeded["status"]["history"]
    assert report.previous_template_hash(succeeded) == history[-2]["templateHash"]  # 1.2.0's
    assert report.previous_template_hash(rolled_back) is None  # status.stableSpec holds 1.2.0
    old = {**rolled_back, "status": {k: v for k, v in rolled_back["status"].items() if k != "stableSpec"}}
    assert report.previous_template_hash(old) == rolled_back["status"]["stableHash"]


def test_the_previous_template_is_read_from_the_stable_deployments_replica_sets() -> None:
    def replica_set(owner: str, digest: str, image: str) -> dict[str, Any]:
        return {"metadata": {"ownerReferences": [{"kind": "Deployment", "name": owner, "controller": True}]},
                "spec": {"template": {
                    "metadata": {"labels": {"app.kubernetes.io/name": "checkout", "pod-template-hash": "5d9f"},
                                 "annotations": {"sluice.dev/template-hash": digest, "team": "payments"}},
                    "spec": {"containers": [{"name": "app", "image": image, "imagePullPolicy": "IfNotPresent"}],
                             "restartPolicy": "Always", "dnsPolicy": "ClusterFirst"}}}}

    sets = [replica_set("checkout-canary", "abc", "shop:1.2.0-canary"), replica_set("checkout", "def", "shop:1.1.0"),
            replica_set("checkout", "abc", "shop:1.2.0")]
    assert report.template_in(sets, "checkout", "abc") == {
        "metadata": {"annotations": {"team": "payments"}},
        "spec": {"containers": [{"name": "app", "image": "shop:1.2.0"}]}}
    assert report.template_in(sets, "checkout", "zzz") is None


def test_without_the_policy_or_the_previous_template_the_report_says_what_it_cannot_know() -> None:
    release, events, _, _, now, cluster = args("canary-succeeded")
    built = report.build(release, events, None, None, now, cluster)
    assert built["summary"]["policy"] == "careful-canary" and built["timeline"]["steps"] == []
    assert built["changes"]["source"] == "history" and built["changes"]["templateDiff"] is None
    assert [c["run"].split()[0] for c in built["rollback"]["commands"]] == ["git", "sluice"]
    assert "1.2.0's pod template is no longer in the cluster" in built["rollback"]["notes"][0]
    text = report.render(release, events, None, None, now, None)
    assert "(the steps are unknown: the rollout's RolloutPolicy is gone" in text
    assert "| Environment | namespace `shop` |" in text


def test_a_switched_blue_green_says_going_back_is_instant_and_until_when() -> None:
    built = report.build(*args("bluegreen-switched"))
    assert built["summary"]["outcome"] == "InProgress"
    assert "The switch is done, and 1.2.0 is still warm: going back is instant." in built["rollback"]["summary"]
    assert [s["state"] for s in built["timeline"]["steps"]] == ["done", "done", "done", "done", "current"]
    assert built["timeline"]["steps"][-1]["startedAt"] == "2026-11-28T12:01:20Z"
    assert built["handoff"]["cleanup"][-1] == "1.2.0 is kept warm until 12:02:20 UTC (unless the rollout is held)"


class FakeKube:
    """What `sluice report` reads, from a golden case's inputs."""

    def __init__(self, given: dict[str, Any], replica_sets: list[dict[str, Any]]) -> None:
        self.given, self.replica_sets = given, replica_sets

    def get_sync(self, api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = {"Release": self.given["release"], "RolloutPolicy": self.given["policy"]}[kind]
        return found

    def list_sync(self, api_version: str, kind: str, namespace: str | None = None,
                  label_selector: str | None = None) -> list[dict[str, Any]]:
        if kind == "Event":
            stranger = {"involvedObject": {"kind": "Release", "name": "checkout", "uid": "another"},
                        "reason": "RolloutStarted", "message": "of a Release deleted since",
                        "lastTimestamp": self.given["now"]}
            return [*self.given["events"], stranger]
        assert kind == "ReplicaSet" and label_selector == "app.kubernetes.io/name=checkout"
        return self.replica_sets


def test_the_report_command_reads_what_the_renderer_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from sluice.cli import main

    given = inputs("canary-succeeded")
    digest = given["release"]["status"]["history"][-2]["templateHash"]
    before = given["before"]
    stored = {"metadata": {"labels": before["metadata"]["labels"],
                           "annotations": {**before["metadata"]["annotations"], "sluice.dev/template-hash": digest}},
              "spec": before["spec"]}
    replica_set = {"metadata": {"ownerReferences": [{"kind": "Deployment", "name": "checkout"}]},
                   "spec": {"template": stored}}
    monkeypatch.setattr(main, "_connect", lambda kubeconfig, context, namespace: (
        FakeKube(given, [replica_set]), "shop"))
    monkeypatch.setattr(main, "_cluster", lambda kubeconfig, context: "prod-eu-1")
    shown = CliRunner().invoke(main.app, ["report", "rel", "checkout", "-o", "json"])
    assert shown.exit_code == 0, shown.output
    built = json.loads(shown.output)
    assert built["summary"]["environment"] == {"namespace": "shop", "cluster": "prod-eu-1"}
    assert built["changes"]["templateDiff"] == report.build(*args("canary-succeeded"))["changes"]["templateDiff"]
    assert "of a Release deleted since" not in shown.output
    assert [c["run"].split()[0] for c in built["rollback"]["commands"]] == ["git", "kubectl", "sluice"]
    markdown_shown = CliRunner().invoke(main.app, ["report", "rel", "checkout"])
    assert markdown_shown.output.startswith("# Deployment report: shop/checkout 1.3.0")
    bad = CliRunner().invoke(main.app, ["report", "rel", "checkout", "-o", "yaml"])
    assert bad.exit_code == 1 and "unknown output format 'yaml'" in bad.output


@pytest.mark.parametrize("message", ["step 4 promoted by alice", "step 4 (pause until promoted) promoted by alice"])
def test_step_times_from_promote_and_promote_full_events(message: str) -> None:
    from sluice.cli.report_timeline import _step_events

    def event(reason: str, text: str, at: str) -> dict[str, Any]:
        return {"reason": reason, "message": text, "lastTimestamp": f"2026-11-28T12:{at}Z"}

    window = [event("StepCompleted", "step 1/5 (setWeight 10) complete", "00:10"),
              event("StepCompleted", "step 2/5 (analysis) complete", "00:40"),
              event("StepCompleted", "step 3/5 (setWeight 50) complete", "00:50"),
              event("RequestApplied", message, "07:00")]
    assert _step_events(window, 5) == ({0: "2026-11-28T12:00:10Z", 1: "2026-11-28T12:00:40Z",
                                        2: "2026-11-28T12:00:50Z", 3: "2026-11-28T12:07:00Z"}, None)
    full = [*window[:2], event("RequestApplied", "promoted fully by bob", "03:00")]
    assert _step_events(full, 5) == ({0: "2026-11-28T12:00:10Z", 1: "2026-11-28T12:00:40Z"}, 2)


def test_in_flight_with_versioned_config_the_list_says_what_it_compares() -> None:
    release, events, policy, before, now, cluster = args("in-progress")
    copies = json.loads(json.dumps(release).replace('"checkout-config-v7"', '"checkout-config-v7-3f2a9c1b0d"'))
    copies["spec"] = release["spec"]  # the spec names the original; stableSpec, as Sluice wrote it, the copy
    built = report.build(copies, events, policy, before, now, cluster)
    assert "config ConfigMap checkout-config-v7-3f2a9c1b0d -> checkout-config-v7" in built["changes"]["items"]
    assert built["changes"]["note"].startswith("versioned config: the stable version reads Sluice's content-named")
    assert report.build(*args("in-progress"))["changes"]["note"] is None

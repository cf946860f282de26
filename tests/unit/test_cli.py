"""The CLI's offline parts: lint through the real command, and the views of a Release."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sluice.cli import report, view
from sluice.cli.lint import ratio_weight
from sluice.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 28, 12, 10, tzinfo=UTC)

BAD = """apiVersion: sluice.dev/v1alpha1
kind: RolloutPolicy
metadata: {name: p}
spec:
  strategy:
    canary:
      steps:
        - setWeight: 150
        - analysis: {}
  analysis:
    interval: 2 minutes
    metrics:
      - name: error-rate
        query: 'up{app="{{release}}"}'
        successCondition: "result <"
---
apiVersion: sluice.dev/v1alpha1
kind: Release
metadata: {name: checkout}
spec:
  version: latest
  policyRef: {name: p}
  template:
    spec:
      containers: [{name: a, image: b}]
"""


def test_lint_passes_the_examples() -> None:
    result = CliRunner().invoke(app, ["lint", *map(str, sorted((ROOT / "examples").glob("*.yaml")))])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("Sluice document(s), 0 error(s)")


def test_lint_reports_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    result = CliRunner().invoke(app, ["lint", str(bad)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert f"{bad}:8: error: RolloutPolicy p: spec.strategy.canary.steps[0].setWeight: " \
           "Input should be less than or equal to 100" in lines
    assert f"{bad}:11: error: RolloutPolicy p: spec.analysis.interval: " \
           "'2 minutes' must be a duration such as 30s, 2m or 1h30m" in lines
    assert f"{bad}:21: error: Release checkout: spec.version: 'latest' must be a semantic version such as 1.4.2" \
        in lines
    assert lines[-1] == "1 file(s), 2 Sluice document(s), 3 error(s)"


def test_lint_checks_what_the_api_server_cannot(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(BAD.replace("setWeight: 150", "setWeight: 15").replace("2 minutes", "30s")
                        .replace("version: latest", "version: 1.0.0").replace("name: p}\n  template",
                                                                               "name: other}\n  template"))
    result = CliRunner().invoke(app, ["lint", str(manifest)])
    assert result.exit_code == 1
    assert "spec.analysis: metric error-rate: successCondition is not valid CEL" in result.output
    assert f"{manifest}:22: error: Release checkout: spec.policyRef.name: RolloutPolicy 'other' is not among " \
           "the given files" in result.output


SMALL = """apiVersion: sluice.dev/v1alpha1
kind: RolloutPolicy
metadata: {name: p}
spec:
  strategy:
    canary:
      steps:
        - setWeight: 10
        - analysis: {metrics: [error-rate]}
        - setWeight: 50
  analysis:
    metrics:
      - name: error-rate
        query: 'up{app="{{release}}"}'
        successCondition: "result > 0"
---
apiVersion: sluice.dev/v1alpha1
kind: Release
metadata: {name: checkout}
spec:
  version: 1.0.0-rc.1+build.5
  replicas: 1
  policyRef: {name: p}
  template:
    spec:
      containers: [{name: a, image: b}]
"""


def test_lint_warns_when_replicas_are_too_few_for_the_weights(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(SMALL)
    result = CliRunner().invoke(app, ["lint", str(manifest)])
    assert result.exit_code == 0, result.output
    assert f"{manifest}:22: warning: Release checkout: spec.replicas: setWeight 10 becomes 50% with replicas 1 " \
           "by replica ratio; use trafficRouting or more replicas" in result.output.splitlines()
    assert "setWeight 50 becomes" not in result.output  # 1 canary pod beside 1 stable pod is 50%
    assert result.output.strip().endswith("1 file(s), 2 Sluice document(s), 0 error(s)")


def test_lint_does_not_warn_with_enough_replicas_or_traffic_routing(tmp_path: Path) -> None:
    for name, text in [("many", SMALL.replace("replicas: 1", "replicas: 10")),
                       ("routed", SMALL.replace("replicas: 1", "trafficRouting: {gatewayAPI: {httpRoute: r}}"))]:
        manifest = tmp_path / f"{name}.yaml"
        manifest.write_text(text)
        result = CliRunner().invoke(app, ["lint", str(manifest)])
        assert result.exit_code == 0 and "warning" not in result.output, (name, result.output)


def test_lint_warnings_do_not_hide_errors(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(SMALL.replace("metrics: [error-rate]", "metrics: [error-rat]"))
    result = CliRunner().invoke(app, ["lint", str(manifest)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    # the models' rule and the CRD's CEL rule say the same thing: one line, the fuller one
    assert [line for line in lines if "names a metric" in line] == [
        f"{manifest}:5: error: RolloutPolicy p: spec: an analysis step names a metric that spec.analysis.metrics "
        "does not define: 'error-rat' (step 1)"]
    assert lines[-1] == "1 file(s), 2 Sluice document(s), 1 error(s)"


def test_lint_refuses_unbounded_durations_and_bad_addresses_once_each(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(SMALL.replace("  analysis:\n    metrics:", "  analysis:\n    interval: 1h1h\n"
                                      "    prometheus: {address: 'http://[::1'}\n    metrics:")
                        .replace("- setWeight: 50", "- pause: {duration: 9999999999999999999999999999999h}"))
    result = CliRunner().invoke(app, ["lint", str(manifest)])
    assert result.exit_code == 1
    lines = [line.split(": error: ", 1)[1] for line in result.output.splitlines() if ": error: " in line]
    assert lines == [
        "RolloutPolicy p: spec.strategy.canary.steps[2].pause.duration: must be a duration of at most 168h",
        "RolloutPolicy p: spec.analysis.interval: must be a duration of at most 1h and at least 1s",
        "RolloutPolicy p: spec.analysis.prometheus.address: must be a URL with a valid host (IPv6 in brackets) "
        "and a port from 1 to 65535",
    ]


def test_lint_checks_abort_conditions(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(SMALL.replace("replicas: 1", "replicas: 10").replace(
        '        successCondition: "result > 0"\n',
        '        successCondition: "result > 0"\n        abortCondition: "result >"\n'
        "      - name: latency\n        compare: {query: 'lat{track=\"{{track}}\"}'}\n"
        '        abortCondition: "result > 0.5"\n'))
    result = CliRunner().invoke(app, ["lint", str(manifest)])
    assert result.exit_code == 1
    lines = [line.split(": error: ", 1)[1] for line in result.output.splitlines() if ": error: " in line]
    assert len(lines) == 2
    assert lines[0] == ("RolloutPolicy p: spec.analysis.metrics[1]: abortCondition needs a query or web metric: a "
                        "compare or job metric has no single value to test")
    assert lines[1].startswith("RolloutPolicy p: spec.analysis: metric error-rate: abortCondition is not valid CEL "
                               "over result (a number): at column 10: Syntax error")


def test_lint_prints_the_judges_warnings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sluice.analysis import judge

    monkeypatch.setattr(judge, "warnings", lambda policy: ["metric error-rate: the numerator can be empty"],
                        raising=False)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(SMALL.replace("replicas: 1", "replicas: 10"))
    result = CliRunner().invoke(app, ["lint", str(manifest)])
    assert result.exit_code == 0
    assert f"{manifest}:12: warning: RolloutPolicy p: spec.analysis: metric error-rate: the numerator can be empty" \
        in result.output.splitlines()


def test_ratio_weight_worked_examples() -> None:
    assert [ratio_weight(1, 10), ratio_weight(4, 10), ratio_weight(10, 10), ratio_weight(4, 50)] == [50, 25, 10, 50]
    assert [ratio_weight(4, 0), ratio_weight(1, 100), ratio_weight(4, 90)] == [0, 100, 80]


def test_lint_of_a_missing_file_is_one_line() -> None:
    result = CliRunner().invoke(app, ["lint", "/nonexistent.yaml"])
    assert result.exit_code == 1
    assert "/nonexistent.yaml:1: error: cannot read: No such file or directory" in result.output


RELEASE = {
    "apiVersion": "sluice.dev/v1alpha1", "kind": "Release",
    "metadata": {"name": "checkout", "namespace": "shop", "creationTimestamp": "2026-11-28T11:00:00Z"},
    "spec": {"version": "1.2.0", "replicas": 4, "policyRef": {"name": "careful"},
             "template": {"metadata": {"annotations": {"sim.sluice.dev/error-rate": "0.3"}},
                          "spec": {"containers": [{"name": "app", "image": "shop/checkout:1.2.0"}]}}},
    "status": {
        "phase": "RolledBack", "stableVersion": "1.1.0", "candidateVersion": "1.2.0", "currentStep": 1,
        "canaryWeight": 0, "strategy": "canary", "stepStartedAt": "2026-11-28T12:02:00Z",
        "rolloutStartedAt": "2026-11-28T12:01:00Z", "replicas": {"stable": 4, "canary": 0},
        "message": "rolled back 1.2.0: metric error-rate failed 1 time(s), more than failureLimit 0",
        "analysis": [
            {"metric": "error-rate", "verdict": "Failed", "value": 0.31, "message": "0.31: result < 0.05 does not hold",
             "step": 1, "version": "1.2.0", "at": "2026-11-28T12:02:30Z"}],
        "history": [
            {"version": "1.1.0", "outcome": "Succeeded", "startedAt": "2026-11-28T11:00:00Z",
             "finishedAt": "2026-11-28T11:05:00Z", "reason": "canary passed 5 steps"},
            {"version": "1.2.0", "outcome": "RolledBack", "startedAt": "2026-11-28T12:01:00Z",
             "finishedAt": "2026-11-28T12:02:31Z", "reason": "metric error-rate failed 1 time(s)"}],
    },
}
POLICY = {"spec": {"strategy": {"canary": {"steps": [{"setWeight": 20}, {"analysis": {}}, {"setWeight": 100}]}},
                   "analysis": {"metrics": [{"name": "error-rate", "query": "q",
                                             "successCondition": "result < 0.05"}]}}}


def test_plain_view_marks_steps_and_shows_measurements() -> None:
    text = view.plain(RELEASE, POLICY, NOW)
    assert "Version:   1.1.0 -> 1.2.0" in text and "Phase:     RolledBack" in text
    assert "    x 1. setWeight 20" in text and "    > 2. analysis  (for 8m)" in text
    assert "      3. setWeight 100" in text
    assert "error-rate: 0.31 Failed" in text


def test_report_of_a_rolled_back_release() -> None:
    events = [{"type": "Normal", "reason": "RolloutStarted", "message": "rolling out 1.2.0",
               "lastTimestamp": "2026-11-28T12:01:00Z"},
              {"type": "Warning", "reason": "RolledBack", "message": "rolled back 1.2.0",
               "lastTimestamp": "2026-11-28T12:02:31Z"}]
    before = {"metadata": {"labels": {"app.kubernetes.io/version": "1.1.0"}},
              "spec": {"containers": [{"name": "app", "image": "shop/checkout:1.1.0"}]}}
    text = report.render(RELEASE, events, before, NOW)
    assert text.startswith("# Deployment report: shop/checkout 1.2.0")
    assert "| Outcome | **RolledBack** |" in text and "| Duration | 1m31s |" in text
    assert "| 12:02:31 | +1m31s | ⚠️ RolledBack | rolled back 1.2.0 |" in text
    assert "| 12:02:30 | 2 | error-rate | 0.31 | Failed | 0.31: result < 0.05 does not hold |" in text
    assert "-  - image: shop/checkout:1.1.0" in text and "+  - image: shop/checkout:1.2.0" in text
    assert "sluice retry checkout -n shop" in text


@pytest.mark.parametrize("command", ["promote", "abort", "retry", "pause", "resume", "get", "list", "report",
                                     "pipeline", "lint", "operator"])
def test_every_commands_help_prints(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output

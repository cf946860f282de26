"""The bake (RolloutPolicy spec.bake), transition by transition, on an ideal cluster with an
injected clock: the candidate takes all traffic with the previous version warm beside it, is
judged for the bake's duration, and is promoted, rolled back, or paused for a person."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from sluice.api.models import AnalysisRun, Bake, Measurement, MetricRun, Phase, ReleaseStatus, Verdict
from sluice.plan import bake, reasons
from sluice.plan.release import step_list
from sluice.plan.types import Plan, Result, Workload
from tests.unit.world import World, first_version, policy_spec

OK = [Result("error-rate", Verdict.SUCCESSFUL, 0.01, "0.01: result < 0.05"),
      Result("latency", Verdict.SUCCESSFUL, 0.1, "0.1: result < 0.5")]
BAD = [Result("error-rate", Verdict.FAILED, 0.31, "0.31: result < 0.05 does not hold"),
       Result("latency", Verdict.SUCCESSFUL, 0.1, "0.1: result < 0.5")]
MEH = [Result("error-rate", Verdict.INCONCLUSIVE, 0.07, "0.07: neither condition holds"),
       Result("latency", Verdict.SUCCESSFUL, 0.1, "0.1: result < 0.5")]
EMPTY = [Result("error-rate", Verdict.FAILED, None, "no data (noData: fail)", missing=True),
         Result("latency", Verdict.SUCCESSFUL, 0.1, "0.1: result < 0.5")]
TRIPPED = [Result("error-rate", Verdict.FAILED, 0.9, "0.9: result < 0.05 does not hold", tripped=True),
           Result("latency", Verdict.SUCCESSFUL, 0.1, "0.1: result < 0.5")]
METRICS = [{"name": "error-rate", "query": "q", "successCondition": "result < 0.05", "abortCondition": "result > 0.5"},
           {"name": "latency", "query": "l", "successCondition": "result < 0.5"}]
T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


def policy(kind: str = "canary", duration: str = "2m", metrics: list[str] | None = None, **extra: Any) -> Any:
    strategy: dict[str, Any] = {
        "canary": {"canary": {"steps": [{"setWeight": 50}]}},
        "canary-100": {"canary": {"steps": [{"setWeight": 50}, {"setWeight": 100}]}},
        "blueGreen": {"blueGreen": {"scaleDownDelay": "30s"}},
        "rolling": {"rolling": {}},
    }[kind]
    spec = {"duration": duration, **({"metrics": metrics} if metrics else {})}
    analysis = extra.pop("analysis", {"interval": "30s", "metrics": METRICS})
    return policy_spec([], strategy=strategy, analysis=analysis, bake=spec, **extra)


def bake_index(world: World) -> int:
    assert world.policy is not None and world.policy.bake is not None
    return step_list(world.policy).index(bake.name(world.policy.bake))


def to_bake(world: World, results: list[Result] = OK, limit: int = 60) -> None:
    """Deploys 1.1.0, then passes a second apart until its bake has begun (its run started)."""
    world.deploy("1.1.0")
    for _ in range(limit):
        world.later(1).step(results)
        run = world.status.analysis_run
        if run is not None and run.step == bake_index(world) == world.status.current_step:
            return
    raise AssertionError(f"the bake never began: {world.status.message}")


def baking(world: World) -> bool:
    return "baking" in world.status.message


def last(world: World) -> Plan:
    return world.plans[-1]


# --- pure helpers ----------------------------------------------------------------------------


def test_the_bake_is_named_by_its_duration() -> None:
    assert bake.name(Bake(duration="10m")) == "bake 10m"


def test_a_bake_ends_its_duration_after_its_run_started() -> None:
    run = AnalysisRun(step=5, started_at="2026-11-28T12:00:00Z")
    assert bake.ends_at(run, Bake(duration="10m")) == datetime(2026, 11, 28, 12, 10, tzinfo=UTC)


@pytest.mark.parametrize(("measured", "expected"), [
    pytest.param([("12:09:30", Verdict.SUCCESSFUL)], None, id="none since the end"),
    pytest.param([("12:09:30", Verdict.SUCCESSFUL), ("12:10:00", Verdict.FAILED)], Verdict.FAILED,
                 id="the latest, taken at the end"),
    pytest.param([("12:10:00", Verdict.FAILED), ("12:10:30", Verdict.SUCCESSFUL)], Verdict.SUCCESSFUL,
                 id="looked at again after the end"),
    pytest.param([], None, id="never measured"),
])
def test_the_last_look_is_the_latest_measurement_taken_at_or_after_the_end(
        measured: list[tuple[str, Verdict]], expected: Verdict | None) -> None:
    status = ReleaseStatus(candidate_version="1.1.0", analysis=[
        Measurement(metric="error-rate", verdict=verdict, step=1, version="1.1.0", at=f"2026-11-28T{at}Z")
        for at, verdict in measured] + [
        Measurement(metric="latency", verdict=Verdict.FAILED, step=1, version="1.1.0", at="2026-11-28T12:11:00Z")])
    assert bake.last_look(status, "error-rate", 1, datetime(2026, 11, 28, 12, 10, tzinfo=UTC)) == expected


def test_a_metric_still_waiting_for_data_has_no_last_look() -> None:
    end = datetime(2026, 11, 28, 12, 10, tzinfo=UTC)
    status = ReleaseStatus(candidate_version="1.1.0", analysis=[
        Measurement(metric="error-rate", verdict=Verdict.SUCCESSFUL, step=1, version="1.1.0",
                    at="2026-11-28T12:10:00Z")])
    waiting = AnalysisRun(step=1, started_at="2026-11-28T12:00:00Z", metrics={"error-rate": MetricRun(
        successful=3, last_measured_at="2026-11-28T12:10:00Z", waiting_since="2026-11-28T12:10:00Z")})
    settled = AnalysisRun(step=1, started_at="2026-11-28T12:00:00Z", metrics={"error-rate": MetricRun(
        successful=3, last_measured_at="2026-11-28T12:10:00Z")})
    metric = policy().analysis.metrics[:1]
    assert bake.unsettled(status, waiting, metric, 1, end) == ["error-rate"]
    assert bake.unsettled(status, settled, metric, 1, end) == []


@pytest.mark.parametrize(("kind", "steps"), [
    pytest.param("canary", ["setWeight 50", "bake 2m"], id="canary: the last step"),
    pytest.param("blueGreen", ["preview", "switch", "bake 2m", "scaleDownDelay"],
                 id="blue-green: before scaleDownDelay"),
    pytest.param("rolling", ["update", "bake 2m"], id="rolling: after the update"),
])
def test_sluice_get_lists_the_bake_among_the_steps(kind: str, steps: list[str]) -> None:
    assert step_list(policy(kind)) == steps


# --- canary ----------------------------------------------------------------------------------


@pytest.mark.parametrize("gateway", [pytest.param(True, id="route"), pytest.param(False, id="replica ratio")])
def test_a_healthy_bake_holds_all_traffic_on_the_candidate_with_the_stable_warm_then_promotes(gateway: bool) -> None:
    world = first_version(policy(), gateway=gateway)
    to_bake(world)
    plan = last(world)
    assert world.status.current_step == 1 and world.phase == Phase.PROGRESSING and baking(world)
    assert world.status.canary_weight == 100
    if gateway:
        assert world.route_weight == 100
    else:
        assert plan.active == "canary" and not plan.stable_service_selects_canary, "<name> selects the candidate alone"
    assert world.canary.replicas == 4 and world.canary.ready == 4
    assert world.stable == Workload(exists=True, template_hash="h-1.0.0", version="1.0.0", replicas=4, ready=4,
                                    updated=4, available=4, total=4), "the previous version stays warm"
    assert any(e.startswith("BakeStarted: 1.1.0 takes all traffic: baking 2m") for e in world.events)
    started = world.now
    while world.status.current_step == 1:
        world.later(5).step(OK)
        assert world.phase == Phase.PROGRESSING
    assert (world.now - started).total_seconds() == 120, "the bake ends at its duration, not before"
    world.finish(OK)
    assert world.phase == Phase.SUCCEEDED and world.status.stable_version == "1.1.0"
    assert "StepCompleted: step 2/2 (bake 2m) complete" in world.events
    measured = [m.at for m in world.status.analysis if m.step == 1 and m.metric == "error-rate"]
    assert len(measured) >= 5, "measured every interval through the bake, once more at its end"


def test_the_promotion_after_a_bake_never_gives_the_old_pods_traffic_again() -> None:
    """By replica ratio, the stable Deployment takes the new template while <name> still selects
    the candidate's track alone: its old pods, Ready during the update, get no traffic."""
    world = first_version(policy())
    to_bake(world)
    world.later(121).step(OK)
    plan = last(world)
    assert plan.stable is not None and plan.stable.template == "candidate"
    assert plan.active == "canary" and not plan.stable_service_selects_canary


def test_a_breach_during_the_bake_rolls_back_to_the_warm_stable_at_once() -> None:
    world = first_version(policy())
    to_bake(world)
    world.later(30).step(OK)
    result = world.later(30).step(BAD)
    assert world.phase == Phase.ROLLED_BACK
    assert not result.stable_service_selects_canary and result.active == "stable"
    assert result.canary is not None and result.canary.replicas == 0
    assert world.stable.ready == 4 and world.stable.template_hash == "h-1.0.0", "no pod had to start"
    assert "bake (1m of 2m at 100%): metric error-rate failed 1 time(s)" in world.status.message
    assert world.status.history[-1].outcome == "RolledBack"


def test_an_abort_condition_met_during_the_bake_rolls_back_in_that_pass() -> None:
    world = first_version(policy(), gateway=True)
    to_bake(world)
    result = world.later(30).step(TRIPPED)
    assert world.phase == Phase.ROLLED_BACK and result.weight == 0
    assert "met its abortCondition" in world.status.message


def test_on_failure_pause_freezes_the_bake_with_the_candidate_serving() -> None:
    world = first_version(policy(onFailure="pause"))
    to_bake(world)
    result = world.later(30).step(BAD)
    assert world.phase == Phase.PAUSED and world.status.pause_reason == reasons.ANALYSIS_FAILED
    assert result.active == "canary" and not result.stable_service_selects_canary, "held: no split with the warm stable"
    assert world.stable.replicas == 4


@pytest.mark.parametrize(("answers", "phase", "pause_reason"), [
    pytest.param([OK], Phase.SUCCEEDED, None, id="good throughout: promoted"),
    pytest.param([OK, MEH, OK], Phase.PAUSED, reasons.ANALYSIS_INCONCLUSIVE, id="inconclusive once: a person decides"),
    pytest.param([OK, BAD], Phase.ROLLED_BACK, None, id="a failure beyond failureLimit 0: rolled back"),
])
def test_how_a_bake_ends(answers: list[list[Result]], phase: Phase, pause_reason: str | None) -> None:
    world = first_version(policy())
    to_bake(world)
    for i in range(40):
        world.later(5).step(answers[min(i // 6, len(answers) - 1)])
        if world.phase != Phase.PROGRESSING:
            break
    assert world.phase == phase and world.status.pause_reason == pause_reason, world.status.message


def test_an_inconclusive_bake_waits_for_a_person_with_all_traffic_on_the_candidate() -> None:
    world = first_version(policy())
    to_bake(world)
    world.later(30).step(MEH)
    assert world.phase == Phase.PROGRESSING, "inconclusive counts at the end, like an analysis step's"
    world.later(100).step(OK)
    assert world.phase == Phase.PAUSED and "bake of 2m was inconclusive for error-rate" in world.status.message
    held = world.later(5).step(OK)
    assert held.active == "canary" and not held.stable_service_selects_canary and not held.measure
    world.request("retry").later(1).step(OK)
    assert world.phase == Phase.PROGRESSING and baking(world), "retry bakes again from the start"
    world.later(60).step(OK)
    world.request("promote").later(1).step(OK)
    world.finish(OK)
    assert world.phase == Phase.SUCCEEDED


def test_the_bake_ends_on_a_successful_last_look_not_on_a_failure_within_failure_limit() -> None:
    lenient = policy(analysis={"interval": "30s", "metrics": [{**METRICS[0], "failureLimit": 1}, METRICS[1]]})
    world = first_version(lenient)
    to_bake(world)
    world.later(60).step(OK)
    world.later(60).step(BAD)
    assert world.phase == Phase.PROGRESSING
    assert "waiting for a last Successful look at error-rate" in world.status.message
    world.later(30).step(OK)
    world.finish(OK)
    assert world.phase == Phase.SUCCEEDED


def test_no_data_at_the_end_never_promotes() -> None:
    """noData: fail within failureLimit 1 is tolerated as a failure, but it is no last look."""
    lenient = policy(analysis={"interval": "30s", "metrics": [{**METRICS[0], "failureLimit": 1, "noData": "fail"},
                                                              METRICS[1]]})
    world = first_version(lenient)
    to_bake(world)
    world.later(60).step(OK)
    world.later(60).step(EMPTY)
    assert world.phase == Phase.PROGRESSING and world.status.stable_version == "1.0.0"


def measured_at(world: World, metric: str) -> list[str]:
    return [m.at[11:19] for m in world.status.analysis if m.metric == metric and m.step == bake_index(world)]


def test_every_metric_is_looked_at_once_more_at_the_end_whatever_its_interval() -> None:
    world = first_version(policy())
    to_bake(world)
    began = world.now
    world.later(115).step(OK)  # measured at 1:55 (due since 1:30) ... then nothing due until 2:25
    world.later(5).step(OK)
    end = began.strftime("%H:%M:%S").replace(f"{began.minute:02d}:", f"{began.minute + 2:02d}:", 1)
    assert measured_at(world, "error-rate")[-1] == end and measured_at(world, "latency")[-1] == end
    assert world.status.current_step == bake_index(world) + 1, "the last look was Successful: the bake is over"


def test_the_bake_measures_only_the_metrics_it_names() -> None:
    world = first_version(policy(metrics=["latency"]))
    to_bake(world)
    world.later(30).step(BAD)  # error-rate is bad, but the bake does not look at it
    assert world.phase == Phase.PROGRESSING
    assert measured_at(world, "latency") and not measured_at(world, "error-rate")


def test_promote_during_the_bake_ends_it_early_with_an_event() -> None:
    world = first_version(policy())
    to_bake(world)
    world.request("promote").later(10).step(OK)
    world.finish(OK)
    assert world.phase == Phase.SUCCEEDED and world.status.stable_version == "1.1.0"
    assert "RequestApplied: step 2 (bake 2m) promoted by a user" in world.events


def test_abort_during_the_bake_rolls_back() -> None:
    world = first_version(policy(), gateway=True)
    to_bake(world)
    result = world.request("abort").later(10).step(OK)
    assert world.phase == Phase.ROLLED_BACK and result.weight == 0 and world.stable.ready == 4


def test_a_user_pause_holds_the_bake_and_resume_starts_it_again() -> None:
    world = first_version(policy())
    to_bake(world)
    world.later(60).step(OK)
    held = world.request("pause").later(1).step(OK)
    assert world.phase == Phase.PAUSED and held.active == "canary" and not held.stable_service_selects_canary
    world.request("resume").later(300).step(OK)
    assert world.phase == Phase.PROGRESSING and baking(world) and "2m left" in world.status.message


def test_a_candidate_losing_pods_mid_bake_gives_traffic_back_and_the_bake_starts_again() -> None:
    world = first_version(policy(), gateway=True)
    to_bake(world)
    world.later(90).step(OK)
    world.canary = Workload(exists=True, template_hash="h-1.1.0", version="1.1.0", replicas=4, ready=2,
                            updated=4, available=2, total=4)
    result = world.later(1).step(OK)
    assert result.weight == 50 and world.status.analysis_run is None
    assert any("lost readiness during the bake" in e for e in world.events)
    world.later(1).step(OK)  # the ideal cluster makes every pod Ready again
    world.later(60).step(OK)
    assert world.phase == Phase.PROGRESSING and baking(world), "the bake counts from the candidate's return"


@pytest.mark.parametrize("kind", ["canary", "blueGreen"])
@pytest.mark.parametrize("gateway", [pytest.param(True, id="route"), pytest.param(False, id="replica ratio")])
def test_a_stall_mid_bake_withdraws_the_traffic_and_the_bake_starts_again_once_it_is_back(
        kind: str, gateway: bool) -> None:
    world = first_version(policy(kind), gateway=gateway)
    to_bake(world)
    world.later(90).step(OK)
    world.problem = "Secret prometheus-token is gone"
    world.later(1).step(OK)
    assert world.status.stable_version == "1.0.0" and (world.route_weight == 0 if gateway and kind == "canary"
                                                        else world.active == "stable")
    world.later(60).step(OK)
    world.problem = None
    world.later(1).step(OK)  # traffic back to the candidate; the bake finds it was not there
    world.later(1).step(OK)
    assert world.phase == Phase.PROGRESSING and "1m59s left" in world.status.message, world.status.message
    assert any("found without all traffic during the bake" in e for e in world.events)


def test_a_last_step_at_100_by_replica_ratio_brings_the_stable_back_for_the_bake() -> None:
    world = first_version(policy("canary-100"))
    world.deploy("1.1.0")
    for _ in range(20):
        world.later(1).step(OK)
        if world.status.current_step == 1 and world.stable.replicas == 0:
            break
    assert world.stable.replicas == 0, "setWeight 100 by replica ratio leaves no stable pod"
    to_bake_index = 2
    for _ in range(20):
        world.later(1).step(OK)
        if world.status.current_step == to_bake_index:
            break
    assert world.stable.replicas == 4 and world.stable.template_hash == "h-1.0.0"


@pytest.mark.parametrize(("kind", "gateway", "warm"), [
    pytest.param("canary", False, True, id="canary by replica ratio: <name> back on the warm stable"),
    pytest.param("canary", True, True, id="canary behind a route: weight 0, the warm stable"),
    pytest.param("blueGreen", False, True, id="blue-green: the active Service back on the warm stable"),
    pytest.param("rolling", False, False, id="rolling: the previous template rolled out again, in place"),
])
def test_a_breach_puts_traffic_back_on_the_previous_version(kind: str, gateway: bool, warm: bool) -> None:
    world = first_version(policy(kind), gateway=gateway)
    to_bake(world)
    result = world.later(30).step(BAD)
    assert world.phase == Phase.ROLLED_BACK and world.status.history[-1].outcome == "RolledBack"
    assert not result.stable_service_selects_canary and result.active == "stable"
    assert result.weight in (0, None) and (not gateway or result.weight == 0)
    assert result.stable is not None and result.stable.template == "stable" and result.stable.replicas == 4
    if warm:
        assert world.plans[-2].stable is not None and world.plans[-2].stable.template == "stable", \
            "the stable version was running, Ready, before the breach"
    else:
        assert world.plans[-2].stable is not None and world.plans[-2].stable.template == "candidate"


# --- blue-green and rolling ---------------------------------------------------------------------


def test_a_blue_green_bake_runs_after_the_switch_and_scale_down_delay_after_it() -> None:
    world = first_version(policy("blueGreen"))
    to_bake(world)
    assert world.status.current_step == 2 and world.active == "canary" and baking(world)
    assert world.stable.template_hash == "h-1.0.0" and world.stable.replicas == 4
    world.later(125).step(OK)
    assert world.status.current_step == 3 and "kept warm" in world.status.message, "scaleDownDelay follows the bake"
    world.finish(OK)
    assert world.phase == Phase.SUCCEEDED


def test_a_blue_green_breach_switches_back_to_the_warm_stable() -> None:
    world = first_version(policy("blueGreen"))
    to_bake(world)
    result = world.later(30).step(BAD)
    assert world.phase == Phase.ROLLED_BACK and result.active == "stable" and world.stable.ready == 4


def test_a_rolling_bake_judges_in_place_and_a_breach_rolls_back_in_place() -> None:
    world = first_version(policy("rolling"))
    to_bake(world)
    assert world.stable.template_hash == "h-1.1.0" and last(world).measure_track == "stable"
    assert "nothing kept warm" in world.status.message
    result = world.later(30).step(BAD)
    assert world.phase == Phase.ROLLED_BACK
    assert result.stable is not None and result.stable.template == "stable"


def test_a_rolling_bake_that_passes_promotes() -> None:
    world = first_version(policy("rolling"))
    to_bake(world)
    world.later(125).step(OK)
    world.finish(OK)
    assert world.phase == Phase.SUCCEEDED and world.status.stable_version == "1.1.0"


# --- sluice lint ------------------------------------------------------------------------------

LINTED = """apiVersion: sluice.dev/v1alpha1
kind: RolloutPolicy
metadata: {name: p}
spec:
  strategy: STRATEGY
  analysis:
    interval: 30s
    metrics:
      - name: error-rate
        query: 'up{app="{{release}}"}'
        successCondition: "result > 0"
  bake: {duration: DURATION}
---
apiVersion: sluice.dev/v1alpha1
kind: Release
metadata: {name: checkout}
spec:
  version: 1.0.0
  replicas: 4
  policyRef: {name: p}
  template:
    spec:
      containers: [{name: a, image: b}]
"""


@pytest.mark.parametrize(("strategy", "duration", "warnings"), [
    pytest.param("{canary: {steps: [{setWeight: 50}]}}", "10m", [], id="a canary that ends below 100: none"),
    pytest.param("{blueGreen: {}}", "10m", [], id="blue-green: none"),
    pytest.param("{rolling: {}}", "10m", ["spec.bake: a bake after a rolling update keeps nothing warm"],
                 id="rolling keeps nothing warm"),
    pytest.param("{canary: {steps: [{setWeight: 50}]}}", "45s",
                 ["spec.bake: bake.duration 45s is shorter than two analysis intervals"], id="a bake of one interval"),
    pytest.param("{canary: {steps: [{setWeight: 50}, {setWeight: 100}]}}", "10m",
                 ["spec.replicas: setWeight 100 by replica ratio scales the previous version to zero"],
                 id="setWeight 100 by replica ratio before a bake"),
])
def test_lint_warns_about_bakes_that_probably_mean_something_else(
        tmp_path: Any, strategy: str, duration: str, warnings: list[str]) -> None:
    from typer.testing import CliRunner

    from sluice.cli.main import app
    manifest = tmp_path / "m.yaml"
    manifest.write_text(LINTED.replace("STRATEGY", strategy).replace("DURATION", duration))
    result = CliRunner().invoke(app, ["lint", str(manifest)])
    assert result.exit_code == 0, result.output
    found = [line.split(": ", 3)[-1] for line in result.output.splitlines() if ": warning: " in line]
    assert len(found) == len(warnings) and all(f.startswith(w) for f, w in zip(found, warnings, strict=True)), found


def test_sluice_get_shows_the_bake_as_the_current_step_from_the_rollouts_policy() -> None:
    from sluice.cli import view
    world = first_version(policy(duration="10m"))
    to_bake(world)
    world.later(150).step(OK)
    release = {"metadata": {"name": "checkout", "namespace": "shop"},
               "spec": {"replicas": 4, "policyRef": {"name": "careful"}},
               "status": world.status.model_dump(by_alias=True, exclude_none=True, mode="json")}
    edited = {"spec": policy("rolling").model_dump(by_alias=True, exclude_none=True, mode="json")}
    text = view.plain(release, edited, world.now)
    assert "    x 1. setWeight 50" in text and "    > 2. bake 10m  (for 2m31s)" in text, text  # pods, then bake
    assert "Weight:    100%" in text and "baking 1.1.0 at 100%, 7m30s left" in text
    assert "1.0.0 kept warm (4/4 ready) for a rollback" in text

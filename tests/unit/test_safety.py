"""Regressions for the safety review (issue 7), one per defect the planner owned: each failed on
the planner before the fix. Stories on the ideal cluster of world.py, with an injected clock."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from sluice.api.models import AnalysisRun, MetricRun, Phase, Verdict
from sluice.plan import analysis, reasons
from sluice.plan.canary import stable_pods
from sluice.plan.release import plan
from sluice.plan.types import Result, Workload, iso
from tests.unit.world import T0, World, first_version, policy_spec, ready

OK = [Result("error-rate", Verdict.SUCCESSFUL, 0.01, "0.01: result < 0.05")]
BAD = [Result("error-rate", Verdict.FAILED, 0.4, "0.4: result < 0.05 does not hold")]
NO_DATA = [Result("error-rate", Verdict.INCONCLUSIVE, None, "the query returned no series", missing=True)]

SIX = [{"setWeight": 10}, {"analysis": {}}, {"setWeight": 30}, {"analysis": {}}, {"setWeight": 60},
       {"analysis": {}}]


def walk(world: World, results: list[Result], until: int, tick: float = 31, limit: int = 200) -> None:
    """Passes `tick` seconds apart until the rollout reaches step `until` (or ends)."""
    for _ in range(limit):
        if (world.status.current_step or 0) >= until or world.phase not in (Phase.PROGRESSING, Phase.PENDING):
            return
        world.later(tick).step(results)


def measured_steps(world: World) -> set[int]:
    return {m.step for m in world.status.analysis if m.version == "1.1.0" and m.step is not None}


# Item 1: a policy edited mid-rollout can promote at once.
def test_a_policy_trimmed_mid_rollout_does_not_skip_the_remaining_analysis() -> None:
    world = first_version(policy_spec(SIX), gateway=True)
    world.deploy("1.1.0").step(OK)
    walk(world, OK, until=3)
    assert world.status.current_step == 3 and world.phase == Phase.PROGRESSING
    world.policy = policy_spec(SIX[:3])  # someone trims the shared policy to 3 steps
    world.later(1).step(OK)
    assert world.phase == Phase.PROGRESSING, "the next pass must not promote"
    assert any(e.startswith(reasons.POLICY_CHANGED) for e in world.events), world.events
    walk(world, OK, until=99)
    assert world.phase == Phase.SUCCEEDED
    assert {1, 3, 5} <= measured_steps(world), "every analysis step of the policy it started with ran"


def test_removing_pre_promotion_analysis_mid_rollout_does_not_skip_it() -> None:
    blue_green = {"blueGreen": {"prePromotionAnalysis": True, "scaleDownDelay": "10s"}}
    world = first_version(policy_spec([], strategy=blue_green))
    world.deploy("1.1.0").step(OK)
    world.later(1).step(OK)
    assert world.status.current_step == 1  # prePromotionAnalysis
    world.policy = policy_spec([], strategy={"blueGreen": {"scaleDownDelay": "10s"}})
    world.later(1).step(OK)
    assert world.active == "stable" and world.status.current_step == 1, "no switch before the analysis ran"
    walk(world, BAD, until=99)
    assert world.phase == Phase.ROLLED_BACK


def test_a_policy_edit_applies_to_the_next_rollout() -> None:
    world = first_version(policy_spec(SIX), gateway=True)
    world.deploy("1.1.0").step(OK)
    world.policy = policy_spec([{"setWeight": 100}])
    world.later(1).step(OK)
    assert len(world.status.policy.spec["strategy"]["canary"]["steps"]) == 6  # type: ignore[union-attr]
    world.request("abort").later(1).step()
    world.request("retry").later(1).step()
    assert len(world.status.policy.spec["strategy"]["canary"]["steps"]) == 1  # type: ignore[union-attr]


# Item 4: background analysis misses bad versions.
BACKGROUND = {"backgroundAnalysis": {"startingStep": 0}}


def test_background_analysis_with_no_data_never_succeeds() -> None:
    steps = [{"setWeight": 50}, {"pause": {"duration": "1m"}}, {"setWeight": 100}]
    world = first_version(policy_spec([], strategy={"canary": {"steps": steps, **BACKGROUND}}), gateway=True)
    world.deploy("1.1.0").step(NO_DATA)
    for _ in range(40):
        world.later(31).step(NO_DATA)
        assert world.phase != Phase.SUCCEEDED, "all measurements were empty: nothing may promote"
        if world.phase != Phase.PROGRESSING:
            break
    assert world.phase == Phase.PAUSED and world.status.pause_reason == reasons.ANALYSIS_INCONCLUSIVE


def test_background_analysis_runs_while_waiting_for_promote() -> None:
    steps = [{"setWeight": 25}, {"pause": {}}, {"setWeight": 100}]
    world = first_version(policy_spec([], strategy={"canary": {"steps": steps, **BACKGROUND}}), gateway=True)
    world.deploy("1.1.0").step(OK)
    walk(world, OK, until=1)
    world.later(31).step(OK)
    assert world.phase == Phase.PAUSED and world.status.pause_reason == reasons.WAITING_FOR_PROMOTE
    for _ in range(3):
        world.later(31).step(BAD)
    assert world.phase == Phase.ROLLED_BACK and world.route_weight == 0


@pytest.mark.parametrize("starting_step", [
    pytest.param(0, id="from the first step"),
    pytest.param(5, id="from past the last step (still judged before promotion)"),
])
def test_promotion_waits_for_background_analysis_to_judge(starting_step: int) -> None:
    steps = [{"setWeight": 100}]
    background = {"backgroundAnalysis": {"startingStep": starting_step}}
    world = first_version(policy_spec([], strategy={"canary": {"steps": steps, **background}}), gateway=True)
    world.deploy("1.1.0").step()
    world.later(1).step()
    world.later(1).step()
    assert world.phase == Phase.PROGRESSING and "background analysis" in world.status.message
    world.later(31).step(OK)
    world.later(1).step(OK)
    assert world.phase == Phase.SUCCEEDED


# Item 8: replica ratio can scale stable to zero.
def test_replica_ratio_never_plans_stable_to_zero_below_full_weight() -> None:
    assert stable_pods(1, 10) == 1 and stable_pods(4, 80) == 1 and stable_pods(4, 99) == 1
    assert stable_pods(4, 100) == 0 and stable_pods(4, 25) == 3


def test_replica_ratio_with_one_replica_keeps_a_stable_pod_through_a_rollback() -> None:
    world = first_version(policy_spec(SIX), replicas=1)
    world.deploy("1.1.0").step(OK)
    walk(world, OK, until=1, tick=1)
    assert world.stable.ready == 1 and world.canary.ready == 1
    walk(world, BAD, until=99)
    assert world.phase == Phase.ROLLED_BACK and world.stable.ready == 1 and world.canary.replicas == 0


def test_a_rollback_keeps_the_canary_serving_until_a_stable_pod_is_ready() -> None:
    world = first_version(policy_spec([{"setWeight": 100}, {"analysis": {}}]))
    world.deploy("1.1.0").step(OK)
    walk(world, OK, until=1, tick=1)
    assert world.stable.replicas == 0, "at 100% by replica ratio the stable pods are gone"
    world.request("abort")
    result = plan(world.observed(), world.now)
    assert world.stable.ready == 0
    assert result.stable_service_selects_canary and result.canary is None, "the canary keeps serving"
    world.step()
    world.later(1).step()  # stable pods are Ready now (the ideal cluster starts them at once)
    assert world.stable.ready == 4 and world.canary.replicas == 0 and world.phase == Phase.ROLLED_BACK


# Item 9: blue-green stays on a candidate that loses readiness after the switch.
def test_blue_green_switches_back_when_the_candidate_loses_readiness() -> None:
    world = first_version(policy_spec([], strategy={"blueGreen": {"postPromotionAnalysis": True}}))
    world.deploy("1.1.0").step(OK)
    walk(world, OK, until=3, tick=1)
    assert world.active == "canary"
    world.canary = dataclasses.replace(world.canary, ready=2, available=2)
    world.canary_never_ready = True
    world.later(1).step(OK)
    assert world.active == "stable", "the warm old version takes the traffic back at once"
    assert world.phase == Phase.PROGRESSING and world.status.unready_since is not None
    world.later(301).step(OK)
    assert world.phase == Phase.ROLLED_BACK


# Item 11: readiness is timed from its loss, and route weight follows Ready pods at once.
def test_route_weight_leaves_a_canary_that_loses_its_ready_pods_at_once() -> None:
    world = first_version(policy_spec([{"setWeight": 50}, {"pause": {"duration": "1h"}}, {"setWeight": 100}]),
                          gateway=True)
    world.deploy("1.1.0").step(OK)
    walk(world, OK, until=1, tick=1)
    assert world.route_weight == 50
    world.canary = dataclasses.replace(world.canary, ready=0, available=0)
    world.canary_never_ready = True
    world.later(1).step()
    assert world.route_weight == 0, "no Ready canary pod: no route weight"


def test_a_pod_flapping_late_in_a_long_pause_gets_the_whole_deadline() -> None:
    world = first_version(policy_spec([{"setWeight": 50}, {"pause": {"duration": "1h"}}, {"setWeight": 100}]),
                          gateway=True)
    world.deploy("1.1.0").step(OK)
    walk(world, OK, until=1, tick=1)
    world.later(1800)
    world.canary = dataclasses.replace(world.canary, ready=1, available=1)
    world.canary_never_ready = True
    world.step()
    assert world.phase == Phase.PROGRESSING and world.route_weight == 25, "half the pods Ready: half the weight"
    world.later(60).step()
    world.canary_never_ready = False
    world.later(1).step()
    world.later(1).step()
    assert world.phase == Phase.PROGRESSING and world.route_weight == 50


# Item 12: a Stalled Release swallows abort and a re-applied stable version.
def test_abort_works_while_stalled() -> None:
    world = first_version(policy_spec(SIX), gateway=True)
    world.deploy("1.1.0").step(OK)
    walk(world, OK, until=1, tick=1)
    world.problem = "HTTPRoute checkout does not exist"
    world.request("abort").later(1).step()
    assert world.phase == Phase.ROLLED_BACK and world.canary.replicas == 0


def test_re_applying_stable_works_while_stalled() -> None:
    world = first_version(policy_spec(SIX), gateway=True)
    world.deploy("1.1.0").step(OK)
    walk(world, OK, until=1, tick=1)
    world.problem = "RolloutPolicy careful not found"
    world.deploy("1.0.0").later(1).step()
    assert world.phase == Phase.SUCCEEDED and world.status.stable_version == "1.0.0"
    assert world.route_weight == 0 and world.canary.replicas == 0
    assert any(e.startswith(reasons.FAST_ROLLBACK) for e in world.events)


def test_a_request_a_stalled_release_cannot_apply_is_refused_with_an_event() -> None:
    world = first_version(policy_spec(SIX), gateway=True)
    world.deploy("1.1.0").step(OK)
    world.problem = "RolloutPolicy careful not found"
    world.request("promote").later(1).step()
    assert world.status.request is None
    assert any(e.startswith(reasons.REQUEST_REFUSED) for e in world.events)


# Item 21: a rollout Stalled mid-way keeps its canary traffic.
def test_stalled_mid_rollout_withdraws_canary_traffic_and_restores_it_when_fixed() -> None:
    world = first_version(policy_spec(SIX), gateway=True)
    world.deploy("1.1.0").step(OK)
    walk(world, OK, until=3)
    assert world.route_weight == 30
    world.problem = "Secret prometheus-token with key token not found"
    world.later(1).step()
    assert world.route_weight == 0 and world.canary.replicas > 0, "traffic off, pods kept warm"
    world.problem = None
    world.later(1).step(OK)
    assert world.route_weight == 30


# Item 13: one metric passing while another holds on noData: hold for hours.
def test_a_metric_holding_for_data_is_bounded_even_when_another_passes() -> None:
    metrics = [{"name": "error-rate", "query": "q", "successCondition": "result < 0.05"},
               {"name": "latency", "query": "q", "successCondition": "result < 0.5", "noData": "hold"}]
    world = first_version(policy_spec([{"setWeight": 20}, {"analysis": {}}],
                                      analysis={"count": 100, "metrics": metrics}), gateway=True)
    mixed = [*OK, Result("latency", Verdict.WAITING, None, "no data (noData: hold)", missing=True)]
    world.deploy("1.1.0").step(mixed)
    for _ in range(40):
        world.later(31).step(mixed)
    assert world.phase == Phase.ROLLED_BACK
    assert "latency" in world.status.message and "no usable data" in world.status.message


# Item 14: a step before any setWeight, or setWeight 0, always rolls back.
def test_a_pause_before_any_set_weight_and_set_weight_zero_complete() -> None:
    steps = [{"pause": {"duration": "10s"}}, {"setWeight": 0}, {"setWeight": 50}, {"setWeight": 100}]
    world = first_version(policy_spec(steps), gateway=True)
    world.deploy("1.1.0").step()
    walk(world, OK, until=99, tick=5)
    assert world.phase == Phase.SUCCEEDED, world.status.message


# Item 16: no data at the start of a step pauses a healthy rollout.
def test_no_data_before_the_first_data_is_waiting_not_inconclusive() -> None:
    world = first_version(policy_spec([{"setWeight": 20}, {"analysis": {}}, {"setWeight": 100}]), gateway=True)
    world.deploy("1.1.0").step()
    world.later(1).step()
    world.later(31).step(NO_DATA)
    assert world.status.analysis[-1].verdict == Verdict.WAITING
    world.later(31).step(OK)
    world.later(31).step(OK)
    walk(world, OK, until=99, tick=1)
    assert world.phase == Phase.SUCCEEDED, world.status.message


def test_no_data_after_data_was_seen_follows_no_data() -> None:
    world = first_version(policy_spec([{"setWeight": 20}, {"analysis": {}}, {"setWeight": 100}]), gateway=True)
    world.deploy("1.1.0").step()
    world.later(1).step()
    world.later(31).step(OK)
    world.later(31).step(NO_DATA)
    assert world.phase == Phase.PAUSED and world.status.pause_reason == reasons.ANALYSIS_INCONCLUSIVE


def test_infinite_values_are_recorded_without_a_value_json_cannot_carry() -> None:
    world = first_version(policy_spec([{"setWeight": 20}, {"analysis": {}}]), gateway=True)
    world.deploy("1.1.0").step()
    world.later(1).step()
    world.later(31).step([Result("error-rate", Verdict.FAILED, float("inf"), "+Inf: result < 0.05 does not hold")])
    last = world.status.analysis[-1]
    assert last.verdict == Verdict.FAILED and last.value is None and "+Inf" in last.message


# Item 2 (planner side): an analysis step that would run no metric never passes.
def test_an_analysis_step_naming_no_known_metric_fails_instead_of_passing() -> None:
    policy = policy_spec([{"setWeight": 20}, {"analysis": {"metrics": ["error-rate"]}}, {"setWeight": 100}])
    policy.strategy.canary.steps[1].analysis.metrics = ["error-rat"]  # type: ignore[union-attr]  # past the schema
    world = first_version(policy, gateway=True)
    world.deploy("1.1.0").step(OK)
    walk(world, OK, until=99, tick=1)
    assert world.phase == Phase.ROLLED_BACK and "no metric" in world.status.message


# Item 7 (planner side): the decision's events are in status, for the handler to post after the write.
def test_the_decision_and_its_events_are_persisted_together() -> None:
    world = first_version(policy_spec(SIX), gateway=True)
    world.deploy("1.1.0").step(OK)
    walk(world, BAD, until=99)
    assert world.phase == Phase.ROLLED_BACK
    outbox = [e.reason for e in world.status.events]
    assert reasons.ROLLED_BACK in outbox
    ids = [int(e.id) for e in world.status.events]
    assert ids == sorted(ids) and ids[-1] == world.status.event_seq


def test_a_pass_replanned_from_a_persisted_rollback_never_routes_to_the_candidate() -> None:
    world = first_version(policy_spec(SIX), gateway=True)
    world.deploy("1.1.0").step(OK)
    walk(world, BAD, until=99)
    # The operator died after writing RolledBack and before acting: the cluster still routes 10%.
    world.route_weight = 10
    world.canary = ready("h-1.1.0", 1, "1.1.0")
    world.later(1).step(OK)
    assert world.route_weight == 0 and world.canary.replicas == 0 and world.phase == Phase.ROLLED_BACK


def test_stable_ready_pods_of_another_template_do_not_count_for_a_rollback() -> None:
    assert Workload(exists=True, template_hash="a", ready=3, updated=2, total=4).ready_of("a") == 1
    assert Workload(exists=True, template_hash="b", ready=4, updated=4, total=4).ready_of("a") == 0


# Item 10 (planner side): a stable Deployment deleted while the rollout waits is rebuilt from status.
def test_a_stable_deployment_deleted_during_a_pause_is_rebuilt_from_status() -> None:
    world = first_version(policy_spec([{"setWeight": 25}, {"pause": {}}, {"setWeight": 100}]), gateway=True)
    world.deploy("1.1.0").step()
    walk(world, OK, until=1, tick=1)
    world.later(1).step()
    assert world.phase == Phase.PAUSED
    world.stable = Workload()
    result = world.later(1).step()
    assert result.stable is not None and result.stable.template == "stable" and result.stable.replicas == 4
    assert world.status.stable_spec is not None and world.status.stable_spec.version == "1.0.0"
    assert world.stable.template_hash == "h-1.0.0" and world.stable.ready == 4


def test_a_lower_weight_by_replica_ratio_keeps_the_canary_until_stable_pods_are_ready() -> None:
    world = first_version(policy_spec([{"setWeight": 100}, {"setWeight": 0}, {"pause": {}}]), replicas=1)
    world.deploy("1.1.0").step()
    walk(world, OK, until=1, tick=1)
    assert world.stable.replicas in (0, 1)
    world.stable = Workload(exists=True, template_hash="h-1.0.0", version="1.0.0", replicas=0)
    result = plan(world.observed(), world.now)
    assert result.canary is not None and result.canary.replicas == 1, "the canary keeps serving meanwhile"
    assert result.stable is not None and result.stable.replicas == 1


# Issue 9: a failure is never masked by an inconclusive result in the same pass, so a person asked
# to accept an inconclusive result (`sluice promote`) is never asked to accept a failure with it.
MASKED = {"count": 3, "metrics": [
    {"name": "error-rate", "query": "q", "successCondition": "result < 0.05", "failureLimit": 0,
     "abortCondition": "result > 0.3"},
    {"name": "latency", "query": "q", "successCondition": "result < 0.05", "failureCondition": "result > 0.2"}]}
BOTH_OK = [Result("error-rate", Verdict.SUCCESSFUL, 0.01, "ok"), Result("latency", Verdict.SUCCESSFUL, 0.01, "ok")]
BETWEEN = Result("latency", Verdict.INCONCLUSIVE, 0.1, "0.1: neither result < 0.05 nor result > 0.2")


@pytest.mark.parametrize("failure", [
    pytest.param(Result("error-rate", Verdict.FAILED, 0.5, "0.5: abortCondition result > 0.3 holds", tripped=True),
                 id="an abortCondition met"),
    pytest.param(Result("error-rate", Verdict.FAILED, 0.2, "0.2: result < 0.05 does not hold"),
                 id="failureLimit crossed"),
])
def test_a_step_failure_beats_a_background_inconclusive_in_the_same_pass(failure: Result) -> None:
    steps = [{"setWeight": 25}, {"analysis": {"metrics": ["error-rate"]}}, {"setWeight": 100}]
    world = first_version(policy_spec([], analysis=MASKED, strategy={"canary": {"steps": steps, **BACKGROUND}}),
                          gateway=True)
    world.deploy("1.1.0").step(BOTH_OK)
    world.later(1).step(BOTH_OK)
    assert world.status.current_step == 1 and world.status.background_run is not None
    # The background run measured error-rate 10 s ago (it goes on while the canary's pods flap, the
    # step's run does not): this pass measures error-rate for the step, latency for the background.
    world.status.background_run.metrics["error-rate"].last_measured_at = iso(world.now + timedelta(seconds=30))
    world.later(40).step([failure, BETWEEN])
    assert world.status.analysis[-1].verdict == Verdict.INCONCLUSIVE, "the background's latency was measured"
    assert world.phase == Phase.ROLLED_BACK, world.status.message
    assert "metric error-rate" in world.status.message and world.route_weight == 0


def test_a_failed_metric_beats_another_past_the_deadline_with_no_data() -> None:
    policy = policy_spec([{"analysis": {}}], analysis=MASKED)
    run = AnalysisRun(step=0, started_at=iso(T0), metrics={
        "error-rate": MetricRun(failed=1, last_measured_at=iso(T0), data_seen=True),
        "latency": MetricRun(last_measured_at=iso(T0), waiting_since=iso(T0))})
    metrics = list(reversed(policy.analysis.metrics))  # the late one first
    state = analysis.evaluate(run, metrics, policy.analysis, T0 + timedelta(seconds=301), 300)
    assert state.outcome == analysis.Outcome.FAILED and state.metric == "error-rate"

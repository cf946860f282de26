"""The canary planner, transition by transition, on an ideal cluster with an injected clock."""

from __future__ import annotations

import pytest

from sluice.api.models import BackgroundAnalysis, Phase, ReleaseStatus, Verdict
from sluice.plan import reasons
from sluice.plan.canary import weight_at
from sluice.plan.types import Result, canary_replicas, effective_weight, iso
from tests.unit.world import World, first_version, policy_spec, release_spec

OK = [Result("error-rate", Verdict.SUCCESSFUL, 0.01, "0.01: result < 0.05")]
BAD = [Result("error-rate", Verdict.FAILED, 0.31, "0.31: result < 0.05 does not hold")]
EMPTY = [Result("error-rate", Verdict.INCONCLUSIVE, None, "no data")]
DOWN = [Result("error-rate", Verdict.ERROR, None, "Prometheus at http://p:9090 is unreachable")]
WAIT = [Result("error-rate", Verdict.WAITING, None, "waiting for traffic: 3 of 100 samples")]

STEPS = [{"setWeight": 25}, {"analysis": {}}, {"setWeight": 50}, {"pause": {"duration": "2m"}}, {"setWeight": 100}]


def condition(status: ReleaseStatus, kind: str) -> tuple[str, str]:
    found = next(c for c in status.conditions if c.type == kind)
    return found.status, found.reason


@pytest.mark.parametrize(("total", "weight", "pods"), [
    pytest.param(4, 10, 1, id="small weight still gets a pod"),
    pytest.param(4, 50, 2, id="half"),
    pytest.param(4, 100, 4, id="all"),
    pytest.param(4, 0, 0, id="none"),
    pytest.param(10, 33, 4, id="rounds up"),
    pytest.param(0, 50, 0, id="scaled to zero stays at zero"),
])
def test_canary_replicas(total: int, weight: int, pods: int) -> None:
    assert canary_replicas(total, weight) == pods


def test_effective_weight_is_what_ready_pods_really_carry() -> None:
    assert effective_weight(1, 3) == 25
    assert effective_weight(0, 4) == 0
    assert effective_weight(2, 0) == 100
    assert effective_weight(0, 0) == 0


def test_weight_at_holds_the_last_set_weight() -> None:
    steps = policy_spec(STEPS).strategy.canary.steps  # type: ignore[union-attr]
    assert [weight_at(steps, i) for i in range(6)] == [25, 25, 50, 50, 100, 100]


def test_first_version_becomes_stable_directly() -> None:
    world = World(spec=release_spec("1.0.0"), policy=policy_spec(STEPS))
    world.settle()
    assert world.phase == Phase.SUCCEEDED
    assert world.status.stable_version == "1.0.0"
    assert world.stable.replicas == 4 and not world.canary.exists
    assert condition(world.status, "Ready") == ("True", reasons.ROLLED_OUT)
    assert [h.outcome for h in world.status.history] == ["Succeeded"]


def test_first_version_not_ready_within_deadline_fails() -> None:
    world = World(spec=release_spec("1.0.0"), policy=policy_spec(STEPS))
    world.step()
    world.stable = world.stable.__class__(exists=True, template_hash=world.digest, replicas=4, total=4)
    world.later(301).step()
    assert world.phase == Phase.FAILED
    assert "not Ready within 5m" in world.status.message
    assert condition(world.status, "Stalled") == ("True", reasons.FAILED)


def test_healthy_canary_walks_every_step_to_succeeded() -> None:
    world = first_version(policy_spec(STEPS), gateway=True)
    world.deploy("1.1.0").step(OK)
    assert world.phase == Phase.PROGRESSING and world.route_weight == 0, "no traffic before the pods are Ready"
    weights = []
    for _ in range(400):
        world.later(1).step(OK)
        weights.append(world.route_weight)
        if world.phase == Phase.SUCCEEDED:
            break
    assert world.phase == Phase.SUCCEEDED, world.status.message
    assert world.status.stable_version == "1.1.0" and world.status.candidate_version is None
    assert world.stable.template_hash == "h-1.1.0" and world.stable.replicas == 4
    assert world.route_weight == 0 and world.canary.replicas == 0
    assert [w for i, w in enumerate(weights) if i == 0 or weights[i - 1] != w] == [25, 50, 100, 0]
    assert sum("StepCompleted" in e for e in world.events) == 5
    assert world.status.history[-1].outcome == "Succeeded"


def test_gateway_moves_the_route_only_once_canary_pods_are_ready() -> None:
    world = first_version(policy_spec(STEPS), gateway=True)
    world.canary_never_ready = True
    world.deploy("1.1.0").step(OK)
    world.later(5).step(OK)
    assert world.canary.replicas == 1 and world.route_weight == 0
    assert world.stable.replicas == 4, "stable stays at full size under a route"


def test_replica_ratio_shrinks_stable_only_by_ready_canary_pods() -> None:
    world = first_version(policy_spec(STEPS))
    world.canary_never_ready = True
    world.deploy("1.1.0").step(OK)
    world.later(5).step(OK)
    assert world.canary.replicas == 1 and world.stable.replicas == 4
    assert world.status.canary_weight == 0
    world.canary_never_ready = False
    world.later(1).step(OK)
    assert world.stable.replicas == 4, "the pass that sees no Ready canary pod keeps stable whole"
    world.later(1).step(OK)
    assert world.stable.replicas == 3, "one canary pod Ready: one stable pod goes"
    world.later(1).step(OK)
    assert world.status.canary_weight == 25
    assert "by replica ratio" in world.status.message


def test_failed_analysis_rolls_back_traffic_first() -> None:
    world = first_version(policy_spec(STEPS), gateway=True)
    world.deploy("1.1.0").settle(OK, passes=3)
    world.later(31)
    result = world.step(BAD)
    assert world.phase == Phase.ROLLED_BACK
    assert result.weight == 0 and result.canary is not None and result.canary.replicas == 0
    assert result.stable is not None and result.stable.replicas == 4 and result.stable.template == "stable"
    assert "error-rate failed 1 time(s)" in world.status.message and "sluice retry" in world.status.message
    assert "(last: 0.31: result < 0.05 does not hold)" in world.status.message
    assert world.status.analysis[-1].value == 0.31
    assert world.status.history[-1].outcome == "RolledBack"
    assert condition(world.status, "Stalled") == ("True", reasons.ROLLED_BACK)
    assert any(e.startswith("RolledBack") for e in world.events)


def test_an_analysis_step_measures_as_it_begins_and_polls_until_the_data_comes() -> None:
    """The first measurement is taken in the pass the step begins; while it waits for traffic the
    step asks to be looked at again after FIRST_POLL seconds; after a verdict, every interval."""
    world = first_version(policy_spec(STEPS), gateway=True)
    world.deploy("1.1.0").step()
    waiting = world.later(1).step(WAIT)
    assert world.status.current_step == 1 and world.status.analysis[-1].verdict == Verdict.WAITING
    assert world.status.analysis[-1].at == world.status.step_started_at, "measured in the pass the step began"
    assert waiting.requeue_after == pytest.approx(2)
    first = world.status.analysis[-1].at
    world.later(1).step(WAIT)
    assert world.status.analysis[-1].at == first, "not measured again before FIRST_POLL"
    world.later(1).step(WAIT)
    assert world.status.analysis[-1].at == iso(world.now), "measured again FIRST_POLL after"
    judged = world.later(2).step(OK)
    assert judged.requeue_after == pytest.approx(30) and world.status.current_step == 1
    world.later(30).step(OK)
    assert world.status.current_step == 2, "count 2 judged, 30 s after the first verdict"
    assert [m.verdict for m in world.status.analysis] == [Verdict.WAITING, Verdict.SUCCESSFUL, Verdict.SUCCESSFUL]


def test_failure_limit_tolerates_that_many_failures() -> None:
    policy = policy_spec(STEPS, analysis={"count": 3, "metrics": [
        {"name": "error-rate", "query": "q", "successCondition": "result < 0.05", "failureLimit": 1}]})
    world = first_version(policy, gateway=True)
    world.deploy("1.1.0").settle(OK, passes=2)
    world.later(31).step(BAD)
    assert world.phase == Phase.PROGRESSING
    world.later(31).step(BAD)
    assert world.phase == Phase.ROLLED_BACK


TRIPWIRE = {"count": 5, "metrics": [{"name": "error-rate", "query": "q", "successCondition": "result < 0.05",
                                     "failureLimit": 2, "abortCondition": "result > 0.3"}]}
TRIPPED = [Result("error-rate", Verdict.FAILED, 0.5, "0.5: abortCondition result > 0.3 holds", tripped=True)]


def test_one_measurement_meeting_the_abort_condition_rolls_back_in_that_pass() -> None:
    world = first_version(policy_spec(STEPS, analysis=TRIPWIRE), gateway=True)
    world.deploy("1.1.0").settle(OK, passes=2)
    world.later(31).step(BAD)
    assert world.phase == Phase.PROGRESSING, "an ordinary failure: within failureLimit 2"
    result = world.later(31).step(TRIPPED)
    assert world.phase == Phase.ROLLED_BACK and result.weight == 0
    assert world.status.message.startswith(
        "rolled back 1.1.0: metric error-rate met its abortCondition `result > 0.3` (value 0.5): one such "
        "measurement is enough, without waiting for failureLimit 2")
    assert world.status.history[-1].outcome == "RolledBack"
    assert any(e.startswith("RolledBack") and "abortCondition" in e for e in world.events)


def test_a_tripped_abort_condition_with_on_failure_pause_freezes() -> None:
    world = first_version(policy_spec(STEPS, analysis=TRIPWIRE, onFailure="pause"), gateway=True)
    world.deploy("1.1.0").settle(OK, passes=2)
    result = world.later(31).step(TRIPPED)
    assert world.phase == Phase.PAUSED and world.status.pause_reason == reasons.ANALYSIS_FAILED
    assert result.weight == 25 and "abortCondition" in world.status.message
    assert condition(world.status, "Stalled")[0] == "True"


def test_a_tripped_abort_condition_in_background_analysis_rolls_back_during_a_pause() -> None:
    steps = [{"setWeight": 25}, {"pause": {}}, {"setWeight": 100}]
    policy = policy_spec(steps, analysis=TRIPWIRE)
    policy.strategy.canary.background_analysis = BackgroundAnalysis(startingStep=0)  # type: ignore[union-attr]
    world = first_version(policy, gateway=True)
    world.deploy("1.1.0").settle(OK, passes=2)
    assert world.phase == Phase.PAUSED and world.status.pause_reason == reasons.WAITING_FOR_PROMOTE
    world.later(31).step(TRIPPED)
    assert world.phase == Phase.ROLLED_BACK and world.route_weight == 0
    assert "background analysis: metric error-rate met its abortCondition" in world.status.message


def test_a_pause_for_a_person_is_announced_once_in_an_event() -> None:
    world = first_version(policy_spec([{"setWeight": 25}, {"pause": {}}, {"setWeight": 100}]), gateway=True)
    world.deploy("1.1.0").settle(OK, passes=2)
    world.later(600).settle(OK)
    assert world.phase == Phase.PAUSED and world.status.pause_reason == reasons.WAITING_FOR_PROMOTE
    waiting = [e for e in world.events if e.startswith(reasons.WAITING_FOR_PROMOTE)]
    assert waiting == ["WaitingForPromote: 1.1.0 waits for `sluice promote` at step 2/3 (pause), weight 25%"]


def test_a_user_pause_and_resume_are_each_recorded_in_an_event_naming_who() -> None:
    world = first_version(policy_spec(STEPS), gateway=True)
    world.deploy("1.1.0").settle(OK, passes=2)
    world.request("pause")
    world.status.request.by = "alice"  # type: ignore[union-attr]
    world.later(1).step(OK)
    assert world.phase == Phase.PAUSED and world.route_weight == 25
    world.request("resume").later(1).step(OK)
    assert world.phase == Phase.PROGRESSING
    applied = [e for e in world.events if e.startswith(reasons.REQUEST_APPLIED)]
    assert applied == ["RequestApplied: paused by alice", "RequestApplied: resumed by a user"]


def test_on_failure_pause_freezes_traffic_where_it_is() -> None:
    world = first_version(policy_spec(STEPS, onFailure="pause"), gateway=True)
    world.deploy("1.1.0").settle(OK, passes=2)
    result = world.later(31).step(BAD)
    assert world.phase == Phase.PAUSED and world.status.pause_reason == reasons.ANALYSIS_FAILED
    assert result.weight == 25 and result.canary is None and result.stable is None
    assert world.route_weight == 25
    assert condition(world.status, "Stalled")[0] == "True"
    world.later(60).step(OK)
    assert world.phase == Phase.PAUSED, "a frozen rollout stays frozen until someone acts"


def test_consecutive_errors_fail_the_run_and_never_promote() -> None:
    world = first_version(policy_spec(STEPS), gateway=True)
    world.deploy("1.1.0").settle(OK, passes=2)
    for _ in range(3):
        world.later(31).step(DOWN)
        assert world.phase == Phase.PROGRESSING and world.status.current_step == 1
    world.later(31).step(DOWN)
    assert world.phase == Phase.ROLLED_BACK
    assert "could not be measured 4 times in a row" in world.status.message


def test_no_data_is_inconclusive_and_pauses_then_retry_measures_again() -> None:
    world = first_version(policy_spec(STEPS), gateway=True)
    world.deploy("1.1.0").settle(OK, passes=2)
    world.later(31).step(EMPTY)
    world.later(31).step(OK)
    assert world.phase == Phase.PAUSED and world.status.pause_reason == reasons.ANALYSIS_INCONCLUSIVE
    assert world.status.current_step == 1 and world.route_weight == 25
    world.request("retry").step()
    assert world.phase == Phase.PROGRESSING and world.status.analysis_run is not None
    assert world.status.analysis_run.metrics == {}, "the step measures again from scratch"


def test_waiting_for_traffic_is_bounded_by_progress_deadline() -> None:
    world = first_version(policy_spec(STEPS), gateway=True)
    world.deploy("1.1.0").settle(OK, passes=2)
    for _ in range(10):  # waiting is timed from the first Waiting one, 31 s in (settle measured OK at once)
        world.later(31).step(WAIT)
    assert world.phase == Phase.PROGRESSING and "waiting for traffic" not in world.status.message
    world.later(31).step(WAIT)
    assert world.phase == Phase.ROLLED_BACK
    assert "no usable data for 5m" in world.status.message and "too little traffic" in world.status.message


def test_timed_pause_survives_a_restart_with_its_time_left() -> None:
    world = first_version(policy_spec([{"setWeight": 10}, {"pause": {"duration": "2m"}}, {"setWeight": 100}]),
                          gateway=True)
    world.deploy("1.1.0").step()
    world.later(1).step()
    assert world.status.current_step == 1
    started = world.status.step_started_at
    world.later(90)
    # A restart: the operator knows only what status says, read back from the API server.
    world.status = ReleaseStatus.model_validate(world.status.model_dump(by_alias=True, mode="json"))
    result = world.step()
    assert world.status.current_step == 1 and world.status.step_started_at == started
    assert result.requeue_after == pytest.approx(30, abs=1)
    world.later(31).step()
    assert world.status.current_step >= 2  # type: ignore[operator]


@pytest.mark.parametrize("step_index", range(len(STEPS)))
def test_restart_in_the_middle_of_each_step_neither_repeats_nor_skips(step_index: int) -> None:
    world = first_version(policy_spec(STEPS), gateway=True)
    world.deploy("1.1.0").step(OK)
    for _ in range(300):
        if world.status.current_step == step_index:
            break
        world.later(1).step(OK)
    assert world.status.current_step == step_index
    world.later(3)
    restarted = World(**{**world.__dict__, "status": ReleaseStatus.model_validate(
        world.status.model_dump(by_alias=True, mode="json")), "events": []})
    a, b = world.step(OK), restarted.step(OK)
    assert (a.status.current_step, a.weight, a.measure) == (b.status.current_step, b.weight, b.measure)
    assert not any("RolloutStarted" in e for e in restarted.events)


def test_indefinite_pause_waits_for_promote() -> None:
    world = first_version(policy_spec([{"setWeight": 20}, {"pause": {}}, {"setWeight": 100}]), gateway=True)
    world.deploy("1.1.0").settle()
    assert world.phase == Phase.PAUSED and world.status.pause_reason == reasons.WAITING_FOR_PROMOTE
    assert "sluice promote" in world.status.message
    assert condition(world.status, "Stalled")[0] == "False"
    world.later(3600).step()
    assert world.phase == Phase.PAUSED
    world.request("promote").settle()
    assert world.phase == Phase.SUCCEEDED and world.status.stable_version == "1.1.0"


def test_a_pause_right_after_set_weight_still_moves_the_route() -> None:
    world = first_version(policy_spec([{"setWeight": 30}, {"pause": {}}, {"setWeight": 100}]), gateway=True)
    world.deploy("1.1.0").settle()
    assert world.phase == Phase.PAUSED and world.route_weight == 30 and world.status.canary_weight == 30


def test_promote_full_skips_every_remaining_step() -> None:
    world = first_version(policy_spec(STEPS), gateway=True)
    world.deploy("1.1.0").step(OK)
    world.later(1).request("promote-full").settle(OK)
    assert world.phase == Phase.SUCCEEDED
    assert not any("analysis" in e and "StepCompleted" in e for e in world.events)


def test_abort_mid_step_rolls_back_whatever_the_policy_says() -> None:
    world = first_version(policy_spec(STEPS, onFailure="pause"), gateway=True)
    world.deploy("1.1.0").settle(OK, passes=2)
    result = world.request("abort").step()
    assert world.phase == Phase.ROLLED_BACK and result.weight == 0
    assert "aborted by" in world.status.message


def test_retry_after_rollback_starts_over_without_a_spec_change() -> None:
    world = first_version(policy_spec(STEPS), gateway=True)
    world.deploy("1.1.0").settle(OK, passes=2)
    world.later(31).step(BAD)
    world.later(60).step()
    assert world.phase == Phase.ROLLED_BACK and world.canary.replicas == 0
    world.request("retry").step(OK)
    assert world.phase == Phase.PROGRESSING and world.status.current_step == 0
    world.finish(OK)
    assert world.phase == Phase.SUCCEEDED


def test_reapplying_the_stable_version_is_an_immediate_rollback() -> None:
    world = first_version(policy_spec(STEPS), gateway=True)
    world.deploy("1.1.0").settle(OK, passes=3)
    result = world.deploy("1.0.0").step()
    assert world.phase == Phase.SUCCEEDED and result.weight == 0
    assert result.canary is not None and result.canary.replicas == 0
    assert world.status.history[-1].outcome == "RolledBack"
    assert "re-applied" in world.status.history[-1].reason
    assert any(e.startswith(reasons.FAST_ROLLBACK) for e in world.events)


def test_a_newer_version_supersedes_the_candidate() -> None:
    world = first_version(policy_spec(STEPS), gateway=True)
    world.deploy("1.1.0").settle(OK, passes=3)
    world.deploy("1.2.0").step(OK)
    assert world.status.candidate_version == "1.2.0" and world.status.current_step == 0
    assert world.status.history[-1].outcome == "Superseded"
    world.finish(OK)
    assert world.status.stable_version == "1.2.0"


def test_candidate_not_ready_within_progress_deadline_rolls_back() -> None:
    world = first_version(policy_spec(STEPS), gateway=True)
    world.canary_never_ready = True
    world.deploy("1.1.0").step()
    world.later(299).step()
    assert world.phase == Phase.PROGRESSING
    world.later(2).step()
    assert world.phase == Phase.ROLLED_BACK
    assert "not Ready within 5m (0/1 pods ready)" in world.status.message


def test_promotion_waits_for_the_stable_deployment() -> None:
    world = first_version(policy_spec([{"setWeight": 100}]), gateway=True)
    world.deploy("1.1.0").step()
    result = world.later(1).step()
    assert result.stable is not None and result.stable.template == "candidate"
    assert world.phase == Phase.PROGRESSING
    world.later(1).step()
    assert world.phase == Phase.SUCCEEDED


def test_missing_policy_stalls_and_moves_nothing() -> None:
    world = first_version(policy_spec(STEPS))
    world.problem = "RolloutPolicy careful not found in namespace shop"
    world.deploy("1.1.0")
    result = world.step()
    assert (result.stable, result.canary, result.weight) == (None, None, None)
    assert condition(world.status, "Stalled") == ("True", reasons.POLICY_NOT_FOUND)
    assert world.status.message == world.problem


def test_unmet_requirement_holds_the_rollout_pending() -> None:
    world = first_version(policy_spec(STEPS))
    world.unmet = "1.1.0 has not Succeeded in namespace staging yet (requires)"
    world.deploy("1.1.0").step()
    assert world.phase == Phase.PENDING and not world.canary.exists
    world.unmet = None
    world.later(5).step()
    assert world.phase == Phase.PROGRESSING


def test_background_analysis_failure_rolls_back_at_any_step() -> None:
    steps = [{"setWeight": 10}, {"pause": {"duration": "10m"}}, {"setWeight": 100}]
    policy = policy_spec(steps, strategy={"canary": {"steps": steps, "backgroundAnalysis": {"startingStep": 0}}})
    world = first_version(policy, gateway=True)
    world.deploy("1.1.0").settle(OK, passes=3)
    assert world.status.current_step == 1
    world.later(31).step(BAD)
    assert world.phase == Phase.ROLLED_BACK
    assert "background analysis" in world.status.message


def test_requests_that_do_not_apply_are_refused_with_a_reason() -> None:
    world = first_version(policy_spec(STEPS))
    world.request("promote").step()
    assert world.status.request is None
    assert any(e.startswith(reasons.REQUEST_REFUSED) and "already" not in e and "stable" in e for e in world.events)


def test_conditions_keep_their_transition_time_until_they_flip() -> None:
    world = first_version(policy_spec(STEPS))
    since = next(c for c in world.status.conditions if c.type == "Ready").last_transition_time
    world.later(100).step()
    assert next(c for c in world.status.conditions if c.type == "Ready").last_transition_time == since
    world.deploy("1.1.0").later(1).step(OK)
    assert next(c for c in world.status.conditions if c.type == "Ready").last_transition_time != since
    assert all(c.observed_generation == world.generation for c in world.status.conditions)


def test_no_policy_means_a_plain_rolling_update() -> None:
    world = World(spec=release_spec("1.0.0", policy=None), policy=None)
    world.settle()
    world.deploy("1.1.0").settle()
    assert world.phase == Phase.SUCCEEDED and world.status.stable_version == "1.1.0"
    assert not world.canary.exists
    assert world.status.history[-1].reason == "rolling update"


def test_a_promotion_that_cannot_finish_fails_at_the_deadline_and_restores_stable() -> None:
    world = first_version(policy_spec([{"setWeight": 100}]), gateway=True)
    world.deploy("1.1.0").step()
    world.later(1).step()  # the step completes: the stable Deployment is asked to take 1.1.0
    stuck = world.stable.__class__(exists=True, template_hash="h-1.1.0", version="1.1.0", replicas=4,
                                   ready=2, updated=2, available=2, total=4)  # half-way, and staying there
    world.stable = stuck
    world.later(200).step()
    assert world.phase == Phase.PROGRESSING and "promoting 1.1.0" in world.status.message
    world.stable = stuck
    plan = world.later(101).step()
    assert world.phase == Phase.ROLLED_BACK
    assert "stable Deployment not rolled out to 1.1.0 within 5m" in world.status.message
    assert plan.stable is not None and plan.stable.template == "stable"
    assert plan.weight == 100, "no stable pod of 1.0.0 is Ready yet: the candidate keeps serving"
    assert world.stable.template_hash == "h-1.0.0"
    plan = world.later(1).step()
    assert plan.weight == 0 and world.route_weight == 0, "1.0.0 Ready again: traffic leaves the candidate"

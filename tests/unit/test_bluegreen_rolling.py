"""The blue-green and rolling planners, on the ideal cluster of tests.unit.world."""

from __future__ import annotations

from typing import Any

import pytest

from sluice.api.models import Phase, ReleaseStatus
from sluice.plan import reasons
from sluice.plan.bluegreen import step_names
from tests.unit.test_canary import BAD, OK
from tests.unit.world import World, first_version, policy_spec


def blue_green(**spec: Any) -> Any:
    return policy_spec([{"setWeight": 1}], strategy={"blueGreen": {"scaleDownDelay": "30s", **spec}})


def rolling(**spec: Any) -> Any:
    return policy_spec([{"setWeight": 1}], strategy={"rolling": spec})


def test_blue_green_steps_follow_the_options() -> None:
    spec = blue_green(prePromotionAnalysis=True, postPromotionAnalysis=True).strategy.blue_green
    assert step_names(spec) == ["preview", "prePromotionAnalysis", "switch", "postPromotionAnalysis",
                                "scaleDownDelay"]


def test_blue_green_switches_in_one_write_once_the_preview_is_ready() -> None:
    world = first_version(blue_green(prePromotionAnalysis=True))
    plan = world.deploy("2.0.0").step(OK)
    assert plan.preview and world.active == "stable" and world.canary.replicas == 4
    assert world.stable.replicas == 4, "the active version keeps full size"
    actives = []
    for _ in range(200):
        world.later(1).step(OK)
        actives.append(world.active)
        if world.phase == Phase.SUCCEEDED:
            break
    assert world.phase == Phase.SUCCEEDED and world.status.stable_version == "2.0.0"
    switches = [a for i, a in enumerate(actives) if i == 0 or actives[i - 1] != a]
    assert switches == ["stable", "canary", "stable"], "once to the candidate, once back to identical pods"
    assert world.stable.template_hash == "h-2.0.0" and world.canary.replicas == 0


def test_blue_green_switches_back_only_once_the_preview_endpoints_show_the_new_pods() -> None:
    world = first_version(blue_green())
    world.deploy("2.0.0").settle(passes=6)
    world.later(31).step()
    world.later(1).step()
    assert world.stable.template_hash == "h-2.0.0" and world.active == "canary"
    world.preview_track = "canary"  # the controller has not caught up: nothing switches
    plan = world.step()
    assert plan.active == "canary" and plan.preview_track == "stable"
    assert "waiting for endpoints" in world.status.message
    world.later(1).step()
    assert world.active == "stable" and world.phase == Phase.SUCCEEDED


def test_blue_green_never_switches_to_pods_that_are_not_ready() -> None:
    world = first_version(blue_green())
    world.canary_never_ready = True
    world.deploy("2.0.0").step()
    world.later(200).step()
    assert world.active == "stable" and world.status.current_step == 0
    world.later(200).step()
    assert world.phase == Phase.ROLLED_BACK and "not Ready within 5m" in world.status.message


def test_blue_green_waits_for_promote_without_auto_promotion() -> None:
    world = first_version(blue_green(autoPromotion=False))
    world.deploy("2.0.0").settle()
    assert world.phase == Phase.PAUSED and world.status.pause_reason == reasons.WAITING_FOR_PROMOTE
    assert world.active == "stable" and "waiting for `sluice promote`" in world.status.message
    world.later(600).settle()
    assert [e for e in world.events if e.startswith(reasons.WAITING_FOR_PROMOTE)] == [
        "WaitingForPromote: 2.0.0 is ready behind the preview and waits for `sluice promote`"]
    world.request("promote").step()
    assert world.active == "canary" and world.status.canary_weight == 100


def test_blue_green_auto_promotion_delay() -> None:
    world = first_version(blue_green(autoPromotionDelay="1m"))
    world.deploy("2.0.0").step()
    world.later(1).step()
    world.later(30).step()
    assert world.active == "stable" and "switching to 2.0.0 in 30s" in world.status.message
    world.later(31).step()
    assert world.active == "canary"


def test_failed_post_promotion_analysis_switches_back_to_warm_pods() -> None:
    world = first_version(blue_green(postPromotionAnalysis=True))
    world.deploy("2.0.0").settle(OK, passes=3)
    assert world.active == "canary"
    stable_before = world.stable
    plan = world.later(31).step(BAD)
    assert world.phase == Phase.ROLLED_BACK and plan.active == "stable"
    assert world.stable == stable_before, "the old version was warm: no pod starts"
    assert world.canary.replicas == 0


def test_abort_inside_scale_down_delay_is_a_selector_switch() -> None:
    world = first_version(blue_green())
    world.deploy("2.0.0").settle(passes=4)
    assert world.active == "canary" and world.stable.template_hash == "h-1.0.0"
    world.request("abort").step()
    assert world.active == "stable" and world.phase == Phase.ROLLED_BACK
    assert world.stable.template_hash == "h-1.0.0" and world.stable.ready == 4


def test_rolling_updates_in_place_then_judges() -> None:
    world = first_version(rolling(postAnalysis=True, maxSurge=1, maxUnavailable=0))
    world.deploy("2.0.0").finish(OK)
    assert world.phase == Phase.SUCCEEDED and world.stable.template_hash == "h-2.0.0"
    assert not world.canary.exists
    assert sum(m.verdict.value == "Successful" for m in world.status.analysis) == 2


def test_rolling_post_analysis_failure_returns_to_the_previous_template() -> None:
    world = first_version(rolling(postAnalysis=True))
    world.deploy("2.0.0").settle(OK, passes=2)
    assert world.stable.template_hash == "h-2.0.0"
    plan = world.later(31).step(BAD)
    assert world.phase == Phase.ROLLED_BACK
    assert plan.stable is not None and plan.stable.template == "stable"
    assert world.stable.template_hash == "h-1.0.0" and world.stable.version == "1.0.0"
    assert world.status.history[-1].outcome == "RolledBack"


def test_rolling_measures_the_stable_track() -> None:
    world = first_version(rolling(postAnalysis=True))
    world.deploy("2.0.0").settle(OK, passes=1)
    plan = world.later(31).step()
    assert plan.measure == ("error-rate",) and plan.measure_track == "stable"


def test_rolling_retry_after_rollback() -> None:
    world: World = first_version(rolling(postAnalysis=True))
    world.deploy("2.0.0").settle(OK, passes=2)
    world.later(31).step(BAD)
    world.later(5).step()
    world.request("retry").finish(OK)
    assert world.phase == Phase.SUCCEEDED and world.status.stable_version == "2.0.0"


@pytest.mark.parametrize("policy", [
    pytest.param(blue_green(prePromotionAnalysis=True, postPromotionAnalysis=True), id="blue-green"),
    pytest.param(rolling(postAnalysis=True), id="rolling"),
])
def test_a_restart_at_any_step_decides_the_same(policy: Any) -> None:
    world = first_version(policy)
    world.deploy("2.0.0").step(OK)
    seen = 0
    for _ in range(300):
        if world.phase == Phase.SUCCEEDED:
            break
        world.later(2)
        restarted = World(**{**world.__dict__, "status": ReleaseStatus.model_validate(
            world.status.model_dump(by_alias=True, mode="json")), "events": []})
        a, b = world.step(OK), restarted.step(OK)
        assert (a.status.current_step, a.active, a.stable, a.canary, a.measure) == \
               (b.status.current_step, b.active, b.stable, b.canary, b.measure)
        seen += 1
    assert world.phase == Phase.SUCCEEDED and seen > 5

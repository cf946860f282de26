"""The kstatus conditions every phase ends with, and what a person is told after a rollback.

By kstatus' conventions (Flux's `wait`, kpt) an object with neither Reconciling nor Stalled True is
done reconciling, so a rollout waiting for a person must say Reconciling=True, or a GitOps tool that
waits may go green before the desired version serves. One named story per phase, on the ideal
cluster of tests.unit.world; the e2e test test_health.py checks the same on real objects with
kstatus' and Argo CD's own code.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from sluice.api.models import Phase, ReleaseStatus
from sluice.plan import reasons
from sluice.plan.lifecycle import unreadable
from tests.unit.test_bluegreen_rolling import blue_green
from tests.unit.test_canary import BAD, EMPTY, OK
from tests.unit.world import T0, World, first_version, policy_spec, release_spec

ROOT = Path(__file__).resolve().parents[2]
STEPS = [{"setWeight": 25}, {"analysis": {}}, {"setWeight": 100}]


def conditions(status: ReleaseStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


def progressing() -> World:
    world = first_version(policy_spec(STEPS), gateway=True)
    world.deploy("1.1.0").settle(OK, passes=2)
    return world


def paused_step() -> World:
    world = first_version(policy_spec([{"setWeight": 25}, {"pause": {}}, {"setWeight": 100}]))
    world.deploy("1.1.0").settle()
    return world


def timed_pause() -> World:
    world = first_version(policy_spec([{"setWeight": 25}, {"pause": {"duration": "10m"}}, {"setWeight": 100}]))
    world.deploy("1.1.0").settle()
    return world


def blue_green_gate() -> World:
    world = first_version(blue_green(autoPromotion=False))
    world.deploy("2.0.0").settle()
    return world


def inconclusive() -> World:
    world = first_version(policy_spec(STEPS, analysis={"metrics": [
        {"name": "error-rate", "query": "q", "successCondition": "result < 0.05", "noData": "inconclusive"}]}))
    world.deploy("1.1.0").step(OK)
    for _ in range(20):
        if world.phase == Phase.PAUSED:
            break
        world.later(31).step(OK if world.status.current_step == 0 else EMPTY)
    return world


def user_paused() -> World:
    world = progressing()
    world.request("pause").later(1).step(OK)
    return world


def succeeded() -> World:
    world = progressing()
    world.finish(OK, tick=31)
    return world


def succeeded_pods_missing() -> World:
    world = succeeded()
    world.stable = world.stable.__class__(exists=True, template_hash=world.stable.template_hash,
                                          version=world.stable.version, replicas=4, ready=3, updated=4,
                                          available=3, total=4)
    world.later(1).step()
    return world


def rolled_back() -> World:
    world = progressing()
    world.later(31).step(BAD)
    return world


def paused_on_failure() -> World:
    world = first_version(policy_spec(STEPS, onFailure="pause"), gateway=True)
    world.deploy("1.1.0").settle(OK, passes=2)
    world.later(31).step(BAD)
    return world


def failed() -> World:
    world = World(spec=release_spec("1.0.0", policy=None), policy=None, canary_never_ready=True)
    world.settle()
    world.deploy("1.1.0")
    world.stable = world.stable.__class__(exists=True, template_hash="h-1.1.0", version="1.1.0", replicas=4,
                                          ready=0, updated=4, total=4)
    world.step()
    world.stable = world.stable.__class__(exists=True, template_hash="h-1.1.0", version="1.1.0", replicas=4,
                                          ready=0, updated=4, total=4)
    world.later(11 * 60).step()
    return world


def invalid_input() -> World:
    world = first_version(policy_spec(STEPS))
    world.problem = "RolloutPolicy careful not found"
    world.deploy("1.1.0").step()
    return world


F, T = "False", "True"
CASES: list[tuple[str, Callable[[], World], Phase, dict[str, tuple[str, str]]]] = [
    ("progressing", progressing, Phase.PROGRESSING,
     {"Ready": (F, reasons.PROGRESSING), "Reconciling": (T, reasons.PROGRESSING), "Stalled": (F, "Progressing")}),
    ("a pause step waits for promote", paused_step, Phase.PAUSED,
     {"Ready": (F, reasons.WAITING_FOR_PROMOTE), "Reconciling": (T, reasons.WAITING_FOR_PROMOTE),
      "Stalled": (F, "Paused")}),
    ("a timed pause is progress", timed_pause, Phase.PROGRESSING,
     {"Ready": (F, reasons.PROGRESSING), "Reconciling": (T, reasons.PROGRESSING), "Stalled": (F, "Progressing")}),
    ("blue-green without autoPromotion waits for promote", blue_green_gate, Phase.PAUSED,
     {"Ready": (F, reasons.WAITING_FOR_PROMOTE), "Reconciling": (T, reasons.WAITING_FOR_PROMOTE),
      "Stalled": (F, "Paused")}),
    ("an inconclusive analysis waits for a person", inconclusive, Phase.PAUSED,
     {"Ready": (F, reasons.ANALYSIS_INCONCLUSIVE), "Reconciling": (T, reasons.ANALYSIS_INCONCLUSIVE),
      "Stalled": (F, "Paused")}),
    ("sluice pause", user_paused, Phase.PAUSED,
     {"Ready": (F, reasons.PAUSED), "Reconciling": (T, reasons.PAUSED), "Stalled": (F, "Paused")}),
    ("succeeded", succeeded, Phase.SUCCEEDED,
     {"Ready": (T, reasons.ROLLED_OUT), "Reconciling": (F, "Succeeded"), "Stalled": (F, "Succeeded")}),
    ("succeeded, a stable pod not Ready", succeeded_pods_missing, Phase.SUCCEEDED,
     {"Ready": (F, reasons.PROGRESSING), "Reconciling": (T, reasons.PROGRESSING), "Stalled": (F, "Succeeded")}),
    ("rolled back", rolled_back, Phase.ROLLED_BACK,
     {"Ready": (F, reasons.ROLLED_BACK), "Reconciling": (F, "RolledBack"), "Stalled": (T, reasons.ROLLED_BACK)}),
    ("paused on a failure (onFailure: pause)", paused_on_failure, Phase.PAUSED,
     {"Ready": (F, reasons.ANALYSIS_FAILED), "Reconciling": (F, "Paused"), "Stalled": (T, reasons.ANALYSIS_FAILED)}),
    ("failed: not Ready within the deadline", failed, Phase.FAILED,
     {"Ready": (F, reasons.FAILED), "Reconciling": (F, "Failed"), "Stalled": (T, reasons.FAILED)}),
    ("invalid input", invalid_input, Phase.SUCCEEDED,
     {"Ready": (F, reasons.POLICY_NOT_FOUND), "Reconciling": (F, "Succeeded"),
      "Stalled": (T, reasons.POLICY_NOT_FOUND)}),
]


@pytest.mark.parametrize(("story", "expected_phase", "expected"),
                         [pytest.param(story, phase, expected, id=name) for name, story, phase, expected in CASES])
def test_each_phase_ends_with_its_kstatus_conditions(
        story: Callable[[], World], expected_phase: Phase, expected: dict[str, tuple[str, str]]) -> None:
    world = story()
    assert world.phase == expected_phase, world.status.message
    assert conditions(world.status) == expected
    assert world.status.observed_generation == world.generation
    assert all(c.observed_generation == world.generation for c in world.status.conditions)
    true = [c for c in world.status.conditions if c.status == "True"]
    assert len(true) == 1, "exactly one of Ready, Reconciling, Stalled holds"
    assert true[0].message == world.status.message, "the condition that holds says why, in status.message's words"


def test_a_person_waiting_is_never_ready_and_never_current() -> None:
    """Done reconciling, by kstatus' conventions, unless Reconciling or Stalled is True: a paused
    rollout must not be."""
    for story in (paused_step, blue_green_gate, inconclusive, user_paused):
        held = conditions(story().status)
        assert held["Ready"][0] == "False" and (held["Reconciling"][0] == "True" or held["Stalled"][0] == "True")


def test_a_rollback_says_git_still_asks_for_the_version() -> None:
    world = rolled_back()
    hint = "Git still asks for 1.1.0: revert the commit to stay on 1.0.0, or `sluice retry` to try 1.1.0 again"
    assert world.status.message.startswith("rolled back 1.1.0: metric error-rate failed")
    assert world.status.message.endswith(hint)
    event = next(e for e in world.events if e.startswith(reasons.ROLLED_BACK))
    assert "all traffic is on 1.0.0" in event and event.endswith(hint)
    world.later(60).step(OK)
    assert world.status.message.endswith(hint), "the hint stays while the spec still asks for 1.1.0"


def test_an_abort_says_git_still_asks_for_the_version_too() -> None:
    world = paused_step()
    world.request("abort").later(1).step()
    assert world.phase == Phase.ROLLED_BACK
    assert "aborted by a user" in world.status.message
    assert world.status.message.endswith("Git still asks for 1.1.0: revert the commit to stay on 1.0.0, "
                                         "or `sluice retry` to try 1.1.0 again")


def test_reverting_the_commit_ends_the_stall() -> None:
    world = rolled_back()
    world.deploy("1.0.0").later(1).step()
    assert world.phase == Phase.SUCCEEDED and conditions(world.status)["Ready"] == ("True", reasons.ROLLED_OUT)
    assert "Git still asks" not in world.status.message


def test_a_release_that_cannot_be_read_is_stalled_with_its_generation() -> None:
    before = ReleaseStatus.model_validate({"phase": "Progressing", "observedGeneration": 3})
    broken = unreadable(before, "the Release cannot be read: spec.replicas: not an integer",
                        datetime(2026, 11, 28, tzinfo=T0.tzinfo), 4)
    assert broken.observed_generation == 4 and before.observed_generation == 3
    assert conditions(broken) == {"Ready": ("False", reasons.INVALID_SPEC), "Reconciling": ("False", "Progressing"),
                                  "Stalled": ("True", reasons.INVALID_SPEC)}
    assert all(c.observed_generation == 4 for c in broken.conditions)


def test_the_argocd_cm_snippet_embeds_health_lua_as_it_is() -> None:
    shipped = ROOT / "integrations" / "argocd"
    config = yaml.safe_load((shipped / "argocd-cm.yaml").read_text())
    embedded = config["data"]["resource.customizations.health.sluice.dev_Release"]
    assert embedded == (shipped / "health.lua").read_text()
    assert config["metadata"]["labels"]["app.kubernetes.io/part-of"] == "argocd"


def test_sluice_get_shows_the_condition_that_holds_and_the_way_out_of_a_rollback() -> None:
    from sluice.cli import view
    world = rolled_back()
    release = {"metadata": {"name": "checkout", "namespace": "shop"},
               "spec": world.spec.model_dump(by_alias=True, exclude_none=True, mode="json"),
               "status": world.status.model_dump(by_alias=True, exclude_none=True, mode="json")}
    text = view.plain(release, None, T0)
    assert "  State:     Stalled (RolledBack)" in text
    assert "Git still asks for 1.1.0: revert the commit to stay on 1.0.0, or `sluice retry` to try 1.1.0 again" \
        in text
    assert view.state(paused_step().status) == "Reconciling (WaitingForPromote)"
    assert view.state(succeeded().status) == "Ready"
    assert view.state(ReleaseStatus()) == "-"

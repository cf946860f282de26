"""Hook Jobs around a rollout (sluice.plan.hooks), on the ideal cluster of tests.unit.world: a
Job created by one pass has finished by the next, as `hook_outcomes` says."""

from __future__ import annotations

from typing import Any

import pytest

from sluice.api.models import Hook, HookRun, Hooks, Phase
from sluice.kube import objects
from sluice.plan import hooks, reasons
from sluice.plan.types import JobState
from tests.unit.test_canary import OK
from tests.unit.world import World, first_version, policy_spec, release_spec

CANARY = [{"setWeight": 25}, {"analysis": {}}, {"setWeight": 100}]


def hook(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "template": {"spec": {"containers": [{"name": "job", "image": "tools:1"}]}}, **extra}


def with_hooks(world: World, **stages: list[dict[str, Any]]) -> World:
    world.spec = world.spec.model_copy(update={"hooks": Hooks.model_validate(stages)})
    return world


def canary_world(**stages: list[dict[str, Any]]) -> World:
    return with_hooks(first_version(policy_spec(CANARY)), **stages)


def runs(world: World, stage: str) -> list[HookRun]:
    return [run for run in world.status.hooks if run.stage == stage]


def test_no_candidate_pod_starts_and_no_traffic_moves_until_the_migration_succeeded() -> None:
    world = canary_world(preRollout=[hook("backup"), hook("migrate")])
    plan = world.deploy("2.0.0").step(OK)
    assert world.phase == Phase.PENDING and not world.canary.exists and world.status.canary_weight == 0
    assert [r.hook for r in plan.jobs] == ["backup"], "hooks of a stage run one after another"
    assert "preRollout hook 1/2 (backup" in world.status.message
    world.later(1).step(OK)
    assert [r.state for r in runs(world, "preRollout")] == ["Succeeded", "Pending"]
    assert not world.canary.exists, "the second hook has not run yet"
    world.later(1).step(OK)
    assert [r.state for r in runs(world, "preRollout")] == ["Succeeded", "Succeeded"]
    assert world.canary.exists and world.phase == Phase.PROGRESSING
    world.finish(OK)
    assert world.phase == Phase.SUCCEEDED and world.status.stable_version == "2.0.0"
    assert any(e.startswith(f"{reasons.HOOK_SUCCEEDED}: preRollout hook migrate of 2.0.0") for e in world.events)


def test_a_failed_migration_fails_the_rollout_before_any_traffic_moved() -> None:
    world = canary_world(preRollout=[hook("migrate")], postRollback=[hook("restore")])
    world.hook_outcomes["migrate"] = "fail"
    weights = []
    world.deploy("2.0.0").step(OK)
    for _ in range(5):
        world.later(1).step(OK)
        weights.append(world.status.canary_weight)
    assert world.phase == Phase.ROLLED_BACK and set(weights) == {0} and not world.canary.exists
    job = runs(world, "preRollout")[0].job
    assert f"preRollout hook migrate failed: Job {job} failed (BackoffLimitExceeded)" in world.status.message
    assert "relation orders already exists" in world.status.message, "the tail of the Job's log"
    assert world.stable.template_hash == "h-1.0.0" and world.status.history[-1].outcome == "RolledBack"
    assert [r.hook for r in runs(world, "postRollback")] == ["restore"], "a rollback runs postRollback hooks"


def test_a_hook_runs_once_per_rollout_and_a_retry_is_a_new_rollout() -> None:
    world = canary_world(preRollout=[hook("migrate")])
    world.hook_outcomes["migrate"] = "fail"
    world.deploy("2.0.0").step(OK)
    for _ in range(4):  # every pass after the decision finds the same Job by name: no second one
        world.later(1).step(OK)
    assert len(world.created_jobs) == 1 and world.phase == Phase.ROLLED_BACK
    world.hook_outcomes["migrate"] = "succeed"
    world.request("retry").step(OK)  # in the same second as the failure: still a new rollout
    world.later(1).step(OK)
    assert len(world.created_jobs) == 2 and world.created_jobs[0] != world.created_jobs[1]
    assert world.phase == Phase.PROGRESSING and world.canary.exists


def test_a_job_that_never_finishes_fails_the_hook_at_its_timeout_and_is_deleted() -> None:
    world = canary_world(preRollout=[hook("migrate", timeout="2m")])
    world.hook_outcomes["migrate"] = "hang"
    world.deploy("2.0.0").step(OK)
    world.later(1).step(OK)
    job = world.created_jobs[0]
    assert runs(world, "preRollout")[0].state == "Running"
    world.later(120).step(OK)
    assert world.phase == Phase.PENDING, "within its timeout and the grace period"
    plan = world.later(hooks.GRACE).step(OK)
    assert job in plan.delete_jobs and job not in world.jobs
    assert world.phase == Phase.ROLLED_BACK and f"Job {job} did not finish within 2m" in world.status.message


def test_a_hook_without_a_timeout_is_bounded_by_the_progress_deadline() -> None:
    world = canary_world(preRollout=[hook("migrate")])
    world.hook_outcomes["migrate"] = "hang"
    world.deploy("2.0.0").step(OK)
    world.later(300 + hooks.GRACE + 1).step(OK)
    assert world.phase == Phase.ROLLED_BACK and "did not finish within 5m" in world.status.message


def test_a_job_deleted_while_it_ran_fails_its_hook_and_is_not_run_again() -> None:
    world = canary_world(preRollout=[hook("migrate")])
    world.hook_outcomes["migrate"] = "hang"
    world.deploy("2.0.0").step(OK)
    world.later(1).step(OK)
    world.jobs.clear()
    world.later(1).step(OK)
    assert world.phase == Phase.ROLLED_BACK and "was deleted before it finished" in world.status.message
    assert len(world.created_jobs) == 1


def test_post_promotion_hooks_run_after_the_promotion_and_a_failure_does_not_roll_back() -> None:
    world = canary_world(postPromotion=[hook("purge-cache"), hook("smoke")])
    world.hook_outcomes["purge-cache"] = "fail"
    world.deploy("2.0.0").finish(OK)
    assert world.phase == Phase.SUCCEEDED
    assert [r.hook for r in runs(world, "postPromotion")] == ["purge-cache"]
    world.later(1).step(OK)
    world.later(1).step(OK)
    assert world.phase == Phase.SUCCEEDED and world.status.stable_version == "2.0.0"
    assert [(r.hook, r.state) for r in runs(world, "postPromotion")] == [("purge-cache", "Failed")], \
        "a failed hook stops its stage"
    assert any(e.startswith(f"{reasons.HOOK_FAILED}: postPromotion hook purge-cache of 2.0.0") for e in world.events)


def test_a_new_rollout_waits_for_a_hook_of_the_last_one_still_running() -> None:
    world = canary_world(preRollout=[hook("migrate")], postPromotion=[hook("smoke")])
    world.hook_outcomes["smoke"] = "hang"
    world.deploy("2.0.0").finish(OK)
    world.later(1).step(OK)
    assert runs(world, "postPromotion")[0].state == "Running"
    world.deploy("3.0.0").step(OK)
    world.later(1).step(OK)
    assert world.phase == Phase.PENDING and "waits for hook smoke of 2.0.0" in world.status.message
    assert [r.version for r in runs(world, "preRollout")] == ["2.0.0"]
    world.hook_outcomes["smoke"] = "succeed"
    world.later(1).step(OK)
    world.later(1).step(OK)
    world.later(1).step(OK)
    assert [r.version for r in runs(world, "preRollout")] == ["2.0.0", "3.0.0"] and world.canary.exists


def test_abort_during_a_migration_rolls_back_and_post_rollback_waits_for_the_migration() -> None:
    world = canary_world(preRollout=[hook("migrate")], postRollback=[hook("restore")])
    world.hook_outcomes["migrate"] = "hang"
    world.deploy("2.0.0").step(OK)
    world.later(1).step(OK)
    world.request("abort").step(OK)
    assert world.phase == Phase.ROLLED_BACK
    restore = runs(world, "postRollback")[0]
    assert restore.state == "Pending" and restore.job not in world.jobs, "never beside a running migration"
    world.hook_outcomes["migrate"] = "succeed"
    world.later(1).step(OK)
    world.later(1).step(OK)
    assert runs(world, "preRollout")[0].state == "Succeeded" and restore.job in world.jobs


def test_requests_during_pre_rollout_hooks_are_refused_except_abort() -> None:
    world = canary_world(preRollout=[hook("migrate")])
    world.hook_outcomes["migrate"] = "hang"
    world.deploy("2.0.0").step(OK)
    world.later(1).request("promote").step(OK)
    assert world.phase == Phase.PENDING and world.status.request is None and not world.canary.exists
    assert any(e.startswith(f"{reasons.REQUEST_REFUSED}: promote refused: preRollout hooks") for e in world.events)


def test_a_rolling_update_without_policy_keeps_the_old_template_until_its_hook_succeeded() -> None:
    world = World(spec=release_spec("1.0.0", 4, policy=None), policy=None)
    world.settle()
    with_hooks(world, preRollout=[hook("migrate")])
    world.hook_outcomes["migrate"] = "fail"
    world.deploy("2.0.0").step()
    assert world.stable.template_hash == "h-1.0.0"
    world.later(1).step()
    assert world.phase == Phase.FAILED and world.stable.template_hash == "h-1.0.0"
    assert "`sluice retry` runs the hooks again" in world.status.message
    world.later(30).step()
    assert world.stable.template_hash == "h-1.0.0", "a failed hook holds the old template"
    world.hook_outcomes["migrate"] = "succeed"
    world.request("retry").step()
    world.later(1).step()
    world.later(1).step()
    assert world.stable.template_hash == "h-2.0.0" and world.phase == Phase.SUCCEEDED
    assert len(world.created_jobs) == 2


def test_runs_are_bounded_and_jobs_status_forgot_are_deleted() -> None:
    world = canary_world(postPromotion=[hook("smoke")])
    for minor in range(1, 25):
        world.deploy(f"2.{minor}.0").finish(OK)
        world.later(1).step(OK)
    assert len(world.status.hooks) == hooks.MAX_RUNS
    assert set(world.jobs) == {run.job for run in world.status.hooks}, "older Jobs were deleted"


@pytest.mark.parametrize("release", ["a", "checkout", "x" * 55, "ends-with-dash-" + "y" * 40])
def test_job_names_are_dns_labels_and_fixed_per_rollout(release: str) -> None:
    name = hooks.job_name(release, "preRollout", "m" * 20, "0123456789")
    assert len(name) <= 63 and objects.re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)
    assert name == hooks.job_name(release, "preRollout", "m" * 20, "0123456789")
    assert name != hooks.job_name(release, "postRollback", "m" * 20, "0123456789")


def test_a_hook_job_never_carries_the_labels_services_select_on() -> None:
    release = {"metadata": {"name": "shop", "namespace": "prod", "uid": "u-1"}}
    template = {"metadata": {"labels": {objects.NAME: "shop", objects.TRACK: "stable", "team": "a"}},
                "spec": {"containers": [{"name": "job", "image": "tools:1",
                                         "env": [{"name": "SLUICE_VERSION", "value": "mine"}]}]}}
    run = HookRun(rollout="r1", stage="preRollout", hook="migrate", job="shop-migrate-1", version="2.0.0",
                  started_at="2026-11-28T12:00:00Z")
    job = objects.hook_job(release, run, Hook.model_validate({"name": "migrate", "template": template}), "1.0.0", 90)
    pod = job["spec"]["template"]
    assert pod["metadata"]["labels"] == {"team": "a", objects.RELEASE: "shop", objects.HOOK: "migrate"}
    assert pod["spec"]["restartPolicy"] == "Never" and job["spec"]["activeDeadlineSeconds"] == 90
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env["SLUICE_VERSION"] == "mine" and env["SLUICE_STABLE_VERSION"] == "1.0.0"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "u-1"


@pytest.mark.parametrize(("status", "state"), [
    ({}, (True, False, False, "")),
    ({"conditions": [{"type": "Complete", "status": "True"}]}, (False, True, False, "")),
    ({"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]},
     (False, False, True, "DeadlineExceeded")),
    ({"conditions": [{"type": "Failed", "status": "False"}]}, (True, False, False, "")),
])
def test_job_state_reads_the_job_controllers_conditions(status: dict[str, Any], state: tuple[Any, ...]) -> None:
    assert objects.job_state({"metadata": {}, "status": status}) == state


def test_a_failed_job_without_a_log_says_so_plainly() -> None:
    world = canary_world(preRollout=[hook("migrate")])
    world.deploy("2.0.0").step(OK)
    world.jobs[world.created_jobs[0]] = JobState(failed=True, reason="DeadlineExceeded")
    world.later(1).step(OK)
    assert world.status.message.startswith("rolled back 2.0.0: preRollout hook migrate failed: Job ")
    assert "(DeadlineExceeded);" in world.status.message or "(DeadlineExceeded)." in world.status.message


def test_a_failed_pods_termination_message_is_the_end_of_its_log() -> None:
    pod = {"status": {"containerStatuses": [
        {"state": {"terminated": {"exitCode": 0, "finishedAt": "2026-11-28T12:00:09Z", "message": "fine"}}},
        {"state": {"terminated": {"exitCode": 3, "finishedAt": "2026-11-28T12:00:05Z",
                                  "message": "BEGIN\nERROR:  relation \"invoices\" does not exist\n"}}}]}}
    assert objects.clean_log(objects.failure_message(pod)) == 'BEGIN | ERROR:  relation "invoices" does not exist'
    assert objects.failure_message({"status": {}}) == ""
    assert objects.clean_log("x" * 700).startswith("...") and len(objects.clean_log("x" * 700)) == 600


def test_a_hook_pod_that_would_restart_forever_is_refused() -> None:
    bad = hook("migrate")
    bad["template"]["spec"]["restartPolicy"] = "Always"
    with pytest.raises(ValueError, match="restartPolicy must be Never or OnFailure, not 'Always'"):
        Hook.model_validate(bad)


def test_sluice_get_shows_the_latest_rollouts_hooks() -> None:
    from datetime import UTC, datetime

    from sluice.cli import view
    world = canary_world(preRollout=[hook("migrate")])
    world.hook_outcomes["migrate"] = "fail"
    world.deploy("2.0.0").step(OK)
    world.later(1).step(OK)
    release = {"metadata": {"name": "app", "namespace": "shop"}, "spec": {"replicas": 4},
               "status": world.status.model_dump(by_alias=True, mode="json")}
    text = view.plain(release, None, datetime(2026, 11, 28, 12, 1, tzinfo=UTC))
    assert "  Hooks:\n    preRollout migrate (2.0.0): Failed, Job app-migrate-" in text
    assert "relation orders already exists" in text


def test_lint_warns_about_labels_it_drops_from_hook_pods(tmp_path: Any) -> None:
    from sluice.cli.lint import lint
    labelled = hook("migrate")
    labelled["template"]["metadata"] = {"labels": {"app.kubernetes.io/name": "shop"}}
    manifest = tmp_path / "release.yaml"
    import yaml
    manifest.write_text(yaml.safe_dump({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Release", "metadata": {"name": "shop"},
        "spec": {"version": "1.0.0", "template": {"spec": {"containers": [{"name": "app", "image": "shop:1"}]}},
                 "hooks": {"preRollout": [labelled]}}}))
    warnings: list[str] = []
    errors, checked = lint([str(manifest)], lambda finding: warnings.append(str(finding)))
    assert not errors and checked == 1
    assert any("hook migrate: Sluice removes app.kubernetes.io/name from the hook's pods" in w for w in warnings)

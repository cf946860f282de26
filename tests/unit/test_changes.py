"""plan.changes: the change list a promotion or a rollback records in status.history."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.api.models import Phase, StableSpec
from sluice.plan.changes import MAX_CHANGES, between, config_refs
from sluice.plan.types import Workload
from tests.unit.world import first_version, policy_spec, release_spec


def pod(*containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"spec": {"containers": list(containers), **spec}}


def app(image: str = "shop:1.2.0", **fields: Any) -> dict[str, Any]:
    return {"name": "app", "image": image, **fields}


BEFORE = StableSpec(version="1.2.0", template=pod(app(resources={"limits": {"cpu": "500m"}})))

CASES: list[tuple[str, StableSpec | None, str, dict[str, Any], list[str]]] = [
    ("the docstring's example", BEFORE, "1.3.0",
     pod(app("shop:1.3.0", env=[{"name": "FEATURE_X", "value": "on"}], resources={"limits": {"cpu": "1"}})),
     ["version 1.2.0 -> 1.3.0", "image app: shop:1.2.0 -> shop:1.3.0", "env FEATURE_X: added",
      "resources app: cpu limit 500m -> 1"]),
    ("first version", None, "1.0.0", pod(app()), ["version 1.0.0: no earlier stable template to compare with"]),
    ("only the version", StableSpec(version="1.2.0", template=pod(app())), "1.2.1", pod(app()),
     ["version 1.2.0 -> 1.2.1"]),
    ("same version, same template", StableSpec(version="1.2.0", template=pod(app())), "1.2.0", pod(app()),
     ["version 1.2.0: same pod template as before"]),
    ("env values, removed, from a Secret",
     StableSpec(version="1", template=pod(app(env=[{"name": "LOG", "value": "info"}, {"name": "OLD", "value": "x"},
                                                   {"name": "DB", "value": "plain"}]))), "2",
     pod(app(env=[{"name": "LOG", "value": "debug"},
                  {"name": "DB", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}}])),
     ["version 1 -> 2", "env LOG: info -> debug", "env OLD: removed", "env DB: plain -> from Secret db key url",
      "config Secret db: added"]),
    ("a long value is cut", StableSpec(version="1", template=pod(app(env=[{"name": "K", "value": "a"}]))), "1",
     pod(app(env=[{"name": "K", "value": "b" * 60}])), [f"env K: a -> {'b' * 37}..."]),
    ("resources added and removed",
     StableSpec(version="1", template=pod(app(resources={"requests": {"memory": "128Mi"}}))), "1",
     pod(app(resources={"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}})),
     ["resources app: cpu request none -> 100m", "resources app: memory request 128Mi -> none",
      "resources app: memory limit none -> 256Mi"]),
    ("a versioned ConfigMap, in env and a volume, said once",
     StableSpec(version="1", template=pod(
         app(env=[{"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "shop-v1", "key": "level"}}}]),
         volumes=[{"name": "conf", "configMap": {"name": "shop-v1"}}])), "2",
     pod(app(env=[{"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "shop-v2", "key": "level"}}}]),
         volumes=[{"name": "conf", "configMap": {"name": "shop-v2"}}]),
     ["version 1 -> 2", "env LEVEL: from ConfigMap shop-v1 key level -> from ConfigMap shop-v2 key level",
      "config ConfigMap shop-v1 -> shop-v2"]),
    ("versioned config: Sluice's content-named copies",
     StableSpec(version="1", template=pod(app(envFrom=[{"configMapRef": {"name": "shop-config-3f2a9c1b0d"}}]),
                                          volumes=[{"name": "s", "secret": {"secretName": "keys-0123456789"}}])), "1",
     pod(app(envFrom=[{"configMapRef": {"name": "shop-config-9bc1d4e7aa"}}]),
         volumes=[{"name": "s", "secret": {"secretName": "keys-0123456789"}}]),
     ["config ConfigMap shop-config: new content (3f2a9c1b0d -> 9bc1d4e7aa)"]),
    ("a sidecar added, env named by container",
     StableSpec(version="1", template=pod(app())), "1",
     pod(app(env=[{"name": "A", "value": "1"}]), {"name": "proxy", "image": "envoy:1.28"}),
     ["env A in app: added", "container proxy: added (image envoy:1.28)"]),
    ("a container removed, an init container changed",
     StableSpec(version="1", template=pod(app(), {"name": "proxy", "image": "envoy:1.28"},
                                          initContainers=[{"name": "migrate", "image": "m:1"}])), "1",
     pod(app(), initContainers=[{"name": "migrate", "image": "m:2"}]),
     ["container proxy: removed", "image migrate (init): m:1 -> m:2"]),
    ("what it has no words for is still named",
     StableSpec(version="1", template=pod(app(readinessProbe={"httpGet": {"path": "/"}}))), "1",
     pod(app(readinessProbe={"httpGet": {"path": "/ready"}}), nodeSelector={"zone": "a"}),
     ["container app: readinessProbe changed", "pod: nodeSelector changed"]),
    ("annotations and labels",
     StableSpec(version="1", template={"metadata": {"annotations": {"checksum/config": "3f2a", "gone": "x"}},
                                       "spec": {"containers": [app()]}}), "1",
     {"metadata": {"annotations": {"checksum/config": "9bc1"}, "labels": {"team": "shop"}},
      "spec": {"containers": [app()]}},
     ["label team: added (shop)", "annotation checksum/config: 3f2a -> 9bc1", "annotation gone: removed"]),
]


@pytest.mark.parametrize(("before", "version", "template", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_change_lists(before: StableSpec | None, version: str, template: dict[str, Any],
                      expected: list[str]) -> None:
    assert between(before, version, template) == expected


def test_the_list_is_bounded() -> None:
    many = [{"name": f"V{i}", "value": "1"} for i in range(40)]
    lines = between(StableSpec(version="1", template=pod(app())), "2", pod(app(env=many)))
    assert len(lines) == MAX_CHANGES and lines[-1] == "... and 22 more"


def test_config_refs_reads_projected_volumes_and_env_from() -> None:
    spec = {"volumes": [{"name": "p", "projected": {"sources": [{"secret": {"name": "tls"}},
                                                              {"configMap": {"name": "ca"}}]}},
                        {"name": "s", "secret": {"secretName": "db"}}],
            "containers": [app(envFrom=[{"configMapRef": {"name": "flags"}}, {"secretRef": {"name": "api"}}])]}
    assert config_refs(spec) == {"ConfigMap": {"ca", "flags"}, "Secret": {"tls", "db", "api"}}


def shop(version: str, cpu: str, env: list[dict[str, str]]) -> Any:
    spec = release_spec(version)
    template = {"spec": {"containers": [{"name": "app", "image": f"example.com/app:{version}", "env": env,
                                         "resources": {"limits": {"cpu": cpu}}}]}}
    return spec.model_copy(update={"template": type(spec.template).model_validate(template)})


def test_a_promotion_records_what_changed_against_the_stable_it_replaced() -> None:
    from tests.unit.test_canary import OK
    world = first_version(policy_spec([{"setWeight": 50}, {"analysis": {}}, {"setWeight": 100}]))
    assert world.status.history[-1].changes == ["version 1.0.0: no earlier stable template to compare with"]
    world.spec = shop("1.1.0", "1", [{"name": "FEATURE_X", "value": "on"}])
    world.generation += 1
    world.finish(OK)
    assert world.phase == Phase.SUCCEEDED
    assert world.status.history[-1].changes == [
        "version 1.0.0 -> 1.1.0", "image app: example.com/app:1.0.0 -> example.com/app:1.1.0",
        "env FEATURE_X: added", "resources app: cpu limit none -> 1"]
    assert world.status.stable_spec is not None and world.status.stable_spec.version == "1.1.0"


def test_a_rollback_records_what_the_candidate_would_have_changed() -> None:
    from tests.unit.test_canary import BAD
    world = first_version(policy_spec([{"setWeight": 50}, {"analysis": {}}, {"setWeight": 100}]))
    world.deploy("1.1.0")
    world.finish(BAD)
    assert world.phase == Phase.ROLLED_BACK
    assert world.status.history[-1].changes == [
        "version 1.0.0 -> 1.1.0", "image app: example.com/app:1.0.0 -> example.com/app:1.1.0"]


def test_a_failed_plain_rolling_update_records_its_changes() -> None:
    world = first_version(None)
    world.spec = world.spec.model_copy(update={"policy_ref": None})
    world.deploy("1.1.0")
    for _ in range(15):  # the new pods never become Ready: progressDeadline (10m without a policy)
        world.step()
        world.stable = Workload(exists=True, template_hash=world.digest, version="1.1.0", replicas=4,
                                updated=4, total=4)
        world.later(60)
    assert world.phase == Phase.FAILED
    assert world.status.history[-1].outcome == "Failed"
    assert world.status.history[-1].changes == [
        "version 1.0.0 -> 1.1.0", "image app: example.com/app:1.0.0 -> example.com/app:1.1.0"]


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
                        ["spec", "metadata", "containers", "initContainers", "env", "envFrom", "valueFrom", "name",
                         "image", "resources", "limits", "volumes", "configMap", "secret", "projected", "sources",
                         "secretKeyRef", "labels", "x"]), inner, max_size=4), max_leaves=20)


@given(JSON, JSON)
@settings(max_examples=300, deadline=None)
def test_no_template_makes_it_raise(before: Any, after: Any) -> None:
    """The operator calls it on every promotion and rollback: input no schema checked (an env that
    is a string, a volume's configMap that is null) must never crash a pass."""
    template = after if isinstance(after, dict) else {"spec": after}
    lines = between(StableSpec(version="1", template=before if isinstance(before, dict) else {}), "2", template)
    assert lines and len(lines) <= MAX_CHANGES and all(isinstance(line, str) for line in lines)

"""Versioned config (sluice.kube.config): which objects a template reads, the copies it needs,
and which copies no template uses any more."""

from __future__ import annotations

from typing import Any

import pytest

from sluice.kube import config
from sluice.kube.objects import RELEASE, VERSIONED
from sluice.wakeups import woken

RELEASE_BODY = {"apiVersion": "sluice.dev/v1alpha1", "kind": "Release",
                "metadata": {"name": "shop", "namespace": "prod", "uid": "u-1"}}


def template(**extra: Any) -> dict[str, Any]:
    return {"spec": {
        "initContainers": [{"name": "init", "image": "i", "envFrom": [{"secretRef": {"name": "db"}}]}],
        "containers": [{"name": "app", "image": "a", "envFrom": [{"configMapRef": {"name": "app-config"}}],
                        "env": [{"name": "K", "valueFrom": {"configMapKeyRef": {"name": "flags", "key": "k"}}},
                                {"name": "T", "valueFrom": {"secretKeyRef": {"name": "token", "key": "t"}}}]}],
        "volumes": [{"name": "v", "configMap": {"name": "files"}}, {"name": "s", "secret": {"secretName": "tls"}},
                    {"name": "p", "projected": {"sources": [{"configMap": {"name": "more"}},
                                                            {"secret": {"name": "keys"}}]}}],
        **extra}}


def original(kind: str, name: str, data: dict[str, str], versioned: str = "true") -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": name, "namespace": "prod", "labels": {VERSIONED: versioned}},
            "data": data}


def test_every_way_a_pod_reads_config_is_found_and_rewritten() -> None:
    refs = config.references(template())
    assert refs == {("Secret", "db"), ("ConfigMap", "app-config"), ("ConfigMap", "flags"), ("Secret", "token"),
                    ("ConfigMap", "files"), ("Secret", "tls"), ("ConfigMap", "more"), ("Secret", "keys")}
    renamed = config.rewrite(template(), {kind_name: kind_name[1] + "-v2" for kind_name in refs})
    assert config.references(renamed) == {(kind, name + "-v2") for kind, name in refs}
    assert config.references(template()) == refs, "the template given is not changed"


def test_only_labelled_objects_are_versioned_and_a_copy_is_named_by_its_content() -> None:
    found = {"ConfigMap": [original("ConfigMap", "app-config", {"A": "1"}),
                           original("ConfigMap", "flags", {"k": "v"}, versioned="false")]}
    rewritten, copies = config.versioned(template(), RELEASE_BODY, found, None)
    [copy] = copies
    assert copy.name == f"app-config-{config.digest(found['ConfigMap'][0])}" and copy.body is not None
    assert copy.body["immutable"] is True and copy.body["data"] == {"A": "1"}
    assert copy.body["metadata"]["labels"] == {VERSIONED: "copy", RELEASE: "shop", config.CONFIG_OF: "app-config",
                                               "app.kubernetes.io/managed-by": "sluice"}
    refs = config.references(rewritten)
    assert ("ConfigMap", copy.name) in refs and ("ConfigMap", "flags") in refs, "flags is not labelled"
    changed = {"ConfigMap": [original("ConfigMap", "app-config", {"A": "2"})]}
    assert config.versioned(template(), RELEASE_BODY, changed, None)[1][0].name != copy.name


def test_a_template_reading_nothing_versioned_is_returned_as_it_was() -> None:
    given = template()
    rewritten, copies = config.versioned(given, RELEASE_BODY, {"ConfigMap": [], "Secret": []}, None)
    assert rewritten is given and copies == []


def test_an_existing_copy_is_not_made_again_and_a_deleted_original_keeps_the_stable_copy() -> None:
    cm = original("ConfigMap", "app-config", {"A": "1"})
    name = config.copy_name("app-config", config.digest(cm))
    copy = config.make_copy("ConfigMap", cm, RELEASE_BODY, name)
    _, copies = config.versioned(template(), RELEASE_BODY, {"ConfigMap": [cm, copy]}, None)
    assert copies[0].body is None, "it exists"
    stable = config.rewrite(template(), {("ConfigMap", "app-config"): name})
    rewritten, _ = config.versioned(template(), RELEASE_BODY, {"ConfigMap": [copy]}, stable)
    assert ("ConfigMap", name) in config.references(rewritten), "deleting the original starts no rollout"


def test_copies_no_template_uses_are_the_ones_to_delete() -> None:
    cm = original("ConfigMap", "app-config", {"A": "1"})
    old = config.make_copy("ConfigMap", cm, RELEASE_BODY, "app-config-old")
    new = config.make_copy("ConfigMap", cm, RELEASE_BODY, "app-config-new")
    someone_elses = config.make_copy("ConfigMap", cm, {**RELEASE_BODY, "metadata": {"name": "cart", "uid": "u-2"}},
                                     "app-config-cart")
    using_new = config.rewrite(template(), {("ConfigMap", "app-config"): "app-config-new"})
    found = {"ConfigMap": [cm, old, new, someone_elses]}
    assert config.unused(RELEASE_BODY, found, [using_new]) == [("ConfigMap", "app-config-old")]


@pytest.mark.parametrize(("before", "after", "woke"), [
    ({"A": "1"}, {"A": "2"}, True),
    ({"A": "1"}, {"A": "1"}, False),
])
def test_a_versioned_config_change_wakes_the_releases_that_read_it(
        before: dict[str, str], after: dict[str, str], woke: bool) -> None:
    releases = [{"metadata": {"name": "shop", "namespace": "prod"}, "spec": {"template": template()}},
                {"metadata": {"name": "cart", "namespace": "prod"}, "spec": {"template": {"spec": {}}}}]
    old, new = original("ConfigMap", "app-config", before), original("ConfigMap", "app-config", after)
    new["metadata"]["resourceVersion"] = "2"
    assert woken("ConfigMap", old, new, False, releases).releases == ((("prod", "shop"),) if woke else ())

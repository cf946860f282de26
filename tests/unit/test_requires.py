"""plan.requires: the promotion gate decides on what the operator read in the other namespace
(plan.types.Upstream, built by kube.upstream), and the other Release's status can only keep it
shut. One named case each."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from sluice.api.models import ReleaseSpec, ReleaseStatus
from sluice.kube import config, objects
from sluice.kube.upstream import upstream
from sluice.plan.lifecycle import stable_spec
from sluice.plan.requires import unmet
from sluice.plan.types import Declared, Observed, Upstream, Workload

SPEC = ReleaseSpec.model_validate({"version": "1.1.0", "template": {"spec": {
    "initContainers": [{"name": "migrate", "image": "migrate:1.1.0"}],
    "containers": [{"name": "app", "image": "app:1.1.0"}]}}})

IMAGES = (("app", "app:1.1.0"), ("debug", "busybox"), ("migrate", "migrate:1.1.0"))
# staging's own template: the same artifact with a debugging sidecar, other env and resources
STAGING = Declared("spec", "1.1.0", "5aff1e2b3c", IMAGES)
RUNNING = Upstream("staging", "checkout", release=True, deployment=True, controlled=True, version="1.1.0",
                   images=IMAGES, replicas=2, updated=2, available=2, total=2, settled=True,
                   template_hash="5aff1e2b3c", declared=(STAGING,), phase="Succeeded",
                   stable_version="1.1.0", candidate_version="1.1.0")
HERE = "Deployment checkout in namespace staging"
THERE = "Release checkout in namespace staging"


def hand_set(image: str) -> Upstream:
    """`kubectl set image deployment/checkout app=...` in staging: the annotation stays."""
    return dataclasses.replace(RUNNING, images=(("app", image), *RUNNING.images[1:]))


CASES: dict[str, tuple[Upstream, str | None]] = {
    "runs it, fully rolled out, its own template (a sidecar, other env there do not matter)": (RUNNING, None),
    "its spec moved on; its status.stableSpec declares the version it runs": (
        dataclasses.replace(RUNNING, declared=(Declared("spec", "1.2.0", "0123456789"),
                                               dataclasses.replace(STAGING, source="status.stableSpec")),
                            phase="Progressing", candidate_version="1.2.0"), None),
    "no Release there": (Upstream("staging", "checkout"), f"there is no {THERE}"),
    "no Deployment there": (dataclasses.replace(RUNNING, deployment=False), f"{HERE} does not exist"),
    "a look-alike Deployment": (dataclasses.replace(RUNNING, controlled=False),
                                f"{HERE} is not managed by Sluice for Release checkout there"),
    "another version": (dataclasses.replace(RUNNING, version="1.0.0"), f"{HERE} runs 1.0.0, not 1.1.0"),
    "no version at all": (dataclasses.replace(RUNNING, version=None),
                          f"{HERE} runs no version Sluice knows, not 1.1.0"),
    "an init container differs": (dataclasses.replace(RUNNING, images=(("app", "app:1.1.0"), ("migrate", "m:1"))),
                                  f"{HERE} runs image m:1 in container migrate, not migrate:1.1.0"),
    "a container of ours never ran there": (dataclasses.replace(RUNNING, images=(("app", "app:1.1.0"),)),
                                            f"{HERE} has no container migrate"),
    "it declares no template for the version": (
        dataclasses.replace(RUNNING, declared=(Declared("spec", "1.2.0", "0123456789"),)),
        f"{THERE} declares no template for 1.1.0 (neither its spec nor its status.stableSpec)"),
    "the live template is not the one declared (hash)": (
        dataclasses.replace(RUNNING, template_hash="ffffffffff"),
        f"{HERE} does not carry the template {THERE} declares for 1.1.0 (template hash ffffffffff, "
        "declared 5aff1e2b3c)"),
    "no template hash at all": (dataclasses.replace(RUNNING, template_hash=None),
                                f"{HERE} does not carry the template {THERE} declares for 1.1.0 (template hash "
                                "none, declared 5aff1e2b3c)"),
    "our image set by hand over the one it declares": (
        dataclasses.replace(hand_set("app:1.1.0"), declared=(dataclasses.replace(
            STAGING, images=(("app", "app:1.1.0-debug"), *IMAGES[1:])),)),
        f"{HERE} runs image app:1.1.0 in container app, but {THERE} declares app:1.1.0-debug: the Deployment "
        "was changed behind Sluice's back"),
    "a declared container removed by hand": (
        dataclasses.replace(RUNNING, images=(("app", "app:1.1.0"), ("migrate", "migrate:1.1.0"))),
        f"{HERE} runs no image in container debug, but {THERE} declares busybox: the Deployment was changed "
        "behind Sluice's back"),
    "scaled to zero": (dataclasses.replace(RUNNING, replicas=0, updated=0, available=0, total=0),
                       f"{HERE} has not finished rolling out 1.1.0: it is scaled to zero, so nothing runs there"),
    "old pods left": (dataclasses.replace(RUNNING, total=3),
                      f"{HERE} has not finished rolling out 1.1.0: 2 of 2 replicas run its current template "
                      "(3 pods in all)"),
    "not all available": (dataclasses.replace(RUNNING, available=1),
                          f"{HERE} has not finished rolling out 1.1.0: 1 of 2 replicas are available"),
    "a change not yet seen": (dataclasses.replace(RUNNING, settled=False),
                              f"{HERE} has not finished rolling out 1.1.0: its latest change has not been seen "
                              "by the Deployment controller yet"),
    "its status does not name it stable": (dataclasses.replace(RUNNING, stable_version="1.0.0"),
                                           f"{THERE} does not report 1.1.0 as its stable version"),
    "still in its post-promotion analysis": (dataclasses.replace(RUNNING, phase="Progressing"),
                                             f"{THERE} is still rolling out 1.1.0"),
    "rolling out the next version there": (dataclasses.replace(RUNNING, phase="Progressing",
                                                               candidate_version="1.2.0"), None),
}


@pytest.mark.parametrize("upstream_, why", CASES.values(), ids=CASES.keys())
def test_gate(upstream_: Upstream, why: str | None) -> None:
    expected = None if why is None else f"1.1.0 is not running in namespace staging yet: {why} (requires)"
    assert unmet(SPEC, (upstream_,)) == expected


def test_every_required_namespace_must_run_it() -> None:
    qa = dataclasses.replace(RUNNING, namespace="qa", version="1.0.0")
    assert unmet(SPEC, (RUNNING, qa)) == ("1.1.0 is not running in namespace qa yet: Deployment checkout in "
                                                  "namespace qa runs 1.0.0, not 1.1.0 (requires)")
    assert unmet(SPEC, ()) is None


# --- kube.upstream: the facts, from the API objects as Sluice writes them ----------------------

STAGING_SPEC: dict[str, Any] = {"version": "1.1.0", "replicas": 2, "template": {"spec": {
    "initContainers": [{"name": "migrate", "image": "migrate:1.1.0"}],
    "containers": [{"name": "app", "image": "app:1.1.0", "env": [{"name": "DB", "value": "staging-db"}]},
                   {"name": "debug", "image": "busybox"}]}}}


def release_body(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": "sluice.dev/v1alpha1", "kind": "Release",
            "metadata": {"name": "checkout", "namespace": "staging", "uid": "u-1"}, "spec": spec,
            "status": status or {}}


def deployment_body(release: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The stable Deployment Sluice writes for `spec`, fully rolled out."""
    parsed = ReleaseSpec.model_validate(spec)
    digest = objects.template_hash(parsed)
    body = objects.deployment(release, "stable", parsed.replicas,
                              objects.pod_template("checkout", parsed, "stable", digest), digest)
    body["metadata"]["generation"] = 3
    body["status"] = {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}
    return body


def test_the_facts_of_a_deployment_sluice_wrote_open_the_gate_for_another_environment() -> None:
    """Staging's template differs from this Release's (env, a sidecar): its hash differs, and the
    gate opens, because the artifact is the same and the template is the one staging declares."""
    release = release_body(STAGING_SPEC, {"phase": "Succeeded", "stableVersion": "1.1.0"})
    facts = upstream("staging", "checkout", release, deployment_body(release, STAGING_SPEC))
    assert facts.controlled and facts.version == "1.1.0" and facts.template_hash != objects.template_hash(SPEC)
    assert facts.declared == (Declared("spec", "1.1.0", facts.template_hash or "", IMAGES),)
    assert unmet(SPEC, (facts,)) is None


def test_the_facts_keep_the_promoted_template_when_the_spec_moved_on() -> None:
    newer = {**STAGING_SPEC, "version": "1.2.0"}
    stable_spec = {"version": "1.1.0", "template": STAGING_SPEC["template"]}
    release = release_body(newer, {"phase": "Pending", "stableVersion": "1.1.0", "candidateVersion": "1.2.0",
                                   "stableSpec": stable_spec})
    facts = upstream("staging", "checkout", release, deployment_body(release, STAGING_SPEC))
    assert [(d.source, d.version) for d in facts.declared] == [("status.stableSpec", "1.1.0"), ("spec", "1.2.0")]
    assert unmet(SPEC, (facts,)) is None


def test_kubectl_set_image_behind_sluices_back_is_seen_in_the_live_template() -> None:
    declared = {**STAGING_SPEC, "template": {"spec": {**STAGING_SPEC["template"]["spec"], "containers": [
        {"name": "app", "image": "app:1.1.0-rc"}, {"name": "debug", "image": "busybox"}]}}}
    release = release_body(declared, {"phase": "Succeeded", "stableVersion": "1.1.0"})
    deployment = deployment_body(release, declared)
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = "app:1.1.0"  # the annotation stays
    facts = upstream("staging", "checkout", release, deployment)
    assert unmet(SPEC, (facts,)) == (
        f"1.1.0 is not running in namespace staging yet: {HERE} runs image app:1.1.0 in container app, but "
        f"{THERE} declares app:1.1.0-rc: the Deployment was changed behind Sluice's back (requires)")


def test_a_status_that_is_no_status_only_keeps_the_gate_shut() -> None:
    release = release_body(STAGING_SPEC, {"phase": 7, "stableSpec": "nonsense"})
    facts = upstream("staging", "checkout", release, deployment_body(release, STAGING_SPEC))
    assert facts.phase is None and [d.source for d in facts.declared] == ["spec"]
    assert unmet(SPEC, (facts,)) == (f"1.1.0 is not running in namespace staging yet: {THERE} does not report "
                                     "1.1.0 as its stable version (requires)")
    assert upstream("staging", "checkout", None, None) == Upstream("staging", "checkout")


def test_the_stable_template_status_keeps_names_the_template_sluice_wrote() -> None:
    """status.stableSpec is stored as JSON (lifecycle.stable_spec); hashed again it must name the
    very template the Deployment carries, or a staging whose spec moved on would close the gate."""
    rich = ReleaseSpec.model_validate({"version": "1.1.0-rc.1+build.7", "replicas": 3, "template": {
        "metadata": {"labels": {"team": "shop"}, "annotations": {"a": "b"}},
        "spec": {"initContainers": [{"name": "migrate", "image": "migrate:1", "args": ["--up"]}],
                 "containers": [{"name": "app", "image": "app@sha256:" + "0" * 64,
                                 "ports": [{"containerPort": 8080}], "resources": {"limits": {"cpu": "500m"}},
                                 "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
                                 "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}],
                 "terminationGracePeriodSeconds": 30}}})
    kept = stable_spec(Observed(generation=1, spec=rich, desired_hash="", status=ReleaseStatus(),
                                stable=Workload(), canary=Workload()))
    release = release_body({**STAGING_SPEC, "version": "1.2.0"},
                           {"stableSpec": kept.model_dump(by_alias=True, mode="json")})
    promoted = upstream("staging", "checkout", release, None).declared[0]
    assert (promoted.source, promoted.template_hash) == ("status.stableSpec", objects.template_hash(rich))


def test_a_template_reading_versioned_config_is_named_by_the_template_sluice_wrote() -> None:
    """Staging's pods read a ConfigMap labelled sluice.dev/versioned: Sluice runs a content-named
    copy, so the Deployment's template (and its hash) is the rewritten one. status.stableSpec
    keeps that one and names it; the spec's own template does not, and need not."""
    spec = {**STAGING_SPEC, "template": {"spec": {**STAGING_SPEC["template"]["spec"], "containers": [
        {"name": "app", "image": "app:1.1.0", "envFrom": [{"configMapRef": {"name": "app-config"}}]},
        {"name": "debug", "image": "busybox"}]}}}
    release = release_body(spec)
    found = {"ConfigMap": [{"kind": "ConfigMap", "metadata": {"name": "app-config", "namespace": "staging",
                                                              "labels": {objects.VERSIONED: "true"}},
                            "data": {"DB": "staging-db"}}]}
    rewritten, copies = config.versioned(spec["template"], release, found, None)
    assert copies, "the template runs a copy"
    ran = {**spec, "template": rewritten}
    release["status"] = {"phase": "Succeeded", "stableVersion": "1.1.0",
                         "stableSpec": {"version": "1.1.0", "template": rewritten}}
    facts = upstream("staging", "checkout", release, deployment_body(release, ran))
    assert [d.source for d in facts.declared] == ["status.stableSpec", "spec"]
    assert facts.declared[0].template_hash == facts.template_hash != facts.declared[1].template_hash
    assert unmet(SPEC, (facts,)) is None

"""plan.requires: the promotion gate decides on what the operator read in the other namespace
(plan.types.Upstream), and the other Release's status can only keep it shut. One named case each."""

from __future__ import annotations

import dataclasses

import pytest

from sluice.api.models import ReleaseSpec
from sluice.plan.requires import unmet
from sluice.plan.types import Upstream

SPEC = ReleaseSpec.model_validate({"version": "1.1.0", "template": {"spec": {
    "initContainers": [{"name": "migrate", "image": "migrate:1.1.0"}],
    "containers": [{"name": "app", "image": "app:1.1.0"}]}}})

RUNNING = Upstream("staging", "checkout", release=True, deployment=True, controlled=True, version="1.1.0",
                   images=(("app", "app:1.1.0"), ("debug", "busybox"), ("migrate", "migrate:1.1.0")),
                   replicas=2, updated=2, available=2, total=2, settled=True, phase="Succeeded",
                   stable_version="1.1.0", candidate_version="1.1.0")
HERE = "Deployment checkout in namespace staging"

CASES: dict[str, tuple[Upstream, str | None]] = {
    "runs it, fully rolled out (an extra sidecar there does not matter)": (RUNNING, None),
    "no Release there": (Upstream("staging", "checkout"), "there is no Release checkout in namespace staging"),
    "an init container differs": (dataclasses.replace(RUNNING, images=(("app", "app:1.1.0"), ("migrate", "m:1"))),
                                  f"{HERE} runs image m:1 in container migrate, not migrate:1.1.0"),
    "a container of ours never ran there": (dataclasses.replace(RUNNING, images=(("app", "app:1.1.0"),)),
                                            f"{HERE} has no container migrate"),
    "scaled to zero": (dataclasses.replace(RUNNING, replicas=0, updated=0, available=0, total=0),
                       f"{HERE} has not finished rolling out 1.1.0: it is scaled to zero, so nothing runs there"),
    "old pods left": (dataclasses.replace(RUNNING, total=3),
                      f"{HERE} has not finished rolling out 1.1.0: 2 of 2 replicas run its current template "
                      "(3 pods in all)"),
    "a change not yet seen": (dataclasses.replace(RUNNING, settled=False),
                              f"{HERE} has not finished rolling out 1.1.0: its latest change has not been seen "
                              "by the Deployment controller yet"),
    "its status does not name it stable": (dataclasses.replace(RUNNING, stable_version="1.0.0"),
                                           "Release checkout in namespace staging does not report 1.1.0 as its "
                                           "stable version"),
    "still in its post-promotion analysis": (dataclasses.replace(RUNNING, phase="Progressing"),
                                             "Release checkout in namespace staging is still rolling out 1.1.0"),
    "rolling out the next version there": (dataclasses.replace(RUNNING, phase="Progressing",
                                                               candidate_version="1.2.0"), None),
}


@pytest.mark.parametrize("upstream, why", CASES.values(), ids=CASES.keys())
def test_gate(upstream: Upstream, why: str | None) -> None:
    expected = None if why is None else f"1.1.0 is not running in namespace staging yet: {why} (requires)"
    assert unmet(SPEC, (upstream,)) == expected


def test_every_required_namespace_must_run_it() -> None:
    qa = dataclasses.replace(RUNNING, namespace="qa", version="1.0.0")
    assert unmet(SPEC, (RUNNING, qa)) == ("1.1.0 is not running in namespace qa yet: Deployment checkout in "
                                                  "namespace qa runs 1.0.0, not 1.1.0 (requires)")
    assert unmet(SPEC, ()) is None

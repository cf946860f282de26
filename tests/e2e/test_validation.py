"""Bad input is refused by the API server, with a message that names the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.e2e.conftest import Kubectl
from tests.e2e.manifests import policy, release

pytestmark = pytest.mark.e2e


def _release(**changes: Any) -> dict[str, Any]:
    body = release("shop", "1.0.0")
    body["spec"].update(changes)
    return {k: v for k, v in body.items()}


def _without(body: dict[str, Any], field: str) -> dict[str, Any]:
    body = copy.deepcopy(body)
    del body["spec"][field]
    return body


def _policy(steps: list[dict[str, Any]] | None = None, **analysis: Any) -> dict[str, Any]:
    body = policy("p", steps if steps is not None else [{"setWeight": 10}, {"analysis": {}}], "http://prom:9090")
    body["spec"]["analysis"].update(analysis)
    return body


def _metric(**fields: Any) -> list[dict[str, Any]]:
    return [{"name": "error-rate", "query": "up", "successCondition": "result > 0", **fields}]


CASES = [
    ("release without a version", _without(_release(), "version"), "spec.version: Required value"),
    ("version that is not semver", _release(version="latest"), "spec.version: Invalid value: \"latest\""),
    ("negative replicas", _release(replicas=-1), "spec.replicas: Invalid value: -1"),
    ("release without a template", _without(_release(), "template"), "spec.template: Required value"),
    ("template without containers", _release(template={"spec": {"containers": []}}),
     "spec.template.spec.containers: Invalid value"),
    ("service port out of range", _release(service={"port": 70000}), "spec.service.port: Invalid value: 70000"),
    ("release name too long for its Services", {**_release(), "metadata": {"name": "x" * 60}},
     "a Release name is at most 55 characters"),
    ("weight above 100", _policy([{"setWeight": 150}]), "spec.strategy.canary.steps[0].setWeight: Invalid value: 150"),
    ("step with two actions", _policy([{"setWeight": 10, "pause": {}}]),
     "spec.strategy.canary.steps[0]: Invalid value: a step must have exactly one of setWeight"),
    ("no steps", _policy([]), "spec.strategy.canary.steps: Invalid value: 0"),
    ("a duration that is not one", _policy([{"pause": {"duration": "2 minutes"}}]),
     "spec.strategy.canary.steps[0].pause.duration: Invalid value: \"2 minutes\""),
    ("analysis step without metrics", _policy(metrics=[]), "an analysis step needs spec.analysis.metrics"),
    ("metric with neither query nor compare", _policy(metrics=[{"name": "m", "successCondition": "result > 0"}]),
     "a metric needs exactly one of query or compare"),
    ("unknown noData", _policy(metrics=_metric(noData="maybe")),
     "spec.analysis.metrics[0].noData: Unsupported value: \"maybe\""),
    ("two metrics of one name", _policy(metrics=_metric() + _metric()), "metric names must be unique"),
    ("an unknown strategy", {**_policy(), "spec": {**_policy()["spec"], "strategy": {"linear": {}}}},
     "unknown field \"spec.strategy.linear\""),
    ("onFailure that is not an option", {**_policy(), "spec": {**_policy()["spec"], "onFailure": "explode"}},
     "spec.onFailure: Unsupported value: \"explode\""),
]


@pytest.mark.parametrize(("manifest", "message"), [pytest.param(m, msg, id=name) for name, m, msg in CASES])
def test_invalid_manifests_are_rejected_naming_the_field(kubectl: Kubectl, manifest: dict[str, Any],
                                                         message: str) -> None:
    refused = kubectl.apply(manifest, check=False)
    assert refused.returncode != 0
    assert message in refused.stderr, refused.stderr
    kind = "releases.sluice.dev" if manifest["kind"] == "Release" else "rolloutpolicies.sluice.dev"
    assert kubectl.run("get", kind, "-o", "name").stdout == "", "nothing was created"

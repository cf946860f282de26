"""Bad input is refused by the API server, with a message that names the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

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


def _strategy(strategy: dict[str, Any]) -> dict[str, Any]:
    body = _policy()
    body["spec"]["strategy"] = strategy
    return body


def _hook(name: str) -> dict[str, Any]:
    return {"name": name, "template": {"spec": {"containers": [{"name": "job", "image": "tools:1"}]}}}


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
     "a metric needs exactly one of query, compare, web or job"),
    ("abortCondition on a compare metric", _policy(metrics=[
        {"name": "m", "compare": {"query": "up"}, "abortCondition": "result > 0.5"}]),
     "abortCondition needs a query or web metric: a compare or job metric has no single value to test"),
    ("unknown noData", _policy(metrics=_metric(noData="maybe")),
     "spec.analysis.metrics[0].noData: Unsupported value: \"maybe\""),
    ("two metrics of one name", _policy(metrics=_metric() + _metric()), "metric names must be unique"),
    ("an unknown strategy", {**_policy(), "spec": {**_policy()["spec"], "strategy": {"linear": {}}}},
     "unknown field \"spec.strategy.linear\""),
    ("onFailure that is not an option", {**_policy(), "spec": {**_policy()["spec"], "onFailure": "explode"}},
     "spec.onFailure: Unsupported value: \"explode\""),
    # the release lifecycle (issue 11): hooks, job and web metrics, bake, notify
    ("two preRollout hooks of one name", _release(hooks={"preRollout": [_hook("migrate"), _hook("migrate")]}),
     "spec.hooks.preRollout: Invalid value: hook names must be unique within a stage"),
    ("a hook name too long for its Job", _release(hooks={"preRollout": [_hook("m" * 21)]}),
     "spec.hooks.preRollout[0].name: Too long"),
    ("a hook timeout beyond a day", _release(hooks={"postPromotion": [{**_hook("smoke"), "timeout": "25h"}]}),
     "spec.hooks.postPromotion[0].timeout: Invalid value: \"25h\": must be a duration of at most 24h"),
    ("a job metric with a successCondition", _policy(metrics=[{"name": "smoke", "successCondition": "result > 0",
                                                              "job": {"template": _hook("t")["template"]}}]),
     "a job metric is judged by its exit code"),
    ("a web metric without a jsonPath", _policy(metrics=[{"name": "w", "successCondition": "result < 1",
                                                         "web": {"url": "http://x.example.com/m"}}]),
     "spec.analysis.metrics[0].web.jsonPath: Required value"),
    ("a bake naming an unknown metric", {**_policy(), "spec": {**_policy()["spec"],
                                                              "bake": {"duration": "1m", "metrics": ["nope"]}}},
     "bake needs spec.analysis.metrics, and names only metrics it defines"),
    ("a notify target with webhook and slack", {**_policy(), "spec": {**_policy()["spec"], "notify": [
        {"name": "t", "webhook": {"url": "http://a.example.com/x"}, "slack": {"url": "http://b.example.com/x"}}]}},
     "a notify target needs exactly one of webhook or slack"),
    # issue 7, item 2: an analysis step runs the metrics it names, so each must exist
    ("analysis step naming an unknown metric", _policy([{"setWeight": 10}, {"analysis": {"metrics": ["error-rat"]}}]),
     "spec.strategy.canary.steps: Invalid value: an analysis step names a metric that "
     "spec.analysis.metrics does not define"),
    ("analysis step naming no metric", _policy([{"analysis": {"metrics": []}}]),
     "spec.strategy.canary.steps[0].analysis.metrics: Invalid value: 0"),
    # item 20: every duration is bounded, and no wait for data outlives progressDeadline
    ("pause longer than 7 days", _policy([{"pause": {"duration": "169h"}}]),
     "spec.strategy.canary.steps[0].pause.duration: Invalid value: \"169h\": must be a duration of at most 168h"),
    ("pause too long for a duration", _policy([{"pause": {"duration": "9" * 31 + "h"}}]),
     "spec.strategy.canary.steps[0].pause.duration: Invalid value: \"string\": type conversion error from "
     "'string' to 'google.protobuf.Duration' evaluating rule: must be a duration of at most 168h"),
    ("interval of 1h1h1h1h", _policy(interval="1h1h1h1h"),
     "spec.analysis.interval: Invalid value: \"1h1h1h1h\": must be a duration of at most 1h and at least 1s"),
    ("interval of 0s", _policy(interval="0s"),
     "spec.analysis.interval: Invalid value: \"0s\": must be a duration of at most 1h and at least 1s"),
    ("interval beyond progressDeadline", _policy(interval="2m"),
     "spec.analysis.interval: Invalid value: analysis.interval must not exceed progressDeadline"),
    ("progressDeadline beyond a day", {**_policy(), "spec": {**_policy()["spec"], "progressDeadline": "25h"}},
     "spec.progressDeadline: Invalid value: \"25h\": must be a duration of at most 24h"),
    ("query timeout beyond a minute", _policy(prometheus={"address": "http://prom:9090", "timeout": "2m"}),
     "spec.analysis.prometheus.timeout: Invalid value: \"2m\": must be a duration of at most 1m"),
    ("scaleDownDelay beyond a day", _strategy({"blueGreen": {"scaleDownDelay": "48h"}}),
     "spec.strategy.blueGreen.scaleDownDelay: Invalid value: \"48h\": must be a duration of at most 24h"),
    ("autoPromotionDelay beyond a day", _strategy({"blueGreen": {"autoPromotionDelay": "25h"}}),
     "spec.strategy.blueGreen.autoPromotionDelay: Invalid value: \"25h\": must be a duration of at most 24h"),
    # item 18: what the API server would refuse on Sluice's own Deployments and Services
    ("container name Bad_Name", _release(template={"spec": {"containers": [{"name": "Bad_Name", "image": "i"}]}}),
     "spec.template.spec.containers[0].name: Invalid value: \"Bad_Name\""),
    ("container port 70000", _release(template={"spec": {"containers": [
        {"name": "app", "image": "i", "ports": [{"containerPort": 70000}]}]}}),
     "spec.template.spec.containers[0].ports[0].containerPort: Invalid value: 70000"),
    ("targetPort 70000", _release(service={"port": 80, "targetPort": 70000}),
     "spec.service.targetPort: Invalid value: 70000: must be a port number 1-65535"),
    ("targetPort that is no port name", _release(service={"port": 80, "targetPort": "Bad_Name"}),
     "spec.service.targetPort: Invalid value: \"Bad_Name\": must be a port number 1-65535 or a port name"),
    ("targetPort name too long", _release(service={"port": 80, "targetPort": "a" * 16}),
     "spec.service.targetPort: Invalid value: \"" + "a" * 16 + "\": must be a port number 1-65535 or a port name"),
    ("maxSurge of \"25\"", _strategy({"rolling": {"maxSurge": "25"}}),
     "spec.strategy.rolling.maxSurge: Invalid value: \"25\": must be a number of pods (0 or more) or a percentage"),
    ("maxUnavailable over 100%", _strategy({"rolling": {"maxUnavailable": "150%"}}),
     "spec.strategy.rolling.maxUnavailable: Invalid value: \"150%\": must be a number of pods"),
    ("rolling that can never start", _strategy({"rolling": {"maxSurge": 0, "maxUnavailable": "0%"}}),
     "spec.strategy.rolling: Invalid value: maxSurge and maxUnavailable cannot both be 0"),
    ("version longer than 128", _release(version="1.0.0-" + "a" * 123), "spec.version: Too long"),
    # item 19: a Prometheus address is a URL, a query is of reasonable size
    ("Prometheus address with an unclosed IPv6 bracket", _policy(prometheus={"address": "http://[::1"}),
     "spec.analysis.prometheus.address: Invalid value: \"http://[::1\": must be a URL with a valid host"),
    ("Prometheus port 99999", _policy(prometheus={"address": "http://prom:99999"}),
     "spec.analysis.prometheus.address: Invalid value: \"http://prom:99999\": must be a URL with a valid host"),
    ("Prometheus address with a trailing newline", _policy(prometheus={"address": "http://prom:9090\n"}),
     "spec.analysis.prometheus.address: Invalid value: \"http://prom:9090\\n\""),
    ("a 100 KB query", _policy(metrics=_metric(query="up" + " " * 100_000)),
     "spec.analysis.metrics[0].query: Too long"),
]


@pytest.mark.parametrize(("manifest", "message"), [pytest.param(m, msg, id=name) for name, m, msg in CASES])
def test_invalid_manifests_are_rejected_naming_the_field(kubectl: Kubectl, manifest: dict[str, Any],
                                                         message: str) -> None:
    refused = kubectl.apply(manifest, check=False)
    assert refused.returncode != 0
    assert message in refused.stderr, refused.stderr
    kind = "releases.sluice.dev" if manifest["kind"] == "Release" else "rolloutpolicies.sluice.dev"
    assert kubectl.run("get", kind, "-o", "name").stdout == "", "nothing was created"


VALID = [
    ("semver with build metadata", _release(version="1.0.0-rc.1+build.5")),
    ("semver of 128 characters", _release(version="1.0.0-" + "a" * 122)),
    ("named targetPort and container ports", _release(
        service={"port": 80, "targetPort": "http"},
        template={"spec": {"containers": [{"name": "app", "image": "i",
                                           "ports": [{"name": "http", "containerPort": 8080}]}]}})),
    ("analysis step naming its metric, a week's pause",
     _policy([{"setWeight": 10}, {"analysis": {"metrics": ["error-rate"]}}, {"pause": {"duration": "168h"}}])),
    ("a repeated duration within bounds", _policy([{"pause": {"duration": "1h1h30m"}}])),
    ("Prometheus over IPv6 with a path", _policy(prometheus={"address": "https://[::1]:9090/prom/", "timeout": "1m"})),
    ("rolling by percent", _strategy({"rolling": {"maxSurge": "0%", "maxUnavailable": "100%"}})),
    ("blue-green delays of a day", _strategy({"blueGreen": {"scaleDownDelay": "24h", "autoPromotionDelay": "24h"}})),
]


@pytest.mark.parametrize("manifest", [pytest.param(m, id=name) for name, m in VALID])
def test_valid_manifests_at_the_bounds_are_accepted(kubectl: Kubectl, manifest: dict[str, Any]) -> None:
    accepted = kubectl.run("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(manifest), check=False)
    assert accepted.returncode == 0, accepted.stderr

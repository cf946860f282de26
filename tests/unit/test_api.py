"""The API models, the generated CRDs and the objects Sluice owns."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from sluice.api import crdgen
from sluice.api.durations import DURATION_PATTERN, format_duration, parse_duration
from sluice.api.models import ReleaseSpec, RolloutPolicySpec
from sluice.kube import objects
from tests.unit.world import release_spec

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("folder", crdgen.OUTPUTS)
def test_crds_are_generated_from_the_models(folder: str) -> None:
    for name, text in crdgen.render().items():
        on_disk = (ROOT / folder / name).read_text()
        assert on_disk == text, f"{folder}/{name} is stale: run `make crds`"


def test_crd_schemas_are_structural() -> None:
    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            assert "$ref" not in node and "anyOf" not in node and "title" not in node, path
            if "properties" in node:
                assert node.get("type") == "object", path
            for key, value in node.items():
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")
    for text in crdgen.render().values():
        walk(yaml.safe_load(text)["spec"]["versions"][0]["schema"], "schema")


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("2m", 120), ("1h30m", 5400), ("250ms", 0.25)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_duration_errors_and_format() -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration("5 minutes")
    assert format_duration(90) == "1m30s" and format_duration(3600) == "1h" and format_duration(0) == "0s"


def test_release_spec_rejects_what_the_api_server_would() -> None:
    with pytest.raises(ValidationError, match="version"):
        ReleaseSpec.model_validate({"version": "latest", "template": {"spec": {"containers": [
            {"name": "a", "image": "i"}]}}})


def test_template_hash_changes_with_version_or_template() -> None:
    a, b = release_spec("1.0.0"), release_spec("1.0.1")
    assert objects.template_hash(a) != objects.template_hash(b)
    assert objects.template_hash(a) == objects.template_hash(release_spec("1.0.0"))


RELEASE = {"apiVersion": "sluice.dev/v1alpha1", "kind": "Release",
           "metadata": {"name": "checkout", "namespace": "shop", "uid": "u-1"}}


def test_deployment_carries_the_labels_the_simulator_and_selectors_need() -> None:
    template = objects.pod_template("checkout", release_spec("1.4.2"), "canary", "abc")
    body = objects.deployment(RELEASE, "canary", 2, template, "abc")
    labels = body["spec"]["template"]["metadata"]["labels"]
    assert body["spec"]["template"]["metadata"]["annotations"] == {"sluice.dev/template-hash": "abc",
                                                                   "sluice.dev/version": "1.4.2"}
    assert labels == {"app.kubernetes.io/name": "checkout", "app.kubernetes.io/version": "1.4.2",
                      "sluice.dev/track": "canary"}
    assert body["metadata"]["name"] == "checkout-canary" and body["spec"]["replicas"] == 2
    assert body["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "checkout",
                                                       "sluice.dev/track": "canary"}
    assert body["metadata"]["ownerReferences"][0]["uid"] == "u-1"


def test_route_weights_add_the_canary_backend_and_keep_the_rest() -> None:
    route = {"metadata": {"name": "r"}, "spec": {"rules": [
        {"matches": [{"path": {"value": "/"}}], "backendRefs": [{"name": "checkout", "port": 80}]},
        {"backendRefs": [{"name": "other", "port": 80}]}]}}
    updated, problem = objects.route_weights(route, "checkout", 30)
    assert problem is None and updated is not None
    assert updated["spec"]["rules"][0]["backendRefs"] == [
        {"name": "checkout", "port": 80, "weight": 70}, {"port": 80, "name": "checkout-canary", "weight": 30}]
    assert updated["spec"]["rules"][1] == route["spec"]["rules"][1]
    assert objects.route_weight(updated, "checkout") == 30
    assert objects.route_weights(updated, "checkout", 30) == (None, None)


def test_a_route_without_the_release_is_a_problem() -> None:
    route = {"metadata": {"name": "r"}, "spec": {"rules": [{"backendRefs": [{"name": "other"}]}]}}
    assert objects.route_weights(route, "checkout", 10) == (None, "HTTPRoute r has no backendRef to Service checkout")


# --- What the schema refuses, the models refuse too (issue 7: items 2, 6, 18, 19, 20) ----------

CONTAINER = {"name": "app", "image": "shop/checkout:1"}
METRIC = {"name": "error-rate", "query": "up", "successCondition": "result > 0"}


def _release(**spec: object) -> dict[str, object]:
    return {"version": "1.0.0", "template": {"spec": {"containers": [CONTAINER]}}, **spec}


def _policy(steps: list[object] | None = None, **spec: object) -> dict[str, object]:
    analysis = {"metrics": [METRIC], **spec.pop("analysis", {})}  # type: ignore[dict-item]
    return {"strategy": {"canary": {"steps": [{"setWeight": 10}, {"analysis": {}}] if steps is None else steps}},
            "analysis": analysis, **spec}


def _container(**fields: object) -> dict[str, object]:
    return _release(template={"spec": {"containers": [{**CONTAINER, **fields}]}})


def _prometheus(**fields: object) -> dict[str, object]:
    return _policy(analysis={"prometheus": fields})


def _rolling(**fields: object) -> dict[str, object]:
    return {"strategy": {"rolling": fields}}


ACCEPTED = [
    ("semver with pre-release and build metadata", ReleaseSpec, _release(version="1.0.0-rc.1+build.5")),
    ("semver of 128 characters", ReleaseSpec, _release(version="1.0.0-" + "a" * 122)),
    ("container name that is a DNS label", ReleaseSpec, _container(name="web-2")),
    ("container ports with other fields", ReleaseSpec, _container(ports=[{"containerPort": 8080, "name": "http"}])),
    ("targetPort number", ReleaseSpec, _release(service={"port": 80, "targetPort": 8080})),
    ("targetPort name", ReleaseSpec, _release(service={"targetPort": "http-alt"})),
    ("pause of 7 days", RolloutPolicySpec, _policy([{"pause": {"duration": "168h"}}])),
    ("a repeated duration within bounds", RolloutPolicySpec, _policy([{"pause": {"duration": "1h1h30m"}}])),
    ("step naming a known metric", RolloutPolicySpec, _policy([{"analysis": {"metrics": ["error-rate"]}}])),
    ("interval equal to progressDeadline", RolloutPolicySpec,
     _policy(analysis={"interval": "1h"}, progressDeadline="1h")),
    ("IPv6 Prometheus with a path", RolloutPolicySpec, _prometheus(address="https://[::1]:9090/prom/")),
    ("Prometheus without a port", RolloutPolicySpec, _prometheus(address="http://prometheus.monitoring")),
    ("rolling by percent", RolloutPolicySpec, _rolling(maxSurge="0%", maxUnavailable="100%")),
    ("rolling by pods", RolloutPolicySpec, _rolling(maxSurge=2, maxUnavailable=0)),
    ("blue-green delays of a day", RolloutPolicySpec,
     {"strategy": {"blueGreen": {"scaleDownDelay": "24h", "autoPromotionDelay": "24h"}}}),
]


@pytest.mark.parametrize(("model", "spec"), [pytest.param(m, s, id=name) for name, m, s in ACCEPTED])
def test_the_models_accept_valid_specs(model: type[ReleaseSpec | RolloutPolicySpec], spec: dict[str, object]) -> None:
    model.model_validate(spec)


REFUSED = [
    ("semver longer than 128", ReleaseSpec, _release(version="1.0.0-" + "a" * 123), "at most 128 characters"),
    ("container name Bad_Name", ReleaseSpec, _container(name="Bad_Name"), "containers.0.name"),
    ("container port 70000", ReleaseSpec, _container(ports=[{"containerPort": 70000}]), "less than or equal to 65535"),
    ("container port as a string", ReleaseSpec, _container(ports=[{"containerPort": "80"}]), "valid integer"),
    ("targetPort 0", ReleaseSpec, _release(service={"targetPort": 0}), "port number 1-65535"),
    ("targetPort 70000", ReleaseSpec, _release(service={"targetPort": 70000}), "port number 1-65535"),
    ("targetPort of digits", ReleaseSpec, _release(service={"targetPort": "8080"}), "port name"),
    ("targetPort name too long", ReleaseSpec, _release(service={"targetPort": "a" * 16}), "port name"),
    ("targetPort name with --", ReleaseSpec, _release(service={"targetPort": "a--b"}), "port name"),
    ("targetPort name Bad_Name", ReleaseSpec, _release(service={"targetPort": "Bad_Name"}), "port name"),
    ("no canary steps", RolloutPolicySpec, _policy([]), "at least 1 item"),
    ("step naming an unknown metric", RolloutPolicySpec, _policy([{"analysis": {"metrics": ["error-rat"]}}]),
     "an analysis step names a metric that spec.analysis.metrics does not define: 'error-rat' (step 0)"),
    ("step naming no metric", RolloutPolicySpec, _policy([{"analysis": {"metrics": []}}]), "at least 1 item"),
    ("pause over 7 days", RolloutPolicySpec, _policy([{"pause": {"duration": "169h"}}]), "at most 168h"),
    ("a huge duration", RolloutPolicySpec, _policy([{"pause": {"duration": "9" * 31 + "h"}}]), "at most 168h"),
    ("interval over an hour", RolloutPolicySpec, _policy(analysis={"interval": "1h1h"}), "at most 1h"),
    ("interval under a second", RolloutPolicySpec, _policy(analysis={"interval": "0s"}), "at least 1s"),
    ("interval over progressDeadline", RolloutPolicySpec, _policy(analysis={"interval": "2m"}, progressDeadline="1m"),
     "analysis.interval must not exceed progressDeadline"),
    ("progressDeadline over a day", RolloutPolicySpec, _policy(progressDeadline="25h"), "at most 24h"),
    ("timeout over a minute", RolloutPolicySpec, _prometheus(timeout="61s"), "at most 1m"),
    ("scaleDownDelay over a day", RolloutPolicySpec, {"strategy": {"blueGreen": {"scaleDownDelay": "48h"}}},
     "at most 24h"),
    ("autoPromotionDelay over a day", RolloutPolicySpec, {"strategy": {"blueGreen": {"autoPromotionDelay": "25h"}}},
     "at most 24h"),
    ("Prometheus IPv6 unclosed", RolloutPolicySpec, _prometheus(address="http://[::1"), "IPv6 in brackets"),
    ("Prometheus port 99999", RolloutPolicySpec, _prometheus(address="http://prom:99999"), "port from 1 to 65535"),
    ("Prometheus port 0", RolloutPolicySpec, _prometheus(address="http://prom:0"), "port from 1 to 65535"),
    ("Prometheus trailing newline", RolloutPolicySpec, _prometheus(address="http://prom:9090\n"), "pattern"),
    ("Prometheus with a space", RolloutPolicySpec, _prometheus(address="http://prom :9090"), "pattern"),
    ("Prometheus not http", RolloutPolicySpec, _prometheus(address="ftp://prom"), "pattern"),
    ("a 100 KB query", RolloutPolicySpec, _policy(analysis={"metrics": [{**METRIC, "query": "u" * 100_000}]}),
     "at most 8192 characters"),
    ("maxSurge 25 as a string", RolloutPolicySpec, _rolling(maxSurge="25"), "percentage such as 25%"),
    ("maxSurge negative", RolloutPolicySpec, _rolling(maxSurge=-1), "0 or more"),
    ("maxUnavailable over 100%", RolloutPolicySpec, _rolling(maxUnavailable="101%"), "0% to 100%"),
    ("rolling that can never start", RolloutPolicySpec, _rolling(maxSurge="0%", maxUnavailable=0), "both be 0"),
]


@pytest.mark.parametrize(("model", "spec", "message"),
                         [pytest.param(m, s, msg, id=name) for name, m, s, msg in REFUSED])
def test_the_models_refuse_what_the_api_server_refuses(model: type[ReleaseSpec | RolloutPolicySpec],
                                                       spec: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        model.model_validate(spec)


def _schemas() -> list[tuple[str, dict[str, object]]]:
    found: list[tuple[str, dict[str, object]]] = []

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            found.append((path, node))
            for key, value in node.items():
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")
    for name, text in crdgen.render().items():
        walk(yaml.safe_load(text)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"], name)
    return found


def test_every_duration_in_the_crds_has_an_upper_bound() -> None:
    durations = [(path, node) for path, node in _schemas() if node.get("pattern") == DURATION_PATTERN]
    # pause, autoPromotionDelay, scaleDownDelay, interval, timeout, progressDeadline, bake, three hook
    # timeouts, a web metric's and a job metric's timeouts
    assert len(durations) == 12
    for path, node in durations:
        rules = [r["rule"] for r in node.get("x-kubernetes-validations", [])]  # type: ignore[attr-defined]
        assert any("duration(self) <= duration(" in rule for rule in rules), path


def test_every_list_and_string_a_spec_rule_iterates_is_bounded() -> None:
    """The API server estimates a CEL rule's cost from maxItems and maxLength; unbounded, a rule
    over steps x metrics would be refused with the whole CRD."""
    policy = crdgen.policy_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    steps = policy["properties"]["strategy"]["properties"]["canary"]["properties"]["steps"]
    step_metrics = steps["items"]["properties"]["analysis"]["properties"]["metrics"]
    metrics = policy["properties"]["analysis"]["properties"]["metrics"]
    assert steps["minItems"] == 1 and steps["maxItems"] <= 100
    assert step_metrics["minItems"] == 1 and step_metrics["maxItems"] <= 20 and step_metrics["items"]["maxLength"] <= 63
    assert metrics["maxItems"] <= 20 and metrics["items"]["properties"]["name"]["maxLength"] <= 63

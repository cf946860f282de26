"""The API models, the generated CRDs and the objects Sluice owns."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from sluice.api import crdgen
from sluice.api.durations import format_duration, parse_duration
from sluice.api.models import ReleaseSpec
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
    assert body["spec"]["template"]["metadata"]["annotations"] == {"sluice.dev/template-hash": "abc"}
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

"""Generated invalid and hostile manifests for the bad-input e2e suite (tests/e2e/test_bad_input.py).

Each `Case` is one manifest set with what a user must see:
- REFUSED: `kubectl apply` fails with a message that names the field (`hint`);
- STALLED: the Release shows `Stalled=True` with a plain message (naming `hint`) within one pass;
- SHIPS: valid but odd input (semver build metadata, long versions) ships to Succeeded;
- CONTINUES: mid-rollout input that the rollout's policy snapshot makes irrelevant: no Stalled.
Some cases accept more than one outcome: the schema may refuse what the operator would otherwise
stall on (`cpu: lots`); the issue asks for either, never for silence.

Every object of case number N is named hNNN or hNNN-<something>, so that cases can share a
namespace without touching each other's objects (owned objects are <name>-canary / -preview).
Cases whose `stable` is set start from that version Succeeded, then deploy the Release's version
and, once the canary carries traffic, apply `then` / delete `delete` (input broken mid-rollout).
"""

from __future__ import annotations

import base64
import copy
import dataclasses
from collections.abc import Iterator
from typing import Any

from tests.e2e.manifests import ERROR_RATE, IMAGE, SAMPLES

REFUSED, STALLED, SHIPS, CONTINUES = "refused", "stalled", "ships", "continues"
API = "sluice.dev/v1alpha1"


@dataclasses.dataclass
class Case:
    name: str  # hNNN: the Release (and prefix of every object of the case)
    cls: str  # the class of bad input, for the counts
    title: str  # what is wrong, in a few words
    manifests: list[dict[str, Any]]
    expect: tuple[str, ...]  # accepted outcomes
    hint: str = ""  # a word the refusal or the Stalled message must contain (case-insensitive)
    version: str = "1.0.0"  # the Release's version (what SHIPS must reach)
    stable: str | None = None  # start from this version Succeeded (mid-rollout cases)
    then: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # applied once the canary runs
    delete: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (kind, name) deleted then
    releases: tuple[str, ...] = ()  # Releases judged; default (name,). Several: at least one must match

    @property
    def judged(self) -> tuple[str, ...]:
        return self.releases or (self.name,)

    @property
    def midway(self) -> bool:
        return self.stable is not None


# --- building blocks ---------------------------------------------------------------------------

def release(name: str, version: str = "1.0.0", policy: str | None = None, replicas: int = 1,
            route: str | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "version": version,
        "replicas": replicas,
        "template": {"metadata": {"annotations": {"sim.sluice.dev/error-rate": "0"}},
                     "spec": {"containers": [{"name": "app", "image": IMAGE.format(name=name, version=version)}]}},
    }
    if policy:
        body["policyRef"] = {"name": policy}
    if route:
        body["trafficRouting"] = {"gatewayAPI": {"httpRoute": route}}
    body.update(spec)
    return {"apiVersion": API, "kind": "Release", "metadata": {"name": name}, "spec": body}


def metric(**fields: Any) -> dict[str, Any]:
    return {"name": "error-rate", "query": ERROR_RATE, "successCondition": "result < 0.05",
            "minSamples": {"query": SAMPLES, "atLeast": 1}, **fields}


def policy(name: str, prometheus: str, steps: list[dict[str, Any]] | None = None,
           metrics: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    analysis: dict[str, Any] = {"interval": "2s", "count": 100,
                                "prometheus": {"address": prometheus, "timeout": "2s"},
                                "metrics": metrics if metrics is not None else [metric()]}
    analysis.update(spec.pop("analysis", {}))
    strategy = spec.pop("strategy", {"canary": {"steps": steps if steps is not None else
                                                [{"setWeight": 20}, {"analysis": {}}, {"setWeight": 100}]}})
    return {"apiVersion": API, "kind": "RolloutPolicy", "metadata": {"name": name},
            "spec": {"strategy": strategy, "analysis": analysis, "progressDeadline": "10m", **spec}}


def secret(name: str, **data: bytes) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "labels": {"sluice.dev/analysis-credential": "true"}},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}


def http_route(name: str, *services: str) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": name},
            "spec": {"parentRefs": [{"name": "shop-gateway"}],
                     "rules": [{"backendRefs": [{"name": s, "port": 80} for s in services]}]}}


def set_path(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of body with the dotted path set (list indexes as numbers); `DELETE` removes it."""
    body = copy.deepcopy(body)
    parts = path.split(".")
    node: Any = body
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    last: Any = int(parts[-1]) if isinstance(node, list) else parts[-1]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return body


DELETE = object()


# --- the classes ---------------------------------------------------------------------------------

# (title, path in the Release, value, word the refusal names)
RELEASE_SCHEMA: list[tuple[str, str, Any, str]] = [
    ("no version", "spec.version", DELETE, "spec.version"),
    ("version 'latest'", "spec.version", "latest", "spec.version"),
    ("version '1.0'", "spec.version", "1.0", "spec.version"),
    ("version with a leading zero", "spec.version", "01.0.0", "spec.version"),
    ("version with an empty pre-release", "spec.version", "1.0.0-", "spec.version"),
    ("version with an empty build", "spec.version", "1.0.0+", "spec.version"),
    ("empty version", "spec.version", "", "spec.version"),
    ("version with a leading space", "spec.version", " 1.0.0", "spec.version"),
    ("version with a trailing newline", "spec.version", "1.0.0\n", "spec.version"),
    ("version of 200 characters", "spec.version", "1.0.0-" + "a" * 194, "spec.version"),
    ("version as a number", "spec.version", 1, "spec.version"),
    ("version with a space inside", "spec.version", "1.0.0-rc 1", "spec.version"),
    ("version with a slash", "spec.version", "1.0.0-rc/1", "spec.version"),
    ("replicas -1", "spec.replicas", -1, "spec.replicas"),
    ("replicas 10001", "spec.replicas", 10001, "spec.replicas"),
    ("replicas as a string", "spec.replicas", "3", "spec.replicas"),
    ("replicas 1.5", "spec.replicas", 1.5, "spec.replicas"),
    ("no template", "spec.template", DELETE, "spec.template"),
    ("template a string", "spec.template", "nginx", "spec.template"),
    ("template without spec", "spec.template.spec", DELETE, "spec.template.spec"),
    ("no containers", "spec.template.spec.containers", [], "spec.template.spec.containers"),
    ("containers missing", "spec.template.spec.containers", DELETE, "spec.template.spec.containers"),
    ("container name Bad_Name", "spec.template.spec.containers.0.name", "Bad_Name", "name"),
    ("container name of 64 characters", "spec.template.spec.containers.0.name", "a" * 64, "name"),
    ("container without image", "spec.template.spec.containers.0.image", DELETE, "image"),
    ("container image empty", "spec.template.spec.containers.0.image", "", "image"),
    ("containerPort 70000", "spec.template.spec.containers.0.ports", [{"containerPort": 70000}], "containerPort"),
    ("containerPort 0", "spec.template.spec.containers.0.ports", [{"containerPort": 0}], "containerPort"),
    ("containerPort as a string", "spec.template.spec.containers.0.ports", [{"containerPort": "80"}],
     "containerPort"),
    ("service port 0", "spec.service", {"port": 0}, "spec.service.port"),
    ("service port 70000", "spec.service", {"port": 70000}, "spec.service.port"),
    ("service port as a string", "spec.service", {"port": "http"}, "spec.service.port"),
    ("targetPort 70000", "spec.service", {"port": 80, "targetPort": 70000}, "targetPort"),
    ("targetPort 0", "spec.service", {"port": 80, "targetPort": 0}, "targetPort"),
    ("targetPort -1", "spec.service", {"port": 80, "targetPort": -1}, "targetPort"),
    ("targetPort name Bad_Port", "spec.service", {"port": 80, "targetPort": "Bad_Port"}, "targetPort"),
    ("targetPort name with '--'", "spec.service", {"port": 80, "targetPort": "a--b"}, "targetPort"),
    ("targetPort name of 16 characters", "spec.service", {"port": 80, "targetPort": "abcdefghijklmnop"},
     "targetPort"),
    ("targetPort name of digits only", "spec.service", {"port": 80, "targetPort": "8080"}, "targetPort"),
    ("unknown field in service", "spec.service", {"port": 80, "nodePort": 30000}, "nodePort"),
    ("policyRef without a name", "spec.policyRef", {}, "spec.policyRef.name"),
    ("policyRef with an empty name", "spec.policyRef", {"name": ""}, "spec.policyRef.name"),
    ("gatewayAPI without httpRoute", "spec.trafficRouting", {"gatewayAPI": {}}, "httpRoute"),
    ("empty httpRoute", "spec.trafficRouting", {"gatewayAPI": {"httpRoute": ""}}, "httpRoute"),
    ("unknown traffic router", "spec.trafficRouting", {"istio": {"virtualService": "x"}}, "istio"),
    ("analysisArgs value a number", "spec.analysisArgs", {"service": 1}, "analysisArgs"),
    ("analysisArgs a list", "spec.analysisArgs", ["service"], "analysisArgs"),
    ("unknown field in spec", "spec.strategy", {"canary": {}}, "strategy"),
    ("spec a string", "spec", "release", "spec"),
]

POLICY_SCHEMA: list[tuple[str, str, Any, str]] = [
    ("setWeight 150", "spec.strategy.canary.steps.0", {"setWeight": 150}, "setWeight"),
    ("setWeight -1", "spec.strategy.canary.steps.0", {"setWeight": -1}, "setWeight"),
    ("setWeight as a string", "spec.strategy.canary.steps.0", {"setWeight": "10"}, "setWeight"),
    ("setWeight 10.5", "spec.strategy.canary.steps.0", {"setWeight": 10.5}, "setWeight"),
    ("no steps", "spec.strategy.canary.steps", [], "steps"),
    ("101 steps", "spec.strategy.canary.steps", [{"setWeight": 1}] * 101, "steps"),
    ("steps missing", "spec.strategy.canary", {}, "steps"),
    ("unknown strategy", "spec.strategy", {"linear": {}}, "linear"),
    ("no strategy", "spec.strategy", DELETE, "spec.strategy"),
    ("unknown step action", "spec.strategy.canary.steps.0", {"setWeight": 10, "experiment": {}}, "experiment"),
    ("pause duration '2 minutes'", "spec.strategy.canary.steps.1", {"pause": {"duration": "2 minutes"}},
     "duration"),
    ("pause duration -1s", "spec.strategy.canary.steps.1", {"pause": {"duration": "-1s"}}, "duration"),
    ("pause duration 1.5.5s", "spec.strategy.canary.steps.1", {"pause": {"duration": "1.5.5s"}}, "duration"),
    ("pause duration empty", "spec.strategy.canary.steps.1", {"pause": {"duration": ""}}, "duration"),
    ("pause duration a number", "spec.strategy.canary.steps.1", {"pause": {"duration": 60}}, "duration"),
    ("count 0", "spec.analysis.count", 0, "count"),
    ("count 101", "spec.analysis.count", 101, "count"),
    ("count as a string", "spec.analysis.count", "3", "count"),
    ("metric name Error_Rate", "spec.analysis.metrics.0.name", "Error_Rate", "name"),
    ("metric name empty", "spec.analysis.metrics.0.name", "", "name"),
    ("noData maybe", "spec.analysis.metrics.0.noData", "maybe", "noData"),
    ("failureLimit -1", "spec.analysis.metrics.0.failureLimit", -1, "failureLimit"),
    ("consecutiveErrorLimit 0", "spec.analysis.metrics.0.consecutiveErrorLimit", 0, "consecutiveErrorLimit"),
    ("minSamples atLeast -1", "spec.analysis.metrics.0.minSamples.atLeast", -1, "atLeast"),
    ("minSamples without query", "spec.analysis.metrics.0.minSamples", {"atLeast": 1}, "query"),
    ("query of 100 KB", "spec.analysis.metrics.0.query", "sum(up)" + " " * 100_000, "query"),
    ("minSamples query of 100 KB", "spec.analysis.metrics.0.minSamples.query", "sum(up)" + " " * 100_000,
     "query"),
    ("successCondition of 5000 characters", "spec.analysis.metrics.0.successCondition",
     "result < 1.0" + " " * 5000, "successCondition"),
    ("empty successCondition", "spec.analysis.metrics.0.successCondition", "", "successCondition"),
    ("compare test t-test", "spec.analysis.metrics.0",
     {"name": "latency", "compare": {"query": "up{track='{{track}}'}", "test": "t-test"}}, "test"),
    ("compare maxIncrease 10", "spec.analysis.metrics.0",
     {"name": "latency", "compare": {"query": "up{track='{{track}}'}", "maxIncrease": "10"}}, "maxIncrease"),
    ("compare confidence 1.5", "spec.analysis.metrics.0",
     {"name": "latency", "compare": {"query": "up{track='{{track}}'}", "confidence": 1.5}}, "confidence"),
    ("unknown field in a metric", "spec.analysis.metrics.0.threshold", 0.05, "threshold"),
    ("21 metrics", "spec.analysis.metrics", [metric(name=f"m{i}") for i in range(21)], "metrics"),
    ("onFailure explode", "spec.onFailure", "explode", "onFailure"),
    ("requires namespace Bad_NS", "spec.requires", [{"namespace": "Bad_NS"}], "namespace"),
    ("timeout 'soon'", "spec.analysis.prometheus.timeout", "soon", "timeout"),
    ("bearerTokenSecretRef without key", "spec.analysis.prometheus.bearerTokenSecretRef", {"name": "t"}, "key"),
    ("caSecretRef with an empty name", "spec.analysis.prometheus.tls", {"caSecretRef": {"name": "", "key": "ca"}},
     "name"),
    ("insecureSkipVerify 'yes'", "spec.analysis.prometheus.tls", {"insecureSkipVerify": "yes"},
     "insecureSkipVerify"),
    ("blueGreen scaleDownDelay forever", "spec.strategy", {"blueGreen": {"scaleDownDelay": "forever"}},
     "scaleDownDelay"),
    ("blueGreen autoPromotion 'true'", "spec.strategy", {"blueGreen": {"autoPromotion": "true"}}, "autoPromotion"),
    ("rolling maxSurge '25'", "spec.strategy", {"rolling": {"maxSurge": "25"}}, "maxSurge"),
    ("rolling maxSurge -1", "spec.strategy", {"rolling": {"maxSurge": -1}}, "maxSurge"),
    ("rolling maxSurge '25 %'", "spec.strategy", {"rolling": {"maxSurge": "25 %"}}, "maxSurge"),
    ("rolling maxUnavailable 150%", "spec.strategy", {"rolling": {"maxUnavailable": "150%"}}, "maxUnavailable"),
    ("rolling maxUnavailable -1", "spec.strategy", {"rolling": {"maxUnavailable": -1}}, "maxUnavailable"),
    ("backgroundAnalysis startingStep -1", "spec.strategy.canary.backgroundAnalysis", {"startingStep": -1},
     "startingStep"),
]

ADDRESSES: list[tuple[str, str]] = [
    ("unclosed IPv6 bracket", "http://[::1"),
    ("port 99999", "http://127.0.0.1:99999"),
    ("port 0", "http://127.0.0.1:0"),
    ("trailing newline", "http://127.0.0.1:9090\n"),
    ("leading space", " http://127.0.0.1:9090"),
    ("space in the host", "http://prom etheus:9090"),
    ("scheme ftp", "ftp://127.0.0.1:9090"),
    ("no scheme", "127.0.0.1:9090"),
    ("no host", "http://"),
    ("a query string", "http://127.0.0.1:9090/?q=up"),
    ("a fragment", "http://127.0.0.1:9090/#x"),
    ("port not a number", "http://127.0.0.1:port"),
    ("javascript scheme", "javascript:alert(1)"),
    ("2100 characters", "http://" + "a" * 2100 + ":9090"),
    ("a tab", "http://127.0.0.1:9090/\tx"),
]

# (title, the duration field's path in the policy, value)
DURATIONS: list[tuple[str, str, str]] = [
    ("pause 9999999999999999999999999999999h", "spec.strategy.canary.steps.1.pause.duration",
     "9999999999999999999999999999999h"),
    ("pause 1h repeated 40 times", "spec.strategy.canary.steps.1.pause.duration", "1h" * 40),
    ("pause 1h repeated 200 times", "spec.strategy.canary.steps.1.pause.duration", "1h" * 200),
    ("pause 169h", "spec.strategy.canary.steps.1.pause.duration", "169h"),
    ("pause 100000m", "spec.strategy.canary.steps.1.pause.duration", "100000m"),
    ("pause 1e9s", "spec.strategy.canary.steps.1.pause.duration", "1e9s"),
    ("interval 9999999999999999999h", "spec.analysis.interval", "9999999999999999999h"),
    ("interval 1h1h1h1h1h1h1h1h", "spec.analysis.interval", "1h1h1h1h1h1h1h1h"),
    ("interval 2h", "spec.analysis.interval", "2h"),
    ("interval 0s", "spec.analysis.interval", "0s"),
    ("interval 100ms", "spec.analysis.interval", "100ms"),
    ("timeout 2m", "spec.analysis.prometheus.timeout", "2m"),
    ("timeout 99999999999999h", "spec.analysis.prometheus.timeout", "99999999999999h"),
    ("progressDeadline 25h", "spec.progressDeadline", "25h"),
    ("progressDeadline 9999999999999999h", "spec.progressDeadline", "9999999999999999h"),
    ("progressDeadline 1h repeated 30 times", "spec.progressDeadline", "1h" * 30),
    ("blueGreen scaleDownDelay 48h", "spec.strategy", "48h"),
    ("blueGreen autoPromotionDelay 1000h", "spec.strategy", "1000h"),
]

# (title, policy changes (path, value), the word the CEL rule's message carries)
CEL_RULES: list[tuple[str, list[tuple[str, Any]], str]] = [
    ("step with setWeight and pause", [("spec.strategy.canary.steps.0", {"setWeight": 10, "pause": {}})],
     "exactly one of setWeight"),
    ("empty step", [("spec.strategy.canary.steps.0", {})], "exactly one of setWeight"),
    ("step with all three actions", [("spec.strategy.canary.steps.0", {"setWeight": 1, "pause": {},
                                                                        "analysis": {}})], "exactly one"),
    ("two strategies", [("spec.strategy.rolling", {})], "exactly one strategy"),
    ("empty strategy", [("spec.strategy", {})], "exactly one strategy"),
    ("unknown metric error-rat", [("spec.strategy.canary.steps.1", {"analysis": {"metrics": ["error-rat"]}})],
     "does not define"),
    ("unknown metric among known", [("spec.strategy.canary.steps.1",
                                     {"analysis": {"metrics": ["error-rate", "latency"]}})], "does not define"),
    ("analysis step naming no metric", [("spec.strategy.canary.steps.1", {"analysis": {"metrics": []}})],
     "metrics"),
    ("analysis step without metrics", [("spec.analysis.metrics", [])], "needs spec.analysis.metrics"),
    ("two metrics of one name", [("spec.analysis.metrics", [metric(), metric()])], "unique"),
    ("metric with neither query nor compare", [("spec.analysis.metrics", [{"name": "m",
                                                                           "successCondition": "result > 0"}])],
     "exactly one of query, compare, web or job"),
    ("metric with query and compare", [("spec.analysis.metrics.0.compare", {"query": "up"})],
     "exactly one of query, compare, web or job"),
    ("query without a condition", [("spec.analysis.metrics", [{"name": "m", "query": "up"}])],
     "successCondition or failureCondition"),
    ("interval above progressDeadline", [("spec.analysis.interval", "5m"), ("spec.progressDeadline", "1m")],
     "progressDeadline"),
    ("blue-green pre-promotion analysis without metrics",
     [("spec.strategy", {"blueGreen": {"prePromotionAnalysis": True}}), ("spec.analysis.metrics", [])],
     "needs spec.analysis.metrics"),
    ("rolling postAnalysis without metrics",
     [("spec.strategy", {"rolling": {"postAnalysis": True}}), ("spec.analysis.metrics", [])],
     "needs spec.analysis.metrics"),
    ("rolling with maxSurge and maxUnavailable 0", [("spec.strategy", {"rolling": {"maxSurge": 0,
                                                                                  "maxUnavailable": 0}})],
     "cannot both be 0"),
    ("rolling with 0% and 0", [("spec.strategy", {"rolling": {"maxSurge": "0%", "maxUnavailable": 0}})],
     "cannot both be 0"),
]

# Conditions the schema accepts (a string) that CEL refuses, or that do not type-check against
# result: double. (title, condition)
INVALID_CEL: list[tuple[str, str]] = [
    ("has(result): not a field selection", "has(result)"),
    ("unfinished comparison", "result <"),
    ("unbalanced parenthesis", "(result < 0.05"),
    ("dangling &&", "result < 0.05 &&"),
    ("undeclared variable", "value < 0.05"),
    ("unknown function", "sqrt(result) < 1.0"),
    ("Python syntax", "result < 0.05 and result >= 0"),
    ("Python call", "__import__('os').system('true')"),
    ("assignment", "result = 0.0"),
    ("a statement", "import os"),
    ("size() of a double", "size(result) > 0"),
    ("string plus int", "'a' + 1 == 'a1'"),
    ("a field of a double", "result.value < 0.05"),
    ("ternary without else", "result < 0.05 ? true"),
    ("regex on a double", "result.matches('0.*')"),
]
MISTYPED_CEL: list[tuple[str, str]] = [
    ("result == 0 (double vs int)", "result == 0"),
    ("result != 0 (double vs int)", "result != 0"),
    ("result in [0, 1]", "result in [0, 1]"),
    ("result < 1u (double vs uint)", "result < 1u"),
    ("not a boolean: result", "result"),
    ("not a boolean: a number", "1.0 + result"),
    ("not a boolean: a string", "'yes'"),
    ("or with a string", "result > 0.0 || 'a'"),
    ("result == null", "result == null"),
]
DEEP_CEL: list[tuple[str, str]] = [
    ("300 nested parentheses", "(" * 300 + "result < 0.05" + ")" * 300),
    ("400 negations", "!" * 400 + "true"),
    ("nested lists 300 deep", "[" * 300 + "result" + "]" * 300 + " == []"),
    ("a chain of 60 &&", " && ".join(["result < 1.0"] * 60)),
    ("60 nested ternaries", "true ? " * 60 + "result < 0.05" + " : false" * 60),
    ("unary minus 500 times", "-" * 500 + "result < 0.05"),
]

# Pod templates the Release schema lets through but the API server refuses on a Deployment.
# (title, path under the Release's spec.template, value, word the API server names)
REFUSED_TEMPLATES: list[tuple[str, str, Any, str]] = [
    # The API server's own sentence for a quantity it cannot decode names no field.
    ("cpu: lots", "spec.containers.0.resources", {"requests": {"cpu": "lots"}}, "quantities must match"),
    ("memory: -1Gi", "spec.containers.0.resources", {"limits": {"memory": "-1Gi"}}, "memory"),
    ("limits below requests", "spec.containers.0.resources", {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}},
     "cpu"),
    ("unknown container field", "spec.containers.0.bogus", "x", "bogus"),
    ("unknown pod field", "spec.bogusField", {"a": 1}, "bogusField"),
    ("unknown template field", "bogus", True, "bogus"),
    ("imagePullPolicy Sometimes", "spec.containers.0.imagePullPolicy", "Sometimes", "imagePullPolicy"),
    ("restartPolicy Never", "spec.restartPolicy", "Never", "restartPolicy"),
    ("dnsPolicy Weird", "spec.dnsPolicy", "Weird", "dnsPolicy"),
    ("label value with a space", "metadata.labels", {"team": "a b"}, "labels"),
    ("label key with a leading dash", "metadata.labels", {"-team": "a"}, "labels"),
    ("annotation key with a space", "metadata.annotations", {"bad key": "a"}, "annotations"),
    ("volumeMount of no volume", "spec.containers.0.volumeMounts", [{"name": "data", "mountPath": "/data"}],
     "volumeMounts"),
    ("two containers of one name", "spec.containers", [{"name": "app", "image": "a"}, {"name": "app", "image": "b"}],
     "name"),
    ("hostPort 70000", "spec.containers.0.ports", [{"containerPort": 80, "hostPort": 70000}], "hostPort"),
    ("port protocol ICMP", "spec.containers.0.ports", [{"containerPort": 80, "protocol": "ICMP"}], "protocol"),
    ("port name Bad_Port", "spec.containers.0.ports", [{"containerPort": 80, "name": "Bad_Port"}], "name"),
    ("terminationGracePeriodSeconds a string", "spec.terminationGracePeriodSeconds", "soon",
     "terminationGracePeriodSeconds"),
    ("runAsUser a string", "spec.securityContext", {"runAsUser": "root"}, "runAsUser"),
    ("probe without a handler", "spec.containers.0.readinessProbe", {"periodSeconds": 2}, "readinessProbe"),
    ("env var without a name", "spec.containers.0.env", [{"value": "x"}], "env"),
    ("nodeSelector value with a slash", "spec.nodeSelector", {"zone": "a/b"}, "nodeSelector"),
    ("toleration operator Maybe", "spec.tolerations", [{"key": "k", "operator": "Maybe"}], "operator"),
    ("priority a string", "spec.priority", "high", "priority"),
    ("container command a string", "spec.containers.0.command", "sleep 1", "command"),
]

# Valid semantic versions that must ship (the label carries a label-safe form).
ODD_VERSIONS: list[tuple[str, str]] = [
    ("build metadata", "1.0.0-rc.1+build.5"),
    ("build metadata only", "1.0.0+build"),
    ("timestamp build", "1.0.0+20130313144700"),
    ("leading v", "v1.2.3"),
    ("huge numbers", "999999999.999999999.999999999"),
    ("pre-release with dots", "1.0.0-alpha.beta.1"),
    ("pre-release '-'", "1.0.0--"),
    ("build '-'", "1.0.0+-"),
    ("build ending in '-'", "1.0.0+build.x-"),
    ("pre-release of mixed case", "1.0.0-0A.is.legal"),
    ("exactly 63 characters", "1.0.0-" + "a" * 57),
    ("64 characters", "1.0.0-" + "a" * 58),
    ("100 characters with build", "1.0.0-rc.1+" + "b" * 89),
    ("128 characters", "1.0.0-" + "x" * 122),
    ("pre-release and build of dashes", "1.0.0-x-y-z.--+a-b"),
]


# --- the generator -------------------------------------------------------------------------------

def cases(prometheus: str) -> list[Case]:
    """Every case, numbered in a stable order (the numbers name the objects)."""
    made: list[Case] = []

    def add(cls: str, title: str, build: Any, expect: tuple[str, ...], hint: str = "",
            releases: tuple[str, ...] = (), **fields: Any) -> Case:
        """One case; "{n}" in hint and releases stands for the case's name."""
        name = f"h{len(made):03d}"
        made.append(Case(name=name, cls=cls, title=title, manifests=build(name), expect=expect,
                         hint=hint.replace("{n}", name), releases=tuple(r.replace("{n}", name) for r in releases),
                         **fields))
        return made[-1]

    def policy_with(changes: list[tuple[str, Any]]) -> Any:
        def build(name: str) -> list[dict[str, Any]]:
            body = policy(name, prometheus)
            for path, value in changes:
                body = set_path(body, path, value)
            return [body]
        return build

    for title, path, value, hint in RELEASE_SCHEMA:
        add("schema: Release", title, lambda n, p=path, v=value: [set_path(release(n), p, v)], (REFUSED,), hint)
    for title, path, value, hint in POLICY_SCHEMA:
        add("schema: RolloutPolicy", title, policy_with([(path, value)]), (REFUSED,), hint)
    for title, address in ADDRESSES:
        add("bad Prometheus address", title, policy_with([("spec.analysis.prometheus.address", address)]),
            (REFUSED,), "address")
    for title, path, value in DURATIONS:
        changes: list[tuple[str, Any]]
        if path.endswith(".pause.duration"):
            changes = [("spec.strategy.canary.steps.1", {"pause": {"duration": value}})]
            field = "duration"
        elif path == "spec.strategy":
            field = "scaleDownDelay" if "scaleDown" in title else "autoPromotionDelay"
            changes = [(path, {"blueGreen": {field: value}})]
        else:
            changes = [(path, value)]
            field = path.rsplit(".", 1)[-1]
        add("bad duration", title, policy_with(changes), (REFUSED,), field)
    for title, rule_changes, hint in CEL_RULES:
        add("CEL rule", title, policy_with(rule_changes), (REFUSED,), hint)

    def stalled_by_policy(cls: str, title: str, changes: list[tuple[str, Any]], hint: str) -> None:
        def build(name: str) -> list[dict[str, Any]]:
            return [*policy_with(changes)(name), release(name, policy=name)]
        add(cls, title, build, (REFUSED, STALLED), hint)

    for title, condition in INVALID_CEL:
        stalled_by_policy("invalid CEL", title, [("spec.analysis.metrics.0.successCondition", condition)],
                          "successCondition")
    for title, condition in MISTYPED_CEL:
        stalled_by_policy("CEL that mistypes", title, [("spec.analysis.metrics.0.successCondition", condition)],
                          "successCondition")
        if condition == "result < 1u":  # cel-spec compares numbers across types: valid, and it may ship
            made[-1].expect = (REFUSED, STALLED, SHIPS)
    for title, condition in DEEP_CEL:  # valid or not, never a crash: it may also be accepted and ship
        stalled_by_policy("deeply nested CEL", title, [("spec.analysis.metrics.0.successCondition", condition)],
                          "successCondition")
        made[-1].expect = (REFUSED, STALLED, SHIPS)
    stalled_by_policy("invalid CEL", "invalid failureCondition",
                      [("spec.analysis.metrics.0.failureCondition", "has(result)")], "failureCondition")
    stalled_by_policy("invalid CEL", "invalid abort-style condition on a second metric",
                      [("spec.analysis.metrics", [metric(), metric(name="latency", successCondition="result <")])],
                      "successCondition")
    stalled_by_policy("bad query template", "unknown template variable", [("spec.analysis.metrics.0.query",
                                                                            "up{job=\"{{nope}}\"}")], "nope")
    stalled_by_policy("bad query template", "unknown variable in minSamples",
                      [("spec.analysis.metrics.0.minSamples.query", "sum(up{x=\"{{missing}}\"})")], "missing")

    for title, path, value, hint in REFUSED_TEMPLATES:
        add("pod template the API server refuses", title,
            lambda n, p=path, v=value: [set_path(release(n), "spec.template." + p, v)], (REFUSED, STALLED), hint)

    for title, version in ODD_VERSIONS:
        add("valid but odd version", title, lambda n, v=version: [release(n, v)], (SHIPS,), version=version)
    add("valid but odd version", "Release name of 55 characters",
        lambda n: [release(n + "-" + "x" * 50)], (SHIPS,), releases=("{n}-" + "x" * 50,))
    add("schema: Release", "Release name of 56 characters",
        lambda n: [release(n + "-" + "x" * 51)], (REFUSED,), "55 characters")

    # References to things that do not exist.
    add("missing reference", "missing RolloutPolicy", lambda n: [release(n, policy=n + "-nope")], (STALLED,),
        "{n}-nope")
    add("missing reference", "missing HTTPRoute", lambda n: [release(n, route=n + "-nope")], (STALLED,), "{n}-nope")
    add("missing reference", "HTTPRoute without the Release's Service",
        lambda n: [http_route(n + "-route", "someone-else"), release(n, route=n + "-route")], (STALLED,),
        "{n}-route")
    add("missing reference", "missing policy and missing route",
        lambda n: [release(n, policy=n + "-nope", route=n + "-nope")], (STALLED,), "{n}-nope")
    add("missing reference", "policy in another namespace only (policyRef is namespaced)",
        lambda n: [release(n, policy="fast")], (STALLED,), "fast")

    # Names that collide with objects Sluice would own.
    def foreign(kind: str, suffix: str) -> Any:
        def build(name: str) -> list[dict[str, Any]]:
            if kind == "Deployment":
                other: dict[str, Any] = {
                    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name + suffix},
                    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name + "-foreign"}},
                             "template": {"metadata": {"labels": {"app": name + "-foreign"}},
                                          "spec": {"containers": [{"name": "x", "image": "foreign"}]}}}}
            else:
                other = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name + suffix},
                         "spec": {"selector": {"app": name + "-foreign"}, "ports": [{"port": 80}]}}
            return [other, release(name)]
        return build

    for kind, suffix in [("Deployment", ""), ("Service", ""), ("Deployment", "-canary"), ("Service", "-canary")]:
        add("name collision", f"a foreign {kind} named <name>{suffix}", foreign(kind, suffix), (STALLED,),
            "{n}" + suffix)
        if (kind, suffix) == ("Deployment", "-canary"):
            # A first version runs no canary: the foreign Deployment is not in its way (and is not touched);
            # the first rollout of a new version would stall on it.
            made[-1].expect = (SHIPS,)
        if (kind, suffix) == ("Service", "-canary"):
            # Replica-ratio routing has no <name>-canary Service: the foreign one is never in its way.
            made[-1].expect = (SHIPS,)

    def spoofed(name: str) -> list[dict[str, Any]]:
        labels = {"app.kubernetes.io/name": name, "sluice.dev/track": "stable", "sluice.dev/release": name,
                  "app.kubernetes.io/managed-by": "sluice"}
        return [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
                 "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                          "template": {"metadata": {"labels": labels},
                                       "spec": {"containers": [{"name": "x", "image": "spoof"}]}}}},
                release(name)]
    add("name collision", "a Deployment with Sluice's labels but no owner", spoofed, (STALLED,), "{n}")
    # Releases x and x-canary share no object until x rolls out (replica-ratio routing has no Service
    # x-canary); then x stalls on Deployment x-canary (tests/e2e/test_safety.py tells that story).
    add("name collision", "Releases x and x-canary", lambda n: [release(n), release(n + "-canary")], (SHIPS,),
        "", releases=("{n}", "{n}-canary"))
    add("name collision", "Releases x and x-canary, the second first",
        lambda n: [release(n + "-canary"), release(n)], (SHIPS,), "", releases=("{n}", "{n}-canary"))
    add("name collision", "Releases x, x-canary and x-canary-canary",
        lambda n: [release(n + "-canary"), release(n + "-canary-canary"), release(n)], (SHIPS,),
        "", releases=("{n}", "{n}-canary", "{n}-canary-canary"))

    # Input broken mid-rollout: from a stable 1.0.0, 1.1.0 runs at 20% with analysis, then this.
    def midway(title: str, build: Any, then: Any = None, delete: Any = None, expect: tuple[str, ...] = (STALLED,),
               hint: str = "", route: bool = False, policy_changes: list[tuple[str, Any]] | None = None) -> None:
        def manifests(name: str) -> list[dict[str, Any]]:
            body = policy(name, prometheus)
            for path, value in policy_changes or []:
                body = set_path(body, path, value)
            return [*(build(name) if build else []), *([http_route(name + "-route", name, name + "-canary")]
                                                         if route else []),
                    body, release(name, "1.1.0", policy=name, replicas=4, route=name + "-route" if route else None)]
        case = add("broken mid-rollout", title, manifests, expect, hint, stable="1.0.0", version="1.1.0")
        case.then = then(case.name) if then else []
        case.delete = delete(case.name) if delete else []

    def midway_secret(title: str, data: dict[str, bytes] | None, then_data: dict[str, bytes] | None = None,
                      delete_it: bool = False, ca: bool = False, hint: str = "{n}-token") -> None:
        ref = "spec.analysis.prometheus.tls" if ca else "spec.analysis.prometheus.bearerTokenSecretRef"
        key = "ca.crt" if ca else "token"
        start = len(made)
        name = f"h{start:03d}"
        value = {"caSecretRef": {"name": name + "-token", "key": key}} if ca else {"name": name + "-token", "key": key}
        changes: list[tuple[str, Any]] = [(ref, value)]
        if ca:
            changes.append(("spec.analysis.prometheus.address", prometheus.replace("http://", "https://")))
        midway(title, (lambda n: [secret(n + "-token", **data)]) if data is not None else None,
               then=(lambda n: [secret(n + "-token", **then_data)]) if then_data is not None else None,
               delete=(lambda n: [("secret", n + "-token")]) if delete_it else None,
               policy_changes=changes, hint=hint)

    midway_secret("bearer-token Secret deleted", {"token": b"t0ken"}, delete_it=True)
    midway_secret("bearer-token Secret loses its key", {"token": b"t0ken"}, then_data={"other": b"x"})
    midway_secret("bearer token becomes non-UTF-8", {"token": b"t0ken"}, then_data={"token": b"\xff\xfe\x00bad"})
    midway_secret("bearer token gains a newline inside", {"token": b"t0ken"}, then_data={"token": b"a\nb: c"})
    midway_secret("bearer-token Secret missing from the start", None)
    midway_secret("non-UTF-8 bearer token from the start", {"token": b"\x80\x81\xfe\xff"})
    midway_secret("bearer token with a CR LF inside", {"token": b"abc\r\nX-Injected: 1"})
    midway_secret("bearer-token Secret without the key", {"other": b"x"})
    midway_secret("garbage CA Secret", {"ca.crt": b"this is not a certificate"}, ca=True)
    midway_secret("non-UTF-8 CA Secret", {"ca.crt": b"\xff\xd8\xff\xe0garbage"}, ca=True)
    midway_secret("CA that is a truncated PEM", {"ca.crt": b"-----BEGIN CERTIFICATE-----\nMIIB\n"}, ca=True)
    midway("HTTPRoute deleted", None, delete=lambda n: [("httproute", n + "-route")], route=True, hint="{n}-route")
    # The canary backendRef is Sluice's to write: it is put back, as drift is, and the rollout goes on.
    midway("HTTPRoute loses the canary backendRef", None,
           then=lambda n: [http_route(n + "-route", n)], route=True, expect=(CONTINUES,))
    midway("HTTPRoute loses every backendRef of the Release", None,
           then=lambda n: [http_route(n + "-route", "someone-else")], route=True, hint="{n}-route")
    midway("bad PromQL from the start (HTTP 400)", None, policy_changes=[
        ("spec.analysis.metrics.0.query", "sum(rate(http_requests_total[1m]")], hint="query")
    midway("bad PromQL in minSamples (HTTP 400)", None, policy_changes=[
        ("spec.analysis.metrics.0.minSamples.query", "sum(increase(")], hint="query")
    # A live policy edit does not change a running rollout (it runs against its snapshot).
    midway("policy deleted mid-rollout", None, delete=lambda n: [("rolloutpolicy", n)], expect=(CONTINUES,))
    midway("policy edited to bad PromQL mid-rollout", None,
           then=lambda n: [set_path(policy(n, prometheus), "spec.analysis.metrics.0.query", "sum(")],
           expect=(CONTINUES,))
    midway("policy edited to 1 step mid-rollout", None,
           then=lambda n: [policy(n, prometheus, steps=[{"setWeight": 100}])], expect=(CONTINUES,))
    return made


def by_class(all_cases: list[Case]) -> Iterator[tuple[str, list[Case]]]:
    classes: dict[str, list[Case]] = {}
    for case in all_cases:
        classes.setdefault(case.cls, []).append(case)
    yield from classes.items()

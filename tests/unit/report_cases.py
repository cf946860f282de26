"""The inputs of the report's golden tests, made by the real planner: each case drives a World
(tests/unit/world.py) through a rollout, so status is exactly what the operator writes (hook
runs included: the World runs hook Jobs), and keeps the events each pass posted, with their times.

    PYTHONPATH=operator python -m tests.unit.report_cases   # writes tests/unit/golden/<case>.input.yaml

The inputs are kept as files, not rebuilt on each test run, so that a change of the planner's
wording does not silently change the goldens; and a golden from a real cluster is just another
<case>.input.yaml (release, events, policy, before, now, cluster).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from sluice.api.models import Phase, ReleaseSpec, RolloutPolicySpec, Verdict
from sluice.kube import objects
from sluice.plan.types import Observed, Result, iso
from tests.unit.world import T0, World

GOLDEN = Path(__file__).parent / "golden"
Body = dict[str, Any]

PROMETHEUS = {"address": "http://prometheus.monitoring:9090"}
METRICS = [
    {"name": "error-rate", "successCondition": "result < 0.05", "failureLimit": 0,
     "query": 'sum(rate(http_requests_total{app="{{release}}",version="{{version}}",code=~"5.."}[1m])) / '
              'sum(rate(http_requests_total{app="{{release}}",version="{{version}}"}[1m]))'},
    {"name": "latency-p99", "successCondition": "result < 0.3",
     "query": 'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket'
              '{app="{{release}}",version="{{version}}"}[1m])))'},
]
LINKS = [{"name": "runbook", "url": "https://runbooks.example.com/shop/checkout"},
         {"name": "dashboard", "url": "https://grafana.example.com/d/checkout"}]


class Shop(World):
    """A World whose template hashes are the operator's own."""

    @property
    def digest(self) -> str:
        return objects.template_hash(self.spec)

    def observed(self) -> Observed:
        """As World's, with a policy hash that is the same in every process (the inputs are files)."""
        observed = dataclasses.replace(super().observed(), name="checkout")
        if self.policy is None:
            return observed
        digest = hashlib.sha256(self.policy.model_dump_json().encode()).hexdigest()[:16]
        return dataclasses.replace(observed, policy_hash=digest)


def template(version: str, cpu: str = "500m", config: str = "checkout-config-v7",
             env: list[Body] | None = None) -> Body:
    return {
        "metadata": {"annotations": {"prometheus.io/scrape": "true"}, "labels": {"team": "payments"}},
        "spec": {"containers": [{
            "name": "app", "image": f"registry.example.com/shop/checkout:{version}",
            "ports": [{"name": "http", "containerPort": 8080}],
            "env": [{"name": "LOG_LEVEL", "value": "info"}, *(env or [])],
            "envFrom": [{"configMapRef": {"name": config}}],
            "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": cpu, "memory": "512Mi"}},
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
        }]},
    }


def job(name: str, image: str, *args: str) -> Body:
    return {"name": name, "template": {"spec": {"containers": [{"name": name, "image": image, "args": list(args)}]}}}


MIGRATE = job("migrate", "registry.example.com/shop/checkout-migrate:1.3.0", "migrate", "up")
SMOKE = job("smoke-test", "registry.example.com/shop/smoke:2", "--target", "http://checkout")
RESTORE = job("restore-flags", "registry.example.com/shop/flags:1", "restore", "checkout")


def spec(version: str, body: Body, policy: str | None, route: bool = False, hooks: Body | None = None) -> ReleaseSpec:
    return ReleaseSpec.model_validate({
        "hooks": hooks,
        "version": version, "replicas": 4, "template": body, "service": {"port": 80, "targetPort": "http"},
        "policyRef": {"name": policy} if policy else None,
        "trafficRouting": {"gatewayAPI": {"httpRoute": "checkout"}} if route else None,
        "analysisArgs": {"service": "checkout"},
    })


def policy(name: str, strategy: Body, **extra: Any) -> Body:
    return {"apiVersion": "sluice.dev/v1alpha1", "kind": "RolloutPolicy",
            "metadata": {"name": name, "namespace": "shop", "generation": 3},
            "spec": {"strategy": strategy, "analysis": {"interval": "30s", "count": 2, "prometheus": PROMETHEUS,
                                                        "metrics": METRICS},
                     "progressDeadline": "5m", "links": LINKS, **extra}}


CANARY = {"canary": {"steps": [{"setWeight": 20}, {"analysis": {}}, {"setWeight": 50}, {"pause": {"duration": "2m"}},
                               {"analysis": {}}, {"setWeight": 100}]}}
CANARY_GATED = {"canary": {"steps": [{"setWeight": 10}, {"analysis": {}}, {"setWeight": 50}, {"pause": {}},
                                     {"setWeight": 100}]}}
BLUE_GREEN = {"blueGreen": {"prePromotionAnalysis": True, "postPromotionAnalysis": True, "scaleDownDelay": "1m"}}


def healthy(errors: float = 0.004, latency: float = 0.182) -> list[Result]:
    return [Result("error-rate", Verdict.SUCCESSFUL, errors, f"{errors:g}: result < 0.05"),
            Result("latency-p99", Verdict.SUCCESSFUL, latency, f"{latency:g}: result < 0.3")]


def failing() -> list[Result]:
    return [Result("error-rate", Verdict.FAILED, 0.271027, "0.271027: result < 0.05 does not hold"),
            Result("latency-p99", Verdict.SUCCESSFUL, 0.214, "0.214: result < 0.3")]


@dataclasses.dataclass
class Run:
    """A World, and the core/v1 Events its passes posted, with their times."""

    world: Shop
    events: list[Body] = dataclasses.field(default_factory=list)

    def passes(self, results: Any = None, until: Any = None, tick: float = 5.0, limit: int = 400) -> None:
        for number in range(limit):
            measured = results(number) if callable(results) else results
            plan = self.world.step(measured)
            for event in plan.events:
                stamp = iso(self.world.now)
                self.events.append({"type": event.type, "reason": event.reason, "message": event.message,
                                    "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
                                    "involvedObject": {"kind": "Release", "name": "checkout"}})
            if until is not None and until(self.world):
                return
            self.world.later(tick)
        raise AssertionError(f"did not arrive: {self.world.status.message}")

    def settle(self) -> None:
        """The pass after the last decision, which sees the pods as that decision left them."""
        self.world.later(5)
        self.passes(until=lambda w: True)

    def deploy(self, release: ReleaseSpec) -> None:
        self.world.spec = release
        self.world.generation += 1


def ended(world: World) -> bool:
    return world.phase in (Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED)


def start(strategy: Body | None, name: str | None, route: bool = False) -> Run:
    """1.1.0 and then 1.2.0 shipped under the policy, the day before; then the clock is at T0."""
    parsed = RolloutPolicySpec.model_validate(policy(name or "-", strategy)["spec"]) if strategy else None
    world = Shop(spec=spec("1.1.0", template("1.1.0"), name, route), policy=parsed, gateway=route,
                 now=T0 - timedelta(days=1))
    run = Run(world)
    run.passes(until=lambda w: w.phase == Phase.SUCCEEDED and w.stable.complete(w.digest, 4))
    run.deploy(spec("1.2.0", template("1.2.0"), name, route))
    run.passes(healthy(), until=lambda w: ended(w) or w.phase == Phase.PAUSED)
    if world.phase == Phase.PAUSED:  # a gate: somebody promoted it
        world.request("promote")
        run.passes(healthy(), until=ended)
    run.world.later(20)
    run.passes(until=lambda w: True)  # settled
    run.world.now = T0
    run.events.clear()
    return run


def from_replica_sets(version: str, body: Body) -> Body | None:
    """What `sluice report` reads back from the stable Deployment's ReplicaSet history: the template
    Sluice wrote, as the API server stores it (defaults filled in), cleaned by report.template_in."""
    from sluice.cli import report

    stored = copy.deepcopy(objects.pod_template_of("checkout", version, body, "stable", "5f0c2b7d1e"))
    stored["metadata"]["labels"]["pod-template-hash"] = "7d4b9c6f8"
    stored["spec"].update({"dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                           "securityContext": {}, "terminationGracePeriodSeconds": 30})
    for container in stored["spec"]["containers"]:
        container.update({"imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log",
                          "terminationMessagePolicy": "File"})
        for port in container.get("ports", []):
            port["protocol"] = "TCP"
        container["readinessProbe"].update({"timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1,
                                            "failureThreshold": 3})
        container["readinessProbe"]["httpGet"]["scheme"] = "HTTP"
    replica_set = {"metadata": {"name": "checkout-7d4b9c6f8",
                                "ownerReferences": [{"kind": "Deployment", "name": "checkout", "controller": True}]},
                   "spec": {"template": stored}}
    return report.template_in([replica_set], "checkout", "5f0c2b7d1e")


def release_body(run: Run) -> Body:
    status = run.world.status.model_dump(by_alias=True, exclude_none=True, mode="json")
    return {"apiVersion": "sluice.dev/v1alpha1", "kind": "Release",
            "metadata": {"name": "checkout", "namespace": "shop", "uid": "0b6f3c1e-5d2a-4c8e-9a41-3e7d2f1b8c90",
                         "generation": run.world.generation, "creationTimestamp": "2026-10-02T09:14:00Z"},
            "spec": run.world.spec.model_dump(by_alias=True, exclude_none=True, mode="json"),
            "status": status}


def case(run: Run, policy_body: Body | None, before: Body | None, now: datetime, cluster: str | None = "prod-eu-1",
         events: bool = True) -> Body:
    run.settle()
    return {"now": iso(now), "cluster": cluster, "release": release_body(run),
            "events": run.events if events else [], "policy": policy_body, "before": before}


def canary_succeeded() -> Body:
    run = start(CANARY, "careful-canary", route=True)
    new = template("1.3.0", cpu="1", config="checkout-config-v8", env=[{"name": "FEATURE_X", "value": "on"}])
    run.deploy(spec("1.3.0", new, "careful-canary", route=True,
                    hooks={"preRollout": [MIGRATE], "postPromotion": [SMOKE]}))
    run.passes(lambda n: healthy(0.003 + (n % 3) / 1000, 0.17 + (n % 4) / 100), until=ended, tick=10)
    before = from_replica_sets("1.2.0", template("1.2.0"))
    return case(run, policy("careful-canary", CANARY), before, run.world.now + timedelta(minutes=30))


def canary_rolled_back() -> Body:
    run = start(CANARY, "careful-canary")
    new = template("1.3.0", env=[{"name": "FEATURE_X", "value": "on"}])
    run.deploy(spec("1.3.0", new, "careful-canary", hooks={"preRollout": [MIGRATE], "postRollback": [RESTORE]}))
    run.passes(failing(), until=ended, tick=10)
    return case(run, policy("careful-canary", CANARY), None, run.world.now + timedelta(minutes=12))


def bluegreen_succeeded() -> Body:
    run = start(BLUE_GREEN, "blue-green")
    run.deploy(spec("1.3.0", template("1.3.0"), "blue-green"))
    run.passes(lambda n: healthy(0.002, 0.15 + (n % 3) / 100), until=ended, tick=10)
    before = {"metadata": {"annotations": {"prometheus.io/scrape": "true"}, "labels": {"team": "payments"}},
              "spec": template("1.2.0")["spec"]}
    # Two hours later: the API server has dropped the events; status alone tells the story.
    return case(run, policy("blue-green", BLUE_GREEN), before, run.world.now + timedelta(hours=2), events=False)


def bluegreen_switched() -> Body:
    run = start(BLUE_GREEN, "blue-green")
    run.deploy(spec("1.3.0", template("1.3.0"), "blue-green"))
    run.passes(lambda n: healthy(0.002, 0.15), until=lambda w: w.status.current_step == 4, tick=10)
    return case(run, policy("blue-green", BLUE_GREEN), None, run.world.now + timedelta(seconds=20))


def rolling_failed() -> Body:
    run = start(None, None)
    run.deploy(spec("1.3.0", template("1.3.0", cpu="1"), None))
    for _ in range(80):  # the new pods never become Ready: progressDeadline (10m without a policy)
        run.passes(until=lambda w: True)
        world = run.world
        world.stable = dataclasses.replace(world.stable, ready=2, available=2, updated=1, total=5)
        if world.phase == Phase.FAILED:
            break
        world.later(10)
    return case(run, None, None, run.world.now + timedelta(minutes=3), cluster="staging")


def in_progress() -> Body:
    run = start(CANARY_GATED, "gated-canary", route=True)
    new = template("1.3.0", env=[{"name": "FEATURE_X", "value": "on"}])
    run.deploy(spec("1.3.0", new, "gated-canary", route=True, hooks={"preRollout": [MIGRATE]}))
    run.passes(lambda n: healthy(0.006, 0.2), until=lambda w: w.phase == Phase.PAUSED, tick=10)
    return case(run, policy("gated-canary", CANARY_GATED), None, run.world.now + timedelta(minutes=4))


CASES = {"canary-succeeded": canary_succeeded, "canary-rolled-back": canary_rolled_back,
         "bluegreen-succeeded": bluegreen_succeeded, "bluegreen-switched": bluegreen_switched,
         "rolling-failed": rolling_failed, "in-progress": in_progress}
HEADER = "# Input of a report golden test: made by tests/unit/report_cases.py with the real planner.\n"


def main() -> None:
    GOLDEN.mkdir(exist_ok=True)
    for name, build in CASES.items():
        (GOLDEN / f"{name}.input.yaml").write_text(HEADER + yaml.safe_dump(build(), sort_keys=False, width=120))


if __name__ == "__main__":
    main()

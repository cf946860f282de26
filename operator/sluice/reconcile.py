"""One reconcile pass of one Release: observe -> plan -> act -> status, written once.

Everything that decides lives in sluice.plan; this module reads the cluster into an Observed
snapshot, carries a Plan out in a safe order (traffic before pods), and writes status only
when it changed, with the read resourceVersion as a precondition.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from sluice import API_VERSION, metrics
from sluice.analysis import judge
from sluice.analysis.prometheus import Connection, MetricProvider, Prometheus
from sluice.analysis.runner import Rejected, Subject, measure
from sluice.api.durations import parse_duration
from sluice.api.models import ReleaseSpec, ReleaseStatus, RolloutPolicySpec
from sluice.kube import objects
from sluice.kube.client import Kube
from sluice.loop import GONE
from sluice.plan import analysis as plan_analysis
from sluice.plan import reasons
from sluice.plan.conditions import set_condition
from sluice.plan.release import plan as make_plan
from sluice.plan.types import Observed, Plan, Workload, iso
from sluice.traffic import Router, changed
from sluice.traffic.gateway import GatewayRoute
from sluice.traffic.replicas import ReplicaRatio

log = logging.getLogger(__name__)
Body = dict[str, Any]
STALLED_RETRY = 30.0


def workload(body: Body | None, pods: list[Body] | None = None) -> Workload:
    if body is None:
        return Workload()
    digest = objects.template_hash_of(body)
    foreign = sum(1 for pod in pods or [] if objects.template_hash_of(pod) != digest)
    meta, spec, status = body["metadata"], body.get("spec", {}), body.get("status") or {}
    return Workload(
        exists=True,
        template_hash=digest,
        version=(meta.get("labels") or {}).get(objects.VERSION),
        replicas=spec.get("replicas", 1),
        ready=status.get("readyReplicas") or 0,
        updated=status.get("updatedReplicas") or 0,
        available=status.get("availableReplicas") or 0,
        total=status.get("replicas") or 0,
        settled=(status.get("observedGeneration") or 0) >= meta.get("generation", 0),
        foreign=foreign,
    )


async def observe_workload(ctx: Context, name: str, namespace: str, track: str
                           ) -> tuple[Workload, list[Body], Body | None]:
    """A Deployment as the planner sees it, with its pods and the raw object for act()."""
    body = await ctx.kube.get("apps/v1", "Deployment", objects.deployment_name(name, track), namespace)
    if body is None:
        return Workload(), [], None
    pods = await ctx.kube.list("v1", "Pod", namespace, f"{objects.NAME}={name},{objects.TRACK}={track}")
    return workload(body, pods), pods, body


async def preview_settled(ctx: Context, name: str, namespace: str, stable: Workload, pods: list[Body]) -> bool:
    """<name>-preview selects the stable track and its endpoints are exactly the stable
    Deployment's Ready pods of its template: the endpoint controller has seen every change."""
    service = await ctx.kube.get("v1", "Service", f"{name}-preview", namespace)
    if service is None or (service["spec"].get("selector") or {}).get(objects.TRACK) != "stable":
        return False
    wanted = {p["metadata"]["name"] for p in pods
              if objects.template_hash_of(p) == stable.template_hash and not p["metadata"].get("deletionTimestamp")}
    listed: set[str] = set()
    for piece in await ctx.kube.list("discovery.k8s.io/v1", "EndpointSlice", namespace,
                                     f"kubernetes.io/service-name={name}-preview"):
        for endpoint in piece.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready"):
                listed.add((endpoint.get("targetRef") or {}).get("name", ""))
    return len(wanted) == stable.replicas and listed == wanted


class Providers:
    """One Prometheus client per connection, reused across passes and Releases."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.clients: dict[Connection, Prometheus] = {}

    async def _secret(self, namespace: str, ref: Any) -> str | None:
        if ref is None:
            return None
        secret = await self.kube.get("v1", "Secret", ref.name, namespace)
        if secret is None or ref.key not in (secret.get("data") or {}):
            raise Rejected(f"Secret {ref.name} with key {ref.key} not found in namespace {namespace}")
        return base64.b64decode(secret["data"][ref.key]).decode().strip()

    async def get(self, policy: RolloutPolicySpec, namespace: str) -> MetricProvider:
        prom = policy.analysis.prometheus
        tls = prom.tls
        connection = Connection(
            address=prom.address, timeout=parse_duration(prom.timeout),
            token=await self._secret(namespace, prom.bearer_token_secret_ref),
            ca_pem=await self._secret(namespace, tls.ca_secret_ref if tls else None),
            insecure=bool(tls and tls.insecure_skip_verify),
        )
        if connection not in self.clients:
            self.clients[connection] = Prometheus(connection)
        return self.clients[connection]

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()


@dataclasses.dataclass
class Context:
    kube: Kube
    providers: Providers
    now: Callable[[], datetime] | None = None  # a clock to inject; the wall clock otherwise

    def clock(self) -> datetime:
        return self.now() if self.now else datetime.now(UTC)


async def _policy(ctx: Context, namespace: str, spec: ReleaseSpec) -> tuple[RolloutPolicySpec | None, str, str]:
    """(policy, problem, reason): the referenced policy, or why it cannot be used."""
    if spec.policy_ref is None:
        return None, "", ""
    body = await ctx.kube.get(API_VERSION, "RolloutPolicy", spec.policy_ref.name, namespace)
    if body is None:
        return None, (f"RolloutPolicy {spec.policy_ref.name} not found in namespace {namespace}; "
                      "nothing moves until it exists"), reasons.POLICY_NOT_FOUND
    try:
        policy = RolloutPolicySpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        return None, f"RolloutPolicy {spec.policy_ref.name} is invalid: {_first_error(error)}", reasons.INVALID_SPEC
    found = judge.problems(policy, spec.analysis_args)
    if found:
        return None, f"RolloutPolicy {spec.policy_ref.name}: {found[0]}", reasons.INVALID_SPEC
    return policy, "", ""


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}"


async def _requirement(ctx: Context, name: str, namespace: str, version: str,
                       policy: RolloutPolicySpec | None) -> str | None:
    for requirement in policy.requires if policy else []:
        other = await ctx.kube.get(API_VERSION, "Release", name, requirement.namespace)
        status = ReleaseStatus.model_validate((other or {}).get("status") or {})
        passed = status.stable_version == version or any(
            h.version == version and h.outcome == "Succeeded" for h in status.history)
        if not passed:
            return f"{version} has not Succeeded in namespace {requirement.namespace} yet (requires)"
    return None


async def observe(ctx: Context, release: Body) -> tuple[Observed, Router, dict[str, Body | None]]:
    """The planner's snapshot, the Release's router, and the Deployments as read (by track)."""
    meta = release["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    status = ReleaseStatus.model_validate(release.get("status") or {})
    spec = ReleaseSpec.model_validate(release["spec"])
    policy, problem, why = await _policy(ctx, namespace, spec)
    stable, stable_pods, stable_body = await observe_workload(ctx, name, namespace, "stable")
    candidate, _, candidate_body = await observe_workload(ctx, name, namespace, "canary")
    gateway = spec.traffic_routing.gateway_api if spec.traffic_routing else None
    router: Router = (GatewayRoute(ctx.kube, release, spec, gateway.http_route) if gateway
                      else ReplicaRatio(ctx.kube, release, spec))
    if not problem:
        route_problem = await router.check()
        if route_problem:
            problem, why = route_problem, reasons.INVALID_SPEC
    unmet = await _requirement(ctx, name, namespace, spec.version, policy)
    desired = objects.template_hash(spec)
    finalizing = (policy is not None and policy.strategy.blue_green is not None
                  and status.candidate_hash == desired and stable.complete(desired, spec.replicas))
    settled = finalizing and await preview_settled(ctx, name, namespace, stable, stable_pods)
    observed = Observed(
        generation=meta.get("generation", 0), spec=spec, desired_hash=desired, status=status,
        stable=stable, canary=candidate, policy=policy, problem=problem or None, problem_reason=why,
        unmet_requirement=unmet, gateway=gateway is not None, preview_settled=settled,
    )
    return observed, router, {"stable": stable_body, "canary": candidate_body}


async def _measure(ctx: Context, release: Body, obs: Observed, first: Plan, now: datetime
                   ) -> tuple[Plan, Observed]:
    """Run the metrics the plan asks for, count them in, and plan again from there. A query the
    provider refuses makes the observation one with a problem: the Release is Stalled."""
    assert obs.policy is not None
    meta = release["metadata"]
    status = first.status
    subject = Subject(meta["name"], meta["namespace"], status.candidate_version or obs.spec.version,
                      status.stable_version or "", obs.spec.analysis_args)
    try:
        provider = await ctx.providers.get(obs.policy, meta["namespace"])
        results = await measure(provider, obs.policy, first.measure, subject, first.measure_track)
    except Rejected as error:
        refused = dataclasses.replace(obs, problem=str(error), problem_reason=reasons.INVALID_SPEC)
        return make_plan(refused, now), refused
    for result in results:
        metrics.MEASUREMENTS.labels(result.verdict.value).inc()
    plan_analysis.fold(first, results, now)
    second = make_plan(dataclasses.replace(obs, status=first.status), now)
    second.events[:0] = first.events
    return second, obs


DEPLOYMENT_FIELDS = ("spec.replicas", "spec.strategy", "metadata.annotations", "metadata.labels",
                     "metadata.ownerReferences")


async def _history_template(ctx: Context, namespace: str, release: str, deployment: str, digest: str,
                            track: str) -> Body | None:
    """The pod template of `digest` from the Deployment's ReplicaSet history (as `rollout undo`)."""
    for replica_set in await ctx.kube.list("apps/v1", "ReplicaSet", namespace, f"{objects.NAME}={release}"):
        owners = replica_set["metadata"].get("ownerReferences") or []
        if any(o.get("name") == deployment for o in owners) and \
                objects.template_hash_of(replica_set, in_template=True) == digest:
            return objects.restored_template(replica_set, track)
    return None


async def _deployment(ctx: Context, release: Body, obs: Observed, decided: ReleaseStatus, track: str,
                      intent: Any, current: Body | None) -> None:
    """Carry out one Deployment intent. "stable" means the template the *decided* status names:
    a pass that promotes has just moved stableHash to the candidate's."""
    spec = obs.spec
    if intent is None:
        return
    name = objects.deployment_name(release["metadata"]["name"], track)
    namespace = release["metadata"]["namespace"]
    seen = obs.stable if track == "stable" else obs.canary
    if not seen.exists and intent.replicas == 0:
        return
    digest = obs.desired_hash
    template = objects.pod_template(release["metadata"]["name"], spec, track, digest)
    if intent.template == "stable":
        digest = decided.stable_hash or seen.template_hash or ""
        if seen.template_hash == digest:
            if seen.replicas != intent.replicas:
                await ctx.kube.merge_patch("apps/v1", "Deployment", name, namespace,
                                           {"spec": {"replicas": intent.replicas}})
            return
        restored = await _history_template(ctx, namespace, release["metadata"]["name"], name, digest, track)
        if restored is None:
            log.warning("%s/%s: the template of %s is not in the ReplicaSet history; cannot restore it",
                        namespace, name, decided.stable_version)
            return
        template = restored
    rolling = obs.policy.strategy.rolling if obs.policy else None
    body = objects.deployment(release, track, intent.replicas, template, digest,
                              *((rolling.max_surge, rolling.max_unavailable) if rolling else ()))
    if changed(current, body, DEPLOYMENT_FIELDS):
        await ctx.kube.apply(body)


async def act(ctx: Context, release: Body, obs: Observed, result: Plan, router: Router,
              seen: dict[str, Body | None]) -> None:
    """Traffic first, then pods: a rollback takes traffic off the canary before scaling it down."""
    if obs.problem:
        return
    await router.route(result)
    await _deployment(ctx, release, obs, result.status, "stable", result.stable, seen["stable"])
    await _deployment(ctx, release, obs, result.status, "canary", result.canary, seen["canary"])


def _dump(status: ReleaseStatus) -> Body:
    return status.model_dump(by_alias=True, exclude_none=True, mode="json")


async def write_status(ctx: Context, release: Body, before: ReleaseStatus, after: ReleaseStatus) -> bool:
    """One status write, only if something changed; Conflict when the Release moved on."""
    new = _dump(after)
    if new == _dump(before) and release.get("status") is not None:
        return False
    body = {"apiVersion": release["apiVersion"], "kind": release["kind"],
            "metadata": {"name": release["metadata"]["name"], "namespace": release["metadata"]["namespace"],
                         "resourceVersion": release["metadata"]["resourceVersion"]},
            "spec": release["spec"], "status": new}
    await ctx.kube.replace(body, status=True)
    return True


async def reconcile(ctx: Context, namespace: str, name: str) -> float | None:
    """One pass. Returns the seconds until the next pass is needed (None: only on change)."""
    release = await ctx.kube.get(API_VERSION, "Release", name, namespace)
    if release is None or release["metadata"].get("deletionTimestamp"):
        return GONE
    now = ctx.clock()
    try:
        obs, router, seen = await observe(ctx, release)
    except ValidationError as error:  # the schema should have refused it; never crash on input
        status = ReleaseStatus.model_validate(release.get("status") or {})
        broken = status.model_copy(deep=True)
        broken.message = f"the Release cannot be read: {_first_error(error)}"
        broken.conditions = set_condition(broken.conditions, reasons.STALLED, True, reasons.INVALID_SPEC,
                                          broken.message, iso(now), release["metadata"].get("generation"))
        await write_status(ctx, release, status, broken)
        return STALLED_RETRY
    result = make_plan(obs, now)
    if result.measure and not obs.problem:
        result, obs = await _measure(ctx, release, obs, result, now)
    await act(ctx, release, obs, result, router, seen)
    await write_status(ctx, release, obs.status, result.status)
    for event in result.events:
        metrics.EVENTS.labels(event.reason, event.type).inc()
        await ctx.kube.event(release, event.type, event.reason, event.message)
    if result.events:
        log.info("%s/%s: %s", namespace, name, "; ".join(e.message for e in result.events))
    return STALLED_RETRY if obs.problem else result.requeue_after

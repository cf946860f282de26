"""One reconcile pass of one Release: observe -> plan -> persist -> act.

Everything that decides lives in sluice.plan; this module reads the cluster into an Observed
snapshot, has the planner decide, writes the decided status first (with the read
resourceVersion as a precondition, and the decision's events in it as an outbox), and only then
carries the plan out in a safe order (traffic before pods) and posts the events. A pass whose
status write fails acts on nothing, and a pass that dies after its write is repaired by the
next one, which acts on what was written: no pass can reverse a rollback it did not see.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from kubernetes.client import ApiException
from pydantic import ValidationError

from sluice import API_VERSION, metrics
from sluice.analysis import judge
from sluice.analysis.jobs import JobMeasurer, failure_tail
from sluice.analysis.providers import Providers
from sluice.analysis.runner import Rejected, Subject, measure
from sluice.api.models import PendingEvent, PodTemplate, ReleaseSpec, ReleaseStatus, RolloutPolicySpec
from sluice.kube import config, objects
from sluice.kube.admission import Admission
from sluice.kube.client import Conflict, Kube
from sluice.kube.upstream import upstream as upstream_facts
from sluice.loop import GONE, refusal
from sluice.plan import analysis as plan_analysis
from sluice.plan import hooks as plan_hooks
from sluice.plan import reasons
from sluice.plan.lifecycle import record_events, unreadable
from sluice.plan.release import plan as make_plan
from sluice.plan.release import replan
from sluice.plan.types import DeploymentIntent, Event, JobState, Observed, Plan, Upstream, Workload, deadline
from sluice.traffic import Router, changed
from sluice.traffic.gateway import API_VERSION as GATEWAY_API
from sluice.traffic.gateway import GatewayRoute
from sluice.traffic.replicas import ReplicaRatio

log = logging.getLogger(__name__)
Body = dict[str, Any]
STALLED_RETRY = 30.0
TRACKS = ("stable", "canary")


class Reads(Protocol):
    """Where a pass reads: the watch caches (sluice.kube.cache), or the API server itself."""

    async def get(self, api_version: str, kind: str, name: str, namespace: str) -> Body | None: ...

    async def list(self, api_version: str, kind: str, namespace: str | None = None,
                   label_selector: str | None = None) -> list[Body]: ...


class Notify(Protocol):
    """Where a pass hands the events it has posted (sluice.notify.Notifier): it queues them for the
    policy's notify targets and returns at once; sending never slows or changes a rollout."""

    def send(self, release: Body, status: ReleaseStatus, policy: RolloutPolicySpec | None,
             events: Sequence[PendingEvent]) -> None: ...


@dataclasses.dataclass
class Context:
    kube: Kube  # writes, and the few reads no cache answers
    providers: Providers
    reads: Reads | None = None  # the watch caches; `kube` when None
    admission: Admission | None = None
    now: Callable[[], datetime] | None = None  # a clock to inject; the wall clock otherwise
    posted: set[str] = dataclasses.field(default_factory=set)  # Event names this process has posted
    refused: dict[tuple[str, str], str] = dataclasses.field(default_factory=dict)  # last refusal, by Release
    notifier: Notify | None = None  # the policies' notify targets; none in tests that do not ask

    def __post_init__(self) -> None:
        if self.admission is None:
            self.admission = Admission(self.kube)
        if self.reads is None:
            self.reads = self.kube

    @property
    def read(self) -> Reads:
        assert self.reads is not None
        return self.reads

    def clock(self) -> datetime:
        return self.now() if self.now else datetime.now(UTC)


@dataclasses.dataclass
class Seen:
    """The owned objects as observe() read them, for act() to compare against: no second read."""

    deployments: dict[str, Body | None]
    services: dict[str, Body | None]
    drifted: dict[str, bool]
    adopting: tuple[tuple[str, str], ...] = ()  # ("Deployment", track) / ("Service", name) granted to this Release
    copies: tuple[config.Copy, ...] = ()  # versioned config the desired template uses (sluice.kube.config)
    unused: tuple[config.Ref, ...] = ()  # copies of this Release's config no template uses any more


def workload(body: Body | None, pods: list[Body] | None = None, drifted: bool = False) -> Workload:
    if body is None:
        return Workload()
    digest = objects.template_hash_of(body)
    foreign = sum(1 for pod in pods or [] if objects.template_hash_of(pod) != digest)
    meta, spec, status = body["metadata"], body.get("spec", {}), body.get("status") or {}
    return Workload(
        exists=True,
        # A template edited behind Sluice's back runs nothing Sluice can name: it is no template.
        template_hash=None if drifted else digest,
        version=objects.version_of(body),
        replicas=spec.get("replicas", 1),
        ready=status.get("readyReplicas") or 0,
        updated=status.get("updatedReplicas") or 0,
        available=status.get("availableReplicas") or 0,
        total=status.get("replicas") or 0,
        settled=(status.get("observedGeneration") or 0) >= meta.get("generation", 0),
        foreign=foreign,
    )


ADOPT = "sluice.dev/adopt"  # on an existing object: the name of the Release that may take it over


@dataclasses.dataclass(frozen=True)
class Claim:
    """Whose an object with a name Sluice writes is: `refusal` says why it must not be touched,
    `adopt` that this Release may take it over (its first write sets the controller reference)."""

    refusal: str | None = None
    adopt: bool = False


def claim(kind: str, body: Body | None, release: Body, selector: Body | None = None) -> Claim:
    """Whether Sluice may write an object with one of the names it owns. Its own objects (the
    controller ownerReference carries this Release's uid) it writes; nothing else, ever, unless
    the object itself says `sluice.dev/adopt: <this Release's name>` and no controller manages it.

    Why the grant sits on the object and not in the Release: only whoever may already update that
    object (its author, or the GitOps tool that applies it) can put the annotation there, and
    they could equally delete or replace it, so adoption gives nobody a power they did not have.
    A grant in the Release's spec would let anyone who may create a Release in the namespace take
    over any Service or Deployment there. The grant names one Release (ownerReferences never
    cross namespaces), so it is not a blanket "Sluice may have this". An object another
    controller manages (a controller ownerReference that is not this Release) is never adopted,
    annotation or not: two controllers would overwrite each other, and the annotation's author
    may not be the one that controller answers to. `selector`, for a Deployment, is the one Sluice
    gives it: a Deployment's selector cannot change, so one with another selector is not adoptable."""
    if body is None or objects.controller_uid(body) == release["metadata"]["uid"]:
        return Claim()
    meta = body["metadata"]
    name, mine = meta["name"], release["metadata"]["name"]
    granted = (meta.get("annotations") or {}).get(ADOPT)
    owner = next((ref for ref in meta.get("ownerReferences") or [] if ref.get("controller")), None)
    names = (f"Sluice owns {kind}s named <release>, <release>-canary and <release>-preview, so rename "
             f"Release {mine} or that {kind}")
    if owner is not None:
        never = " (an object another controller manages is never adopted)" if granted else ""
        return Claim(f"{kind} {name} already exists and belongs to {owner.get('kind')} {owner.get('name')}{never}; "
                     f"{names}")
    if granted is None:
        return Claim(f"{kind} {name} already exists and is not managed by Sluice; {names}, or let Sluice adopt it: "
                     f"kubectl annotate {kind.lower()} {name} {ADOPT}={mine}")
    if granted != mine:
        return Claim(f"{kind} {name} already exists and its {ADOPT} annotation grants it to Release {granted}, "
                     f"not {mine}; {names}")
    found = (body.get("spec") or {}).get("selector")
    if selector is not None and found != selector:
        return Claim(f"{kind} {name} cannot be adopted: its selector {json.dumps(found, sort_keys=True)} is not "
                     f"Sluice's {json.dumps(selector, sort_keys=True)}, and a {kind}'s selector cannot change; "
                     f"delete that {kind} or rename Release {mine}")
    return Claim(adopt=True)


def _route_claim(route: Body | None, release: Body) -> str | None:
    """An HTTPRoute another controller manages would have its weights undone: Sluice edits only
    routes no controller owns (a route GitOps applies has no owner reference)."""
    owner = next((ref for ref in ((route or {}).get("metadata") or {}).get("ownerReferences") or []
                  if ref.get("controller")), None)
    if owner is None or owner.get("uid") == release["metadata"]["uid"]:
        return None
    name = route["metadata"]["name"] if route else ""
    return (f"HTTPRoute {name} belongs to {owner.get('kind')} {owner.get('name')}, which would undo the weights "
            "Sluice writes; point trafficRouting at a route no controller manages")


async def preview_settled(ctx: Context, name: str, namespace: str, stable: Workload, pods: list[Body],
                          preview: Body | None) -> bool:
    """<name>-preview selects the stable track and its endpoints are exactly the stable
    Deployment's Ready pods of its template: the endpoint controller has seen every change."""
    if preview is None or (preview["spec"].get("selector") or {}).get(objects.TRACK) != "stable":
        return False
    wanted = {p["metadata"]["name"] for p in pods
              if objects.template_hash_of(p) == stable.template_hash and not p["metadata"].get("deletionTimestamp")}
    listed: set[str] = set()
    for piece in await ctx.read.list("discovery.k8s.io/v1", "EndpointSlice", namespace,
                                     f"kubernetes.io/service-name={name}-preview"):
        for endpoint in piece.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready"):
                listed.add((endpoint.get("targetRef") or {}).get("name", ""))
    return len(wanted) == stable.replicas and listed == wanted


def policy_hash(spec: Body) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


async def _policy(ctx: Context, namespace: str, spec: ReleaseSpec
                  ) -> tuple[RolloutPolicySpec | None, int | None, str | None, str, str]:
    """(policy, generation, hash, problem, reason): the referenced policy, or why it cannot be used."""
    if spec.policy_ref is None:
        return None, None, None, "", ""
    body = await ctx.read.get(API_VERSION, "RolloutPolicy", spec.policy_ref.name, namespace)
    if body is None:
        return None, None, None, (f"RolloutPolicy {spec.policy_ref.name} not found in namespace {namespace}; "
                                  "no new rollout starts until it exists"), reasons.POLICY_NOT_FOUND
    raw = body.get("spec") or {}
    generation, digest = body["metadata"].get("generation"), policy_hash(raw)
    try:
        policy = RolloutPolicySpec.model_validate(raw)
    except ValidationError as error:
        return None, generation, digest, (f"RolloutPolicy {spec.policy_ref.name} is invalid: "
                                          f"{_first_error(error)}"), reasons.INVALID_SPEC
    found = judge.problems(policy, spec.analysis_args)
    if found:
        return None, generation, digest, f"RolloutPolicy {spec.policy_ref.name}: {found[0]}", reasons.INVALID_SPEC
    return policy, generation, digest, "", ""


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}"


async def _upstream(ctx: Context, name: str, policy: RolloutPolicySpec | None) -> tuple[Upstream, ...]:
    """What the gate needs from each namespace the policy `requires`, read here and never taken
    from the other Release's word: its uid and what it declares, and the stable Deployment it
    controls (kube.upstream builds the facts, plan.requires decides)."""
    found: list[Upstream] = []
    for requirement in policy.requires if policy else []:
        namespace = requirement.namespace
        other = await ctx.read.get(API_VERSION, "Release", name, namespace)
        body = None if other is None else await ctx.read.get(
            "apps/v1", "Deployment", objects.deployment_name(name, "stable"), namespace)
        found.append(upstream_facts(namespace, name, other, body))
    return tuple(found)


async def _drifted(ctx: Context, release: Body, body: Body | None, spec: ReleaseSpec, desired: str,
                   status: ReleaseStatus) -> bool:
    """Whether a live Deployment's pod template differs from the one its annotation names, as the
    API server would store it. Only templates Sluice can rebuild are checked: the desired one, and
    the stable one status keeps."""
    if body is None:
        return False
    digest = objects.template_hash_of(body)
    if digest is None:
        return False
    if digest == desired:
        template: Body = spec.template.model_dump(by_alias=True, exclude_none=True)
        version = spec.version
    elif digest == status.stable_hash and status.stable_spec is not None:
        template, version = status.stable_spec.template, status.stable_spec.version
    else:
        return False
    assert ctx.admission is not None
    verdict = await ctx.admission.check(release, version, template, digest)
    if verdict.normalized is None:
        return False
    return bool(objects.normalized_hash(body["spec"]["template"]) != verdict.normalized)


async def _owned(ctx: Context, api_version: str, kind: str, name: str, namespace: str, used: bool) -> Body | None:
    """An object with a name Sluice writes. The caches hold only objects with Sluice's labels, so
    a name they do not know, that this pass may create, is looked up on the API server: another
    writer's object there (to adopt, or to refuse) is never overwritten by a create."""
    found = await ctx.read.get(api_version, kind, name, namespace)
    if found is None and used and ctx.read is not ctx.kube:
        found = await ctx.kube.get(api_version, kind, name, namespace)
    return found


async def observe(ctx: Context, release: Body) -> tuple[Observed, Router, Seen]:
    """The planner's snapshot, the Release's router, and the owned objects as read."""
    meta = release["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    status = ReleaseStatus.model_validate(release.get("status") or {})
    spec = ReleaseSpec.model_validate(release["spec"])
    found = {kind: await ctx.read.list("v1", kind, namespace, objects.VERSIONED) for kind in ("ConfigMap", "Secret")}
    spec, copies = _versioned_config(release, spec, status, found)
    desired = objects.template_hash(spec)
    policy, generation, digest, policy_problem, policy_why = await _policy(ctx, namespace, spec)
    # Only the names this Release writes now can conflict; another's object that merely has the name
    # of one it does not use (the canary Deployment of a Release not rolling out) is left alone, and
    # is never taken for its own. <name>-canary exists only where a route sends traffic to it.
    rolling_out = status.stable_hash is not None and (
        desired != status.stable_hash or (status.candidate_hash or status.stable_hash) != status.stable_hash)
    blue_green = status.strategy == "blueGreen" or bool(policy and policy.strategy.blue_green)
    gateway = spec.traffic_routing.gateway_api if spec.traffic_routing else None
    used = {("Deployment", "stable"): True, ("Deployment", "canary"): rolling_out, ("Service", name): True,
            ("Service", f"{name}-canary"): gateway is not None, ("Service", f"{name}-preview"): blue_green}
    deployments: dict[str, Body | None] = {}
    pods: dict[str, list[Body]] = {}
    for track in TRACKS:
        deployments[track] = await _owned(ctx, "apps/v1", "Deployment", objects.deployment_name(name, track),
                                          namespace, used["Deployment", track])
        pods[track] = [] if deployments[track] is None else await ctx.read.list(
            "v1", "Pod", namespace, f"{objects.NAME}={name},{objects.TRACK}={track}")
    services = {service: await _owned(ctx, "v1", "Service", service, namespace, used["Service", service])
                for service in (name, f"{name}-canary", f"{name}-preview")}
    claims = {("Deployment", track): claim("Deployment", body, release,
                                           {"matchLabels": {objects.NAME: name, objects.TRACK: track}})
              for track, body in deployments.items()}
    claims.update({("Service", service): claim("Service", body, release) for service, body in services.items()})
    conflict = next((c.refusal for key, c in claims.items() if used[key] and c.refusal), None)
    route = await ctx.read.get(GATEWAY_API, "HTTPRoute", gateway.http_route, namespace) if gateway else None
    if gateway and not conflict:
        conflict = _route_claim(route, release)
    adopting = tuple(f"{kind} {objects.deployment_name(name, key) if kind == 'Deployment' else key}"
                     for (kind, key), c in claims.items() if c.adopt and used[kind, key])
    # What is not this Release's is invisible to it; what it may adopt is its own only where it writes now.
    for track in TRACKS:
        if claims["Deployment", track].refusal or (claims["Deployment", track].adopt and not used["Deployment", track]):
            deployments[track], pods[track] = None, []
    for service in services:
        if claims["Service", service].refusal or (claims["Service", service].adopt and not used["Service", service]):
            services[service] = None
    problem, why = "", ""
    assert ctx.admission is not None
    verdict = await ctx.admission.check(release, spec.version,
                                      spec.template.model_dump(by_alias=True, exclude_none=True), desired)
    if verdict.refusal:
        problem, why = (f"the API server refuses the Deployment of {spec.version}: {verdict.refusal}",
                        reasons.REFUSED_BY_API)
    drifted = {track: await _drifted(ctx, release, deployments[track], spec, desired, status) for track in TRACKS}
    stable = workload(deployments["stable"], pods["stable"], drifted["stable"])
    candidate = workload(deployments["canary"], pods["canary"], drifted["canary"])
    router: Router = (GatewayRoute(ctx.kube, ctx.read, release, spec, gateway.http_route) if gateway
                      else ReplicaRatio(ctx.kube, release, spec))
    if not problem:
        route_problem = await router.check()
        if route_problem:
            problem, why = route_problem, reasons.INVALID_SPEC
    upstream = await _upstream(ctx, name, policy)
    finalizing = (status.strategy == "blueGreen" and status.candidate_hash == desired
                  and stable.complete(desired, spec.replicas))
    settled = finalizing and await preview_settled(ctx, name, namespace, stable, pods["stable"],
                                                   services[f"{name}-preview"])
    observed = Observed(
        generation=meta.get("generation", 0), spec=spec, desired_hash=desired, status=status,
        stable=stable, canary=candidate, policy=policy, problem=problem or None, problem_reason=why,
        conflict=conflict, adopting=adopting, policy_generation=generation, policy_hash=digest,
        policy_problem=policy_problem or None, policy_problem_reason=policy_why,
        upstream=upstream, gateway=gateway is not None, preview_settled=settled,
        serving_canary=_selects_canary(services[name]),
        route_weight=objects.route_weight(route, name) if route else None,
    )
    granted = tuple(key for key, c in claims.items() if c.adopt and used[key])
    observed = dataclasses.replace(observed, name=name, jobs=await _jobs(ctx, name, namespace, status))
    templates = [spec.template.model_dump(by_alias=True, exclude_none=True),
                 *([status.stable_spec.template] if status.stable_spec else []),
                 *(((body.get("spec") or {}).get("template") or {}) for body in deployments.values() if body)]
    unused = tuple(config.unused(release, found, templates))
    return observed, router, Seen(deployments, services, drifted, granted, tuple(copies), unused)


def _versioned_config(release: Body, spec: ReleaseSpec, status: ReleaseStatus, found: dict[str, list[Body]]
                      ) -> tuple[ReleaseSpec, list[config.Copy]]:
    """The spec with its pod template using copies of the versioned config it reads (unchanged,
    the same object, when it reads none): what the desired hash, the Deployments and the stable
    template in status are all made from."""
    template = spec.template.model_dump(by_alias=True, exclude_none=True)
    rewritten, copies = config.versioned(template, release, found,
                                         status.stable_spec.template if status.stable_spec else None)
    if rewritten is template:
        return spec, copies
    return spec.model_copy(update={"template": PodTemplate.model_validate(rewritten)}), copies


async def _jobs(ctx: Context, name: str, namespace: str, status: ReleaseStatus) -> dict[str, JobState]:
    """This Release's hook Jobs. The end of a failed one's log (its pod's termination message) is
    read once, for the pass that records the failure, from the pods the Job itself controls (by
    uid), no other."""
    found: dict[str, JobState] = {}
    unfinished = {run.job for run in status.hooks if run.state not in plan_hooks.FINISHED}
    for job in await ctx.read.list("batch/v1", "Job", namespace, f"{objects.RELEASE}={name}"):
        if objects.HOOK not in (job["metadata"].get("labels") or {}):
            continue
        active, succeeded, failed, reason = objects.job_state(job)
        tail = await failure_tail(ctx.kube, job, namespace) if failed and job["metadata"]["name"] in unfinished else ""
        found[job["metadata"]["name"]] = JobState(active, succeeded, failed, reason, tail)
    return found


def _selects_canary(service: Body | None) -> bool:
    """Service <name> sends traffic to the candidate's pods: it selects the canary track, or
    no track at all (both, under replica-ratio routing)."""
    selector = ((service or {}).get("spec") or {}).get("selector") or {}
    return service is not None and selector.get(objects.TRACK) != "stable"


async def _measure(ctx: Context, release: Body, obs: Observed, first: Plan, now: datetime
                   ) -> tuple[Plan, Observed]:
    """Run the metrics the plan asks for, count them in, and plan again from there. Input the
    provider cannot use (a query it refuses, an address that is no URL, a Secret gone) makes the
    observation one with a problem: the Release is Stalled, and its candidate loses its traffic."""
    meta = release["metadata"]
    status = first.status
    policy = first.policy
    assert policy is not None, "only a plan made under a policy measures"
    subject = Subject(meta["name"], meta["namespace"],
                      objects.label_version(status.candidate_version or obs.spec.version),
                      objects.label_version(status.stable_version or ""), obs.spec.analysis_args,
                      service=_candidate_service(obs, first))
    jobs = JobMeasurer(ctx.kube, ctx.read, release, deadline(obs), now)
    job_names = {m.name: plan_analysis.job_name(meta["name"], status, m.name, m.name not in first.measure_step)
                 for m in policy.analysis.metrics if m.job is not None and m.name in first.measure}
    try:
        # Prometheus only for metrics that ask it: a policy of job or web metrics needs no address at all
        sources = await ctx.providers.sources(policy, meta["namespace"], first.measure)
        results = await measure(sources, policy, first.measure, subject, first.measure_track, jobs, job_names)
    except Rejected as error:
        refused = dataclasses.replace(obs, measure_problem=str(error))
        return make_plan(refused, now), refused
    if first.probe:  # the input is usable again: plan afresh; the next pass measures for real
        fixed = dataclasses.replace(obs, probe_ok=True)
        return make_plan(fixed, now), fixed
    for result in results:
        metrics.MEASUREMENTS.labels(result.verdict.value).inc()
    plan_analysis.fold(first, results, now)
    return replan(obs, first, now), obs


def _candidate_service(obs: Observed, first: Plan) -> str:
    """The Service a smoke test reaches the candidate through: <name>-preview before a blue-green
    switch, <name>-canary behind a Gateway route, else <name> (replica ratio, or after the switch)."""
    name = obs.name
    if first.preview and first.active == "stable" and first.preview_track == "canary":
        return f"{name}-preview"
    if obs.gateway and first.measure_track == "canary" and not first.preview:
        return f"{name}-canary"
    return name


DEPLOYMENT_FIELDS = ("spec.replicas", "spec.strategy", "metadata.annotations", "metadata.labels",
                     "metadata.ownerReferences")


async def _history_template(ctx: Context, namespace: str, release: str, deployment: str, digest: str,
                            track: str) -> Body | None:
    """The pod template of `digest` from the Deployment's ReplicaSet history: only for a status
    written before status.stableSpec existed."""
    for replica_set in await ctx.kube.list("apps/v1", "ReplicaSet", namespace, f"{objects.NAME}={release}"):
        owners = replica_set["metadata"].get("ownerReferences") or []
        if any(o.get("name") == deployment for o in owners) and \
                objects.template_hash_of(replica_set, in_template=True) == digest:
            return objects.restored_template(replica_set, track)
    return None


async def _deployment(ctx: Context, release: Body, obs: Observed, decided: ReleaseStatus, track: str,
                      intent: DeploymentIntent | None, seen: Seen) -> None:
    """Carry out one Deployment intent. "stable" means the template the *decided* status names:
    a pass that promotes has just moved stableHash to the candidate's. A template edited behind
    Sluice's back is replaced whole, fields others added included."""
    current = seen.deployments[track]
    if intent is None and current is not None and seen.drifted[track]:
        # A hold leaves pods as they are, but never a template edited behind Sluice's back.
        digest = objects.template_hash_of(current)
        replicas = (current.get("spec") or {}).get("replicas", 0)
        intent = DeploymentIntent("candidate" if digest == obs.desired_hash else "stable", replicas)
    if intent is None:
        return
    release_name, namespace = release["metadata"]["name"], release["metadata"]["namespace"]
    name = objects.deployment_name(release_name, track)
    observed = obs.stable if track == "stable" else obs.canary
    if current is None and intent.replicas == 0:
        return
    digest = obs.desired_hash
    template = objects.pod_template(release_name, obs.spec, track, digest)
    if intent.template == "stable":
        digest = decided.stable_hash or objects.template_hash_of(current or {"metadata": {}}) or ""
        if observed.template_hash == digest and current is not None:
            if observed.replicas != intent.replicas:
                await ctx.kube.merge_patch("apps/v1", "Deployment", name, namespace,
                                           {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
                                            "spec": {"replicas": intent.replicas}})
            return
        kept = decided.stable_spec
        if kept is not None and digest == decided.stable_hash:
            template = objects.pod_template_of(release_name, kept.version, kept.template, track, digest)
        else:
            restored = await _history_template(ctx, namespace, release_name, name, digest, track)
            if restored is None:
                log.warning("%s/%s: the template of %s is neither in status nor in the ReplicaSet history",
                            namespace, name, decided.stable_version)
                return
            template = restored
    rolling = obs.policy.strategy.rolling if obs.policy else None
    body = objects.deployment(release, track, intent.replicas, template, digest,
                              *((rolling.max_surge, rolling.max_unavailable) if rolling else ()))
    if current is not None and seen.drifted[track]:
        log.info("%s/%s: its pod template was changed outside Sluice; restoring it", namespace, name)
        current = await ctx.kube.json_patch("apps/v1", "Deployment", name, namespace, [
            {"op": "test", "path": "/metadata/resourceVersion", "value": current["metadata"]["resourceVersion"]},
            {"op": "replace", "path": "/spec/template", "value": template}])
    if changed(current, body, DEPLOYMENT_FIELDS) or observed.template_hash != digest:
        if current is not None:  # a precondition: never a write over a state this pass did not see
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        await ctx.kube.write(body, exists=current is not None)


async def _adopt(ctx: Context, release: Body, obs: Observed, seen: Seen) -> None:
    """Take over what its writer granted: this Release becomes its controller, and fields Sluice
    sets whose items another writer added are replaced whole (server-side apply would keep a
    Service port that `kubectl apply` added beside Sluice's). Only if the object has not changed
    since it was read, so a grant withdrawn meanwhile holds; a Deployment's pod template is then
    made Sluice's by the write that follows, and by drift repair."""
    namespace = release["metadata"]["namespace"]
    for kind, key in seen.adopting:
        current = (seen.deployments if kind == "Deployment" else seen.services)[key]
        if current is None:
            continue
        meta = current["metadata"]
        refs = [ref for ref in meta.get("ownerReferences") or [] if ref.get("uid") != release["metadata"]["uid"]]
        operations: list[Body] = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]},
            {"op": "add", "path": "/metadata/ownerReferences", "value": [*refs, objects.owner(release)]},
        ]
        if kind == "Service":
            ports = objects.service(release, obs.spec, key, {})["spec"]["ports"]
            operations.append({"op": "add", "path": "/spec/ports", "value": ports})
        api_version = "apps/v1" if kind == "Deployment" else "v1"
        adopted = await ctx.kube.json_patch(api_version, kind, meta["name"], namespace, operations)
        log.info("%s/%s: adopted %s %s (%s)", namespace, release["metadata"]["name"], kind, meta["name"], ADOPT)
        (seen.deployments if kind == "Deployment" else seen.services)[key] = adopted


async def act(ctx: Context, release: Body, obs: Observed, result: Plan, router: Router, seen: Seen) -> None:
    """Traffic first, then pods: a rollback takes traffic off the canary before scaling it down."""
    if result.hands_off:
        return
    name = release["metadata"]["name"]
    for wanted in seen.copies:  # before any pod could need one
        if wanted.body is not None:
            async with _refused(f"creating {wanted.kind} {wanted.name}, the versioned copy of {wanted.original}"):
                try:
                    await ctx.kube.create(wanted.body)
                except ApiException as error:
                    if error.status != 409:
                        raise
    async with _refused("adopting what its writer granted"):
        await _adopt(ctx, release, obs, seen)
    async with _refused(f"writing the Services of {name} and its traffic weights"):
        await router.route(result, seen.services)
    for track, intent in (("stable", result.stable), ("canary", result.canary)):
        async with _refused(f"writing Deployment {objects.deployment_name(name, track)}"):
            await _deployment(ctx, release, obs, result.status, track, intent, seen)
    await _hook_jobs(ctx, release, obs, result)
    for kind, copied in seen.unused:
        async with _refused(f"deleting {kind} {copied}, a versioned copy no template uses"):
            await ctx.kube.delete("v1", kind, copied, release["metadata"]["namespace"])


async def _hook_jobs(ctx: Context, release: Body, obs: Observed, result: Plan) -> None:
    """The hook Jobs the plan names: created if absent (a Job already there under its name is
    this run's: it was named from the run), and deleted when overdue or forgotten."""
    namespace = release["metadata"]["namespace"]
    for run in result.jobs:
        hook = plan_hooks.find(obs.spec, run.stage, run.hook)
        if hook is None or run.job in obs.jobs:
            continue
        body = objects.hook_job(release, run, hook, result.status.stable_version or "",
                                plan_hooks.timeout(hook, obs))
        async with _refused(f"creating Job {run.job} of hook {run.hook}"):
            try:
                await ctx.kube.create(body)
            except ApiException as error:
                if error.status != 409:
                    raise
    for job in result.delete_jobs:
        async with _refused(f"deleting Job {job}"):
            await ctx.kube.delete("batch/v1", "Job", job, namespace)


class Refused(Exception):
    """The API server refused a write that carries out a plan; the loop retries with backoff and
    the next pass shows the refusal as Stalled (reason RefusedByAPIServer) until a write succeeds."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@contextlib.asynccontextmanager
async def _refused(what: str) -> AsyncIterator[None]:
    try:
        yield
    except ApiException as error:
        if error.status == 409:  # the object changed since the caches saw it: the next pass sees it
            raise Conflict(what) from error
        if (error.status or 0) >= 502:  # the server unreachable: retry
            raise
        raise Refused(f"the API server refused {what}: {refusal(error)}; retrying with backoff") from error


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


def event_name(release: Body, event_id: str) -> str:
    """The name of an outbox event's Event object: the same on every attempt to post it."""
    meta = release["metadata"]
    return f"{meta['name']}.sluice-{meta['uid'][:8]}-{event_id}"


async def post_events(ctx: Context, release: Body, status: ReleaseStatus) -> None:
    """The outbox's events, each posted once (a repeat after a restart finds it there)."""
    for pending in status.events:
        name = event_name(release, pending.id)
        if name in ctx.posted:
            continue
        if await ctx.kube.event(release, pending.type, pending.reason, pending.message, name=name):
            ctx.posted.add(name)
            metrics.EVENTS.labels(pending.reason, pending.type).inc()
    if len(ctx.posted) > 100_000:
        ctx.posted.clear()  # a repeat is harmless: the API server answers AlreadyExists


async def reconcile(ctx: Context, namespace: str, name: str) -> float | None:
    """One pass. Returns the seconds until the next pass is needed (None: only on change)."""
    release = await ctx.read.get(API_VERSION, "Release", name, namespace)
    if release is None or release["metadata"].get("deletionTimestamp"):
        return GONE
    now = ctx.clock()
    try:
        obs, router, seen = await observe(ctx, release)
    except ValidationError as error:  # the schema should have refused it; never crash on input
        status = ReleaseStatus.model_validate(release.get("status") or {})
        broken = unreadable(status, f"the Release cannot be read: {_first_error(error)}", now,
                            release["metadata"].get("generation"))
        await write_status(ctx, release, status, broken)
        return STALLED_RETRY
    key = (namespace, name)
    obs = dataclasses.replace(obs, refused=ctx.refused.get(key))
    result = make_plan(obs, now)
    if result.measure and not obs.problem:
        result, obs = await _measure(ctx, release, obs, result, now)
    if obs.adopting and not result.hands_off:
        result.events.append(Event("Normal", reasons.ADOPTED, f"adopting {', '.join(obs.adopting)}: its {ADOPT} "
                                   f"annotation names this Release, which now controls it"))
    record_events(result)
    await write_status(ctx, release, obs.status, result.status)  # the decision is persisted first
    try:
        await act(ctx, release, obs, result, router, seen)
    except Refused as error:
        ctx.refused[key] = error.message
        raise
    ctx.refused.pop(key, None)
    await post_events(ctx, release, result.status)
    if ctx.notifier is not None:  # the live policy's targets, told in the background
        ctx.notifier.send(release, result.status, obs.policy, result.status.events)
    if result.events:
        log.info("%s/%s: %s", namespace, name, "; ".join(e.message for e in result.events))
    stuck = obs.problem or obs.conflict or result.status.input_problem
    return STALLED_RETRY if stuck and result.requeue_after is None else result.requeue_after

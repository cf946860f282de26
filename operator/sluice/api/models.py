"""The Release and RolloutPolicy API as pydantic models: the single source of truth.

crds/ is generated from these models (`make crds`); the operator, the CLI and `sluice lint`
parse objects with them. Validation the API server can do lives here as JSON schema and CEL
(`x-kubernetes-validations`), so that a bad manifest is rejected at `kubectl apply`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

from sluice.api.durations import DURATION_PATTERN

# Semantic Versioning 2.0.0, with an optional leading "v" as many teams tag that way.
SEMVER_PATTERN = (
    r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(-((0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(\.(0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(\+([0-9a-zA-Z-]+(\.[0-9a-zA-Z-]+)*))?$"
)
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
PERCENT_PATTERN = r"^[0-9]+(\.[0-9]+)?%$"

Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32)]


def _cel(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    validation: JsonDict = {"rule": rule, "message": message}
    if field_path:
        validation["fieldPath"] = field_path
    return validation


class Model(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are an error (lint relies on it)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Open(BaseModel):
    """A Kubernetes object Sluice passes through untouched (x-kubernetes-preserve-unknown-fields)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


# --- Release -----------------------------------------------------------------------------------


class Container(Open):
    """A container of the pod template; only name and image are checked here."""

    name: str = Field(min_length=1, description="Container name.")
    image: str = Field(min_length=1, description="Container image.")


class PodSpec(Open):
    """The pod spec; fields other than containers pass through as written."""

    containers: list[Container] = Field(min_length=1, description="At least one container.")


class PodTemplate(Open):
    """A PodTemplateSpec. Sluice adds the labels app.kubernetes.io/name, app.kubernetes.io/version
    and sluice.dev/track to it."""

    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="Labels and annotations of the pods.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    spec: PodSpec = Field(description="The pod spec.")


class ServicePort(Model):
    """The Services Sluice owns: <name> (stable), <name>-canary."""

    port: int = Field(default=80, ge=1, le=65535, description="Port the Services listen on.")
    target_port: int | str | None = Field(
        default=None,
        description="Port (number or name) on the pods; defaults to port.",
        json_schema_extra={"x-kubernetes-int-or-string": True},
    )


class LocalObjectRef(Model):
    name: str = Field(min_length=1, max_length=253, description="Name of the object in the same namespace.")


class GatewayAPIRouting(Model):
    """Weights are written to the backendRefs of an existing HTTPRoute in the Release's namespace.
    Sluice changes only the weights of the backendRefs that name its own Services."""

    http_route: str = Field(min_length=1, max_length=253, description="Name of the HTTPRoute.")


class TrafficRouting(Model):
    """How traffic is split between stable and canary. Absent: by replica ratio (no mesh needed)."""

    gateway_api: GatewayAPIRouting | None = Field(
        default=None, alias="gatewayAPI", description="Split by Gateway API HTTPRoute backendRef weights."
    )


class ReleaseSpec(Model):
    """The desired version of one application."""

    version: str = Field(
        pattern=SEMVER_PATTERN, max_length=128,
        description="The version to run (semver). Shown everywhere; used for gating and history.",
    )
    replicas: int = Field(default=1, ge=0, le=10000, description="Pods of the version when fully rolled out.")
    template: PodTemplate = Field(description="The pod template (a PodTemplateSpec).")
    service: ServicePort = Field(default_factory=ServicePort, description="Ports of the Services Sluice owns.")
    policy_ref: LocalObjectRef | None = Field(
        default=None,
        description="The RolloutPolicy in the same namespace. Absent: a plain rolling update with no analysis.",
    )
    traffic_routing: TrafficRouting | None = Field(
        default=None, description="How traffic is split. Absent: by replica ratio."
    )
    analysis_args: dict[str, str] = Field(
        default_factory=dict, description="Extra variables for the policy's query templates, as {{name}}."
    )


# --- RolloutPolicy -----------------------------------------------------------------------------


class PauseStep(Model):
    duration: Duration | None = Field(
        default=None, description="How long to pause. Absent: until `sluice promote`."
    )


class AnalysisStep(Model):
    metrics: list[str] | None = Field(
        default=None, description="Names of the policy's metrics to run. Absent: all of them."
    )


class CanaryStep(Model):
    """One step: exactly one of setWeight, pause, analysis."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "[has(self.setWeight), has(self.pause), has(self.analysis)].filter(x, x).size() == 1",
                    "a step must have exactly one of setWeight, pause or analysis",
                )
            ]
        }
    )

    set_weight: int | None = Field(default=None, ge=0, le=100, description="Percent of traffic on the canary.")
    pause: PauseStep | None = Field(default=None, description="Wait, for a duration or for a promote.")
    analysis: AnalysisStep | None = Field(
        default=None, description="Run the policy's metrics now, `count` times at `interval`."
    )


class BackgroundAnalysis(Model):
    starting_step: int = Field(default=0, ge=0, description="Index of the step from which analysis runs.")


class CanaryStrategy(Model):
    steps: list[CanaryStep] = Field(min_length=1, max_length=100, description="The steps, in order.")
    background_analysis: BackgroundAnalysis | None = Field(
        default=None,
        description="Run the policy's metrics every interval across all steps from startingStep; "
        "a failure at any time fails the rollout.",
    )


IntOrPercent = Annotated[int | str, Field(json_schema_extra={"x-kubernetes-int-or-string": True})]


class BlueGreenStrategy(Model):
    """The candidate runs at full size behind <name>-preview; the active Service <name> switches
    to it in one write."""

    auto_promotion: bool = Field(default=True, description="Switch without waiting for `sluice promote`.")
    auto_promotion_delay: Duration | None = Field(
        default=None, description="Wait this long with the preview Ready before switching automatically."
    )
    pre_promotion_analysis: bool = Field(
        default=False, description="Run the policy's metrics against the preview before switching."
    )
    post_promotion_analysis: bool = Field(
        default=False, description="Run the policy's metrics after switching; failure switches back."
    )
    scale_down_delay: Duration = Field(
        default="30s", description="Keep the old version warm this long; a rollback meanwhile is instant."
    )


class RollingStrategy(Model):
    """One Deployment updated in place, then judged."""

    max_surge: IntOrPercent = Field(default="25%", description="Pods above replicas during the update.")
    max_unavailable: IntOrPercent = Field(default=0, description="Pods below replicas during the update.")
    post_analysis: bool = Field(
        default=False, description="Run the policy's metrics once the update completes; failure rolls back."
    )


class Strategy(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "[has(self.canary), has(self.blueGreen), has(self.rolling)].filter(x, x).size() == 1",
                    "exactly one strategy is required: canary, blueGreen or rolling",
                )
            ]
        }
    )

    canary: CanaryStrategy | None = Field(default=None, description="Step traffic to the new version.")
    blue_green: BlueGreenStrategy | None = Field(
        default=None, alias="blueGreen", description="Run the new version beside the old, then switch."
    )
    rolling: RollingStrategy | None = Field(default=None, description="Update in place, then judge.")

    @property
    def name(self) -> str:
        return "canary" if self.canary else "blueGreen" if self.blue_green else "rolling"


class SecretKeyRef(Model):
    name: str = Field(min_length=1, description="Secret in the RolloutPolicy's namespace.")
    key: str = Field(min_length=1, description="Key in the Secret.")


class TLSConfig(Model):
    ca_secret_ref: SecretKeyRef | None = Field(default=None, description="PEM CA bundle to verify Prometheus.")
    insecure_skip_verify: bool = Field(default=False, description="Do not verify the server certificate.")


class PrometheusConfig(Model):
    address: str = Field(
        default="http://prometheus.monitoring:9090", pattern=r"^https?://.+",
        description="Base URL of Prometheus.",
    )
    timeout: Duration = Field(default="5s", description="Per-query timeout.")
    bearer_token_secret_ref: SecretKeyRef | None = Field(default=None, description="Bearer token, from a Secret.")
    tls: TLSConfig | None = Field(default=None, description="TLS settings.")


class NoData(StrEnum):
    INCONCLUSIVE = "inconclusive"
    HOLD = "hold"
    FAIL = "fail"


class MinSamples(Model):
    query: str = Field(min_length=1, description="Query for the number of requests the version has served.")
    at_least: float = Field(ge=0, description="Below this, the step waits instead of judging.")


class Compare(Model):
    """Candidate against stable: the query is run with {{track}} = canary and = stable."""

    query: str = Field(min_length=1, description="Query template; {{track}} selects the track.")
    test: Literal["mann-whitney"] = Field(default="mann-whitney", description="The statistical test.")
    max_increase: str = Field(
        default="10%", pattern=PERCENT_PATTERN, description="Largest tolerated increase of the canary's median."
    )
    confidence: float = Field(default=0.95, gt=0, lt=1, description="Confidence needed to call it a regression.")


class Metric(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("has(self.query) != has(self.compare)", "a metric needs exactly one of query or compare"),
                _cel(
                    "!has(self.query) || has(self.successCondition) || has(self.failureCondition)",
                    "a metric with a query needs successCondition or failureCondition",
                ),
            ]
        }
    )

    name: str = Field(pattern=DNS_LABEL_PATTERN, max_length=63, description="Name of the metric.")
    query: str | None = Field(
        default=None, min_length=1,
        description="PromQL template. Variables: {{release}}, {{namespace}}, {{version}}, {{track}} and "
        "the Release's analysisArgs; values are escaped for PromQL string literals.",
    )
    success_condition: str | None = Field(
        default=None, min_length=1, description="CEL over `result` (a number); true is a success."
    )
    failure_condition: str | None = Field(
        default=None, min_length=1, description="CEL over `result` (a number); true is a failure."
    )
    failure_limit: int = Field(default=0, ge=0, description="Failed measurements tolerated before the run fails.")
    consecutive_error_limit: int = Field(
        default=4, ge=1, description="Provider errors in a row before the run counts as failed."
    )
    no_data: NoData = Field(
        default=NoData.INCONCLUSIVE,
        description="An empty result or NaN: inconclusive (pauses the rollout), hold (wait for data, within "
        "progressDeadline) or fail.",
    )
    min_samples: MinSamples | None = Field(default=None, description="Too little traffic: wait, don't judge.")
    compare: Compare | None = Field(default=None, description="Statistical comparison with the stable version.")


class Analysis(Model):
    interval: Duration = Field(default="30s", description="Time between measurements.")
    count: int = Field(default=3, ge=1, le=100, description="Measurements an analysis step takes.")
    prometheus: PrometheusConfig = Field(default_factory=PrometheusConfig, description="Where metrics come from.")
    metrics: list[Metric] = Field(default_factory=list, max_length=20, description="What to measure.")


class OnFailure(StrEnum):
    ROLLBACK = "rollback"
    PAUSE = "pause"


class Requirement(Model):
    namespace: str = Field(
        pattern=DNS_LABEL_PATTERN, description="The same-named Release there must have Succeeded this version."
    )


class RolloutPolicySpec(Model):
    """A reusable, reviewed way to ship."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!has(self.strategy.canary) || self.strategy.canary.steps.all(s, !has(s.analysis)) "
                    "|| (has(self.analysis) && has(self.analysis.metrics) && size(self.analysis.metrics) > 0)",
                    "an analysis step needs spec.analysis.metrics",
                    ".strategy",
                ),
                _cel(
                    "!(has(self.strategy.blueGreen) && ((has(self.strategy.blueGreen.prePromotionAnalysis) && "
                    "self.strategy.blueGreen.prePromotionAnalysis) || (has(self.strategy.blueGreen."
                    "postPromotionAnalysis) && self.strategy.blueGreen.postPromotionAnalysis)) || "
                    "has(self.strategy.rolling) && has(self.strategy.rolling.postAnalysis) && "
                    "self.strategy.rolling.postAnalysis) || (has(self.analysis) && has(self.analysis.metrics) && "
                    "size(self.analysis.metrics) > 0)",
                    "pre/post analysis needs spec.analysis.metrics",
                    ".strategy",
                ),
                _cel(
                    "!has(self.analysis) || !has(self.analysis.metrics) || "
                    "self.analysis.metrics.all(m, self.analysis.metrics.exists_one(n, n.name == m.name))",
                    "metric names must be unique",
                    ".analysis",
                ),
            ]
        }
    )

    strategy: Strategy = Field(description="How traffic moves to the new version.")
    analysis: Analysis = Field(default_factory=Analysis, description="How each version is judged.")
    progress_deadline: Duration = Field(
        default="10m",
        description="Longest wait for the candidate to become Ready or for analysis data; then the rollout fails.",
    )
    on_failure: OnFailure = Field(
        default=OnFailure.ROLLBACK,
        description="rollback (traffic back to stable) or pause (freeze, e.g. after a one-way migration).",
    )
    requires: list[Requirement] = Field(
        default_factory=list, description="Environments where this version must have Succeeded first."
    )


# --- Status ------------------------------------------------------------------------------------


class Phase(StrEnum):
    PENDING = "Pending"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    SUCCEEDED = "Succeeded"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


class Verdict(StrEnum):
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"
    ERROR = "Error"
    WAITING = "Waiting"  # too little traffic or no data yet, under minSamples / noData: hold


class StatusModel(BaseModel):
    """Status is written by Sluice; unknown fields from a newer operator are kept, not rejected."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Condition(StatusModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


class Measurement(StatusModel):
    metric: str
    verdict: Verdict
    value: float | None = None
    message: str = ""
    step: int | None = None
    version: str = ""
    at: str


class MetricRun(StatusModel):
    """Counters of one metric in the current analysis run: they survive a restart."""

    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    errors: int = 0
    consecutive_errors: int = 0
    last_measured_at: str | None = None
    data_seen: bool = False  # a measurement of this run had data: noData applies from now on
    waiting_since: str | None = None  # first Waiting measurement since the last judged one


class AnalysisRun(StatusModel):
    step: int  # the step index; -1 for background analysis
    started_at: str
    metrics: dict[str, MetricRun] = Field(default_factory=dict)


class HistoryEntry(StatusModel):
    version: str
    outcome: str
    started_at: str
    finished_at: str | None = None
    reason: str = ""
    template_hash: str = ""


class PolicySnapshot(StatusModel):
    """The RolloutPolicy a rollout started with: an edit mid-rollout never skips a step or an analysis."""

    name: str
    generation: int | None = None
    hash: str
    spec: dict[str, Any] = Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})


class StableSpec(StatusModel):
    """What rebuilds the stable Deployment from status alone: its version and pod template."""

    version: str
    template: dict[str, Any] = Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})


class PendingEvent(StatusModel):
    """An event decided by a pass, persisted with the decision and posted after it (idempotently)."""

    id: str
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


class Request(StatusModel):
    """A manual action asked for through the CLI; consumed by the next reconcile."""

    action: Literal["promote", "promote-full", "abort", "retry", "pause", "resume"]
    at: str
    by: str = ""


class ReleaseStatus(StatusModel):
    phase: Phase = Phase.PENDING
    stable_version: str | None = None
    stable_hash: str | None = None
    candidate_version: str | None = None
    candidate_hash: str | None = None
    current_step: int | None = None
    canary_weight: int = 0
    step_started_at: str | None = None
    rollout_started_at: str | None = None
    pause_reason: str | None = None
    analysis_run: AnalysisRun | None = None
    background_run: AnalysisRun | None = None
    analysis: list[Measurement] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None
    message: str = ""
    request: Request | None = None
    strategy: str | None = None
    policy: PolicySnapshot | None = None  # the policy this rollout runs against
    stable_spec: StableSpec | None = None  # the stable version's template, to rebuild it from status
    unready_since: str | None = None  # when the candidate was first seen short of Ready pods in this step
    events: list[PendingEvent] = Field(default_factory=list)  # the last decision's events (outbox)
    event_seq: int = 0
    replicas: dict[str, int] = Field(default_factory=dict)  # ready pods per track, for `sluice get`


class PolicyStatus(StatusModel):
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None
    message: str = ""

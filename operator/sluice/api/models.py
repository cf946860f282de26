"""The Release and RolloutPolicy API as pydantic models: the single source of truth.

crds/ is generated from these models (`make crds`); the operator, the CLI and `sluice lint`
parse objects with them. Validation the API server can do lives here as JSON schema and CEL
(`x-kubernetes-validations`), so that a bad manifest is rejected at `kubectl apply`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

from sluice.api.durations import DURATION_PATTERN, parse_duration

# Semantic Versioning 2.0.0, with an optional leading "v" as many teams tag that way.
SEMVER_PATTERN = (
    r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(-((0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(\.(0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(\+([0-9a-zA-Z-]+(\.[0-9a-zA-Z-]+)*))?$"
)
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
PERCENT_PATTERN = r"^[0-9]+(\.[0-9]+)?%$"
# A base URL: scheme, host (and port), an optional path; no whitespace, query or fragment.
URL_PATTERN = r"^https?://[^\s/?#]+(/[^\s?#]*)?$"
# An IANA service name, as a container port's name: 1-15 of [a-z0-9-], a letter, no '-' at
# either end or twice in a row (what the API server checks on Services and pods).
PORT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
MAX_QUERY = 8192
MAX_CONDITION = 1024


def _cel(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    validation: JsonDict = {"rule": rule, "message": message}
    if field_path:
        validation["fieldPath"] = field_path
    return validation


def _rules(*rules: JsonDict) -> JsonDict:
    return {"x-kubernetes-validations": list(rules)}


def _bound_message(maximum: str, minimum: str | None) -> str:
    return f"must be a duration of at most {maximum}" + (f" and at least {minimum}" if minimum else "")


def _duration_field(maximum: str, minimum: str | None = None) -> Any:
    """The API server's side of a bounded duration: the pattern, and CEL duration() bounds, so
    "9999999999999999h" or "1h1h1h..." is refused at apply."""
    rule = f"duration(self) <= duration('{maximum}')"
    if minimum:
        rule += f" && duration(self) >= duration('{minimum}')"
    return Field(pattern=DURATION_PATTERN, max_length=32,
                 json_schema_extra=_rules(_cel(rule, _bound_message(maximum, minimum))))


def _duration_check(maximum: str, minimum: str | None = None) -> AfterValidator:
    """Python's side of the same bounds, so `sluice lint` and the operator agree with the API server."""

    def bounded(text: str) -> str:
        seconds = parse_duration(text)
        if seconds > parse_duration(maximum) or (minimum is not None and seconds < parse_duration(minimum)):
            raise ValueError(_bound_message(maximum, minimum))
        return text

    return AfterValidator(bounded)


# Every duration has an upper bound: no wait outlives what a person would choose on purpose.
PauseDuration = Annotated[str, _duration_field("168h"), _duration_check("168h")]  # a person's explicit choice
DayDuration = Annotated[str, _duration_field("24h"), _duration_check("24h")]
Interval = Annotated[str, _duration_field("1h", "1s"), _duration_check("1h", "1s")]
Timeout = Annotated[str, _duration_field("1m"), _duration_check("1m")]


def _int_or_string(rule: str, message: str) -> Any:
    """The API server's side of an IntOrString field: `rule` is CEL over self, an int or a string."""
    return Field(json_schema_extra={"x-kubernetes-int-or-string": True, **_rules(_cel(rule, message))})


def _check(valid: Callable[[Any], bool], message: str) -> AfterValidator:
    """Python's side of the same rule: `valid(value)` is what the CEL rule says."""

    def check(value: Any) -> Any:
        if not valid(value):
            raise ValueError(message)
        return value

    return AfterValidator(check)


def _port_name(value: str) -> bool:
    return (len(value) <= 15 and re.fullmatch(PORT_NAME_PATTERN, value) is not None
            and re.search("[a-z]", value) is not None and "--" not in value)


TARGET_PORT_RULE = (
    "type(self) == int ? self >= 1 && self <= 65535 : self.size() <= 15 && "
    f"self.matches('{PORT_NAME_PATTERN}') && self.matches('[a-z]') && !self.contains('--')"
)
TARGET_PORT = "must be a port number 1-65535 or a port name (at most 15 of a-z, 0-9 and '-', with a letter)"
SURGE_PATTERN = r"^[0-9]+%$"
SURGE = "must be a number of pods (0 or more) or a percentage such as 25%"
UNAVAILABLE_PATTERN = r"^([0-9]|[1-9][0-9]|100)%$"
UNAVAILABLE = "must be a number of pods (0 or more) or a percentage from 0% to 100%"


def _pods_or_percent(pattern: str) -> Callable[[Any], bool]:
    return lambda v: v >= 0 if isinstance(v, int) else re.fullmatch(pattern, v) is not None


TargetPort = Annotated[
    int | str, _int_or_string(TARGET_PORT_RULE, TARGET_PORT),
    _check(lambda v: 1 <= v <= 65535 if isinstance(v, int) else _port_name(v), TARGET_PORT),
]
MaxSurge = Annotated[
    int | str, _int_or_string(f"type(self) == int ? self >= 0 : self.matches('{SURGE_PATTERN}')", SURGE),
    _check(_pods_or_percent(SURGE_PATTERN), SURGE),
]
MaxUnavailable = Annotated[
    int | str, _int_or_string(f"type(self) == int ? self >= 0 : self.matches('{UNAVAILABLE_PATTERN}')", UNAVAILABLE),
    _check(_pods_or_percent(UNAVAILABLE_PATTERN), UNAVAILABLE),
]


URL_MESSAGE = "must be a URL with a valid host (IPv6 in brackets) and a port from 1 to 65535"


def _url(address: str) -> str:
    """Python's side of the API server's isURL()/url() rule on a Prometheus address (the pattern
    is checked before this runs)."""
    try:
        parts = urlsplit(address)
        port = parts.port
    except ValueError:
        raise ValueError(URL_MESSAGE) from None
    if not parts.hostname or port == 0:
        raise ValueError(URL_MESSAGE)
    return address


class Model(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are an error (lint relies on it)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Open(BaseModel):
    """A Kubernetes object Sluice passes through untouched (x-kubernetes-preserve-unknown-fields)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


# --- Release -----------------------------------------------------------------------------------


class ContainerPort(Open):
    """A port of a container; only the number is checked here."""

    container_port: int = Field(strict=True, ge=1, le=65535, description="Port number on the pod's IP.")


class Container(Open):
    """A container of the pod template; name, image and port numbers are checked here, the rest
    by the API server when Sluice writes its Deployments (a server-side dry-run)."""

    name: str = Field(pattern=DNS_LABEL_PATTERN, max_length=63, description="Container name (a DNS label).")
    image: str = Field(min_length=1, description="Container image.")
    ports: list[ContainerPort] | None = Field(default=None, description="Ports the container exposes.")


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
    target_port: TargetPort | None = Field(
        default=None, description="Port (number or name) on the pods; defaults to port."
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


HOOK_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
MAX_HOOK_NAME = 20  # the Job is named <release>-<hook>-<rollout digest>: 63 characters at most
UNIQUE_HOOKS = "hook names must be unique within a stage"


class Hook(Model):
    """A Job Sluice runs at one point of a rollout, once per rollout (the Job is named from the
    rollout, so an operator restart finds it instead of running it again)."""

    name: str = Field(pattern=HOOK_NAME_PATTERN, max_length=MAX_HOOK_NAME,
                      description="Name of the hook (a DNS label of at most 20 characters); part of the Job's name.")
    template: PodTemplate = Field(
        description="The pod the Job runs. restartPolicy defaults to Never. Variables are not substituted; "
        "the pod gets SLUICE_RELEASE, SLUICE_VERSION, SLUICE_STABLE_VERSION and SLUICE_HOOK in its environment."
    )
    timeout: DayDuration | None = Field(
        default=None,
        description="Longest the Job may run (at most 24h); then it fails. Absent: the policy's progressDeadline "
        "(10m without a policy).",
    )
    backoff_limit: int = Field(default=0, ge=0, le=10, description="Retries of a failed pod before the Job fails.")

    @model_validator(mode="after")
    def _job_restart_policy(self) -> Hook:
        policy = self.template.spec.model_extra.get("restartPolicy") if self.template.spec.model_extra else None
        if policy not in (None, "Never", "OnFailure"):
            raise ValueError(f"a hook's pod runs in a Job: restartPolicy must be Never or OnFailure, not {policy!r}")
        return self


def _unique_hooks() -> JsonDict:
    return _rules(_cel("self.all(h, self.exists_one(o, o.name == h.name))", UNIQUE_HOOKS))


class Hooks(Model):
    """Jobs around a rollout: a database backup and migration before it, a cache purge or a smoke
    test after it. Hooks of a stage run one after another, in order."""

    pre_rollout: list[Hook] = Field(
        default_factory=list, max_length=10, json_schema_extra=_unique_hooks(),
        description="Before any traffic moves to the candidate. A failure fails the rollout (onFailure "
        "applies): no traffic ever reaches the candidate.",
    )
    post_promotion: list[Hook] = Field(
        default_factory=list, max_length=10, json_schema_extra=_unique_hooks(),
        description="After the candidate became stable. A failure is reported (status, event, report); "
        "it does not roll back.",
    )
    post_rollback: list[Hook] = Field(
        default_factory=list, max_length=10, json_schema_extra=_unique_hooks(),
        description="After a rollback put all traffic back on stable. A failure is reported.",
    )

    @model_validator(mode="after")
    def _unique(self) -> Hooks:
        for stage in (self.pre_rollout, self.post_promotion, self.post_rollback):
            names = [hook.name for hook in stage]
            if len(names) != len(set(names)):
                raise ValueError(UNIQUE_HOOKS)
        return self


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
    hooks: Hooks | None = Field(
        default=None, description="Jobs run before the rollout, after a promotion and after a rollback."
    )


# --- RolloutPolicy -----------------------------------------------------------------------------


class PauseStep(Model):
    duration: PauseDuration | None = Field(
        default=None, description="How long to pause (at most 7 days). Absent: until `sluice promote`."
    )


MetricName = Annotated[str, Field(pattern=DNS_LABEL_PATTERN, max_length=63)]
MAX_METRICS = 20


class AnalysisStep(Model):
    metrics: list[MetricName] | None = Field(
        default=None, min_length=1, max_length=MAX_METRICS,
        description="Names of the policy's metrics to run (from spec.analysis.metrics). Absent: all of them.",
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



class BlueGreenStrategy(Model):
    """The candidate runs at full size behind <name>-preview; the active Service <name> switches
    to it in one write."""

    auto_promotion: bool = Field(default=True, description="Switch without waiting for `sluice promote`.")
    auto_promotion_delay: DayDuration | None = Field(
        default=None, description="Wait this long (at most 24h) with the preview Ready before switching automatically."
    )
    pre_promotion_analysis: bool = Field(
        default=False, description="Run the policy's metrics against the preview before switching."
    )
    post_promotion_analysis: bool = Field(
        default=False, description="Run the policy's metrics after switching; failure switches back."
    )
    scale_down_delay: DayDuration = Field(
        default="30s", description="Keep the old version warm this long (at most 24h); a rollback meanwhile is instant."
    )


BOTH_ZERO = "maxSurge and maxUnavailable cannot both be 0: the update could never start"


class RollingStrategy(Model):
    """One Deployment updated in place, then judged."""

    model_config = ConfigDict(json_schema_extra=_rules(_cel(
        "!(string(self.maxSurge) in ['0', '0%'] && string(self.maxUnavailable) in ['0', '0%'])", BOTH_ZERO,
    )))

    max_surge: MaxSurge = Field(default="25%", description="Pods above replicas during the update.")
    max_unavailable: MaxUnavailable = Field(default=0, description="Pods below replicas during the update.")
    post_analysis: bool = Field(
        default=False, description="Run the policy's metrics once the update completes; failure rolls back."
    )

    @model_validator(mode="after")
    def _can_start(self) -> RollingStrategy:
        if str(self.max_surge) in ("0", "0%") and str(self.max_unavailable) in ("0", "0%"):
            raise ValueError(BOTH_ZERO)
        return self


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
    """How the server (Prometheus, or a web metric's endpoint) is verified over HTTPS."""

    ca_secret_ref: SecretKeyRef | None = Field(
        default=None, description="PEM CA bundle, from a Secret: the server's certificate must chain to one of "
        "these CAs (instead of the system's).")
    insecure_skip_verify: bool = Field(default=False, description="Do not verify the server certificate.")


class PrometheusConfig(Model):
    address: Annotated[str, AfterValidator(_url)] = Field(
        default="http://prometheus.monitoring:9090", pattern=URL_PATTERN, max_length=2048,
        description="Base URL of Prometheus (http or https, an optional port and path).",
        json_schema_extra=_rules(_cel(
            "isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != '' && "
            "(url(self).getPort() == '' || (int(url(self).getPort()) >= 1 && int(url(self).getPort()) <= 65535))",
            URL_MESSAGE,
        )),
    )
    timeout: Timeout = Field(
        default="5s", description="Per-query timeout (at most 1m)."
    )
    bearer_token_secret_ref: SecretKeyRef | None = Field(default=None, description="Bearer token, from a Secret.")
    tls: TLSConfig | None = Field(default=None, description="TLS settings.")


class NoData(StrEnum):
    INCONCLUSIVE = "inconclusive"
    HOLD = "hold"
    FAIL = "fail"


class MinSamples(Model):
    query: str = Field(
        min_length=1, max_length=MAX_QUERY, description="Query for the number of requests the version has served."
    )
    at_least: float = Field(ge=0, description="Below this, the step waits instead of judging.")


class Compare(Model):
    """Candidate against stable: the query is run with {{track}} = canary and = stable."""

    query: str = Field(
        min_length=1, max_length=MAX_QUERY, description="Query template; {{track}} selects the track."
    )
    test: Literal["mann-whitney"] = Field(default="mann-whitney", description="The statistical test.")
    max_increase: str = Field(
        default="10%", pattern=PERCENT_PATTERN, description="Largest tolerated increase of the canary's median."
    )
    confidence: float = Field(default=0.95, gt=0, lt=1, description="Confidence needed to call it a regression.")


ABORT_NEEDS_QUERY = "abortCondition needs a query or web metric: a compare or job metric has no single value to test"
ONE_SOURCE = "a metric needs exactly one of query, compare, web or job"
NEEDS_CONDITION = "a metric with a query or web needs successCondition or failureCondition"
JOB_NO_CONDITION = ("a job metric is judged by its exit code: it takes no successCondition, failureCondition "
                    "or minSamples")
WEB_URL_PATTERN = r"^https?://[^\s/?#]+[^\s#]*$"


class WebMetric(Model):
    """A number from an HTTP endpoint: the JSON answer, at `jsonPath`, is the `result` the metric's
    CEL conditions judge. The address must be on the operator's allowlist (as Prometheus's), and a
    token or CA comes only from a Secret labelled sluice.dev/analysis-credential=true. The answer itself
    is never written to status: only the number, or why there is none."""

    url: str = Field(pattern=WEB_URL_PATTERN, max_length=2048,
                     description="The URL (http or https; a query string is allowed). Not templated.")
    method: Literal["GET", "POST"] = Field(default="GET", description="GET, or POST with `body`.")
    body: str | None = Field(
        default=None, max_length=MAX_QUERY,
        description="JSON body of a POST. Variables {{release}}, {{namespace}}, {{version}}, {{track}} and the "
        "Release's analysisArgs are substituted as JSON string contents (escaped), so each must sit inside quotes.",
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers (not secret).")
    bearer_token_secret_ref: SecretKeyRef | None = Field(default=None, description="Bearer token, from a Secret.")
    tls: TLSConfig | None = Field(default=None, description="TLS settings, for an https URL.")
    json_path: str = Field(min_length=1, max_length=512,
                           description="JSONPath to the number in the answer, e.g. $.data.errorRate.")
    timeout: Timeout = Field(default="5s", description="Per-request timeout (at most 1m).")

    @model_validator(mode="after")
    def _body_only_with_post(self) -> WebMetric:
        if self.body is not None and self.method != "POST":
            raise ValueError("a web metric's body needs method POST")
        return self


class JobMetric(Model):
    """A measurement that runs a pod (smoke tests against <name>-preview or <name>-canary): exit
    code 0 is a success, anything else a failure with the end of its log in the measurement's
    message. One Job per measurement, named from the rollout, so a restart never runs one twice."""

    template: PodTemplate = Field(
        description="The pod to run. restartPolicy defaults to Never; the pod gets SLUICE_RELEASE, "
        "SLUICE_NAMESPACE, SLUICE_VERSION, SLUICE_TRACK and SLUICE_SERVICE (the Service that reaches the "
        "candidate: <name>-preview, <name>-canary or <name>) in its environment."
    )
    timeout: DayDuration | None = Field(
        default=None, description="Longest one run may take (at most 24h); then it fails. Absent: progressDeadline."
    )


class Metric(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("[has(self.query), has(self.compare), has(self.web), has(self.job)].filter(x, x).size() == 1",
                     ONE_SOURCE),
                _cel(
                    "!(has(self.query) || has(self.web)) || has(self.successCondition) || has(self.failureCondition)",
                    NEEDS_CONDITION,
                ),
                _cel("!has(self.abortCondition) || has(self.query) || has(self.web)", ABORT_NEEDS_QUERY),
                _cel("!has(self.job) || !(has(self.successCondition) || has(self.failureCondition) || "
                     "has(self.minSamples))", JOB_NO_CONDITION),
            ]
        }
    )

    name: str = Field(pattern=DNS_LABEL_PATTERN, max_length=63, description="Name of the metric.")
    query: str | None = Field(
        default=None, min_length=1, max_length=MAX_QUERY,
        description="PromQL template. Variables: {{release}}, {{namespace}}, {{version}}, {{track}} and "
        "the Release's analysisArgs; values are escaped for PromQL string literals.",
    )
    success_condition: str | None = Field(
        default=None, min_length=1, max_length=MAX_CONDITION,
        description="CEL over `result` (a number); true is a success."
    )
    failure_condition: str | None = Field(
        default=None, min_length=1, max_length=MAX_CONDITION,
        description="CEL over `result` (a number); true is a failure."
    )
    abort_condition: str | None = Field(
        default=None, min_length=1, max_length=MAX_CONDITION,
        description="CEL over `result` (a number); true for one measurement fails the analysis at once, "
        "whatever failureLimit says (then onFailure applies): a tripwire for the catastrophic case, "
        "e.g. result > 0.5. Only for a query or web metric; not tested below minSamples or on no data."
    )
    failure_limit: int = Field(
        default=0, ge=0,
        description="Failed measurements tolerated before the run fails (abortCondition tolerates none).",
    )
    consecutive_error_limit: int = Field(
        default=4, ge=1, description="Provider errors in a row before the run counts as failed."
    )
    no_data: NoData = Field(
        default=NoData.INCONCLUSIVE,
        description="An empty result or NaN (for a web metric: no value at jsonPath, or null): inconclusive "
        "(pauses the rollout), hold (wait for data, within progressDeadline) or fail.",
    )
    min_samples: MinSamples | None = Field(default=None, description="Too little traffic: wait, don't judge.")
    compare: Compare | None = Field(default=None, description="Statistical comparison with the stable version.")
    web: WebMetric | None = Field(default=None, description="A number from an HTTP endpoint's JSON answer.")
    job: JobMetric | None = Field(default=None, description="A pod whose exit code is the verdict (smoke tests).")

    @model_validator(mode="after")
    def _one_source(self) -> Metric:
        sources = [self.query, self.compare, self.web, self.job]
        if sum(source is not None for source in sources) != 1:
            raise ValueError(ONE_SOURCE)
        if (self.query or self.web) and not (self.success_condition or self.failure_condition):
            raise ValueError(NEEDS_CONDITION)
        if self.job and (self.success_condition or self.failure_condition or self.min_samples):
            raise ValueError(JOB_NO_CONDITION)
        return self


class Analysis(Model):
    interval: Interval = Field(
        default="30s",
        description="Time between measurements of a metric once it has a verdict (1s to 1h, and at most "
        "progressDeadline). The first is taken when the analysis starts; until a metric has data (and "
        "minSamples), it is polled every 2s.",
    )
    count: int = Field(default=3, ge=1, le=100, description="Measurements an analysis step takes.")
    prometheus: PrometheusConfig = Field(default_factory=PrometheusConfig, description="Where metrics come from.")
    metrics: list[Metric] = Field(default_factory=list, max_length=MAX_METRICS, description="What to measure.")


class OnFailure(StrEnum):
    ROLLBACK = "rollback"
    PAUSE = "pause"


class Requirement(Model):
    namespace: str = Field(
        pattern=DNS_LABEL_PATTERN, max_length=63,
        description=("The same-named Release there must run this version first: checked on the stable "
                     "Deployment Sluice manages for it (fully rolled out, this version, this Release's images), "
                     "not on that Release's status."),
    )


class Bake(Model):
    """After the candidate took all traffic, before it becomes the stable version, keep judging it
    for a while with the previous version kept warm: a breach rolls back to it at once."""

    duration: DayDuration = Field(description="How long to watch the candidate at 100% before promotion (at most 24h).")
    metrics: list[MetricName] | None = Field(
        default=None, min_length=1, max_length=MAX_METRICS,
        description="Names of the policy's metrics to run (from spec.analysis.metrics). Absent: all of them.",
    )


NOTIFY_ON = ("started", "step", "paused", "promoted", "rolledBack", "failed", "hook")
ONE_URL = "a target needs exactly one of url or urlSecretRef"


class WebhookTarget(Model):
    """Where a notification is POSTed. A URL in a Secret (Slack's webhook URL is a credential) is
    read only if the Secret carries the label sluice.dev/analysis-credential=true; either way the
    address must be on the operator's allowlist. A generic webhook may be signed, with a key from a
    Secret under the same rule."""

    model_config = ConfigDict(json_schema_extra=_rules(_cel("has(self.url) != has(self.urlSecretRef)", ONE_URL)))

    url: str | None = Field(default=None, pattern=URL_PATTERN, max_length=2048, description="The URL.")
    url_secret_ref: SecretKeyRef | None = Field(default=None, description="The URL, from a Secret.")
    signing_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="For a webhook target (not slack): a key, from a Secret, that signs each request with the "
        "header Sluice-Signature: sha256=<hex HMAC-SHA256 of the body>, as GitHub's X-Hub-Signature-256. If the "
        "key cannot be read, nothing is sent: never an unsigned request.",
    )

    @model_validator(mode="after")
    def _one(self) -> WebhookTarget:
        if (self.url is None) == (self.url_secret_ref is None):
            raise ValueError(ONE_URL)
        return self


ONE_KIND = "a notify target needs exactly one of webhook or slack"
UNSIGNED_SLACK = "signingSecretRef is for webhook targets only: Slack does not check a signature"


class NotifyTarget(Model):
    """One receiver of a Release's phase changes. Sending is retried with backoff in the background:
    it never blocks or slows a rollout."""

    model_config = ConfigDict(json_schema_extra=_rules(
        _cel("has(self.webhook) != has(self.slack)", ONE_KIND),
        _cel("!has(self.slack) || !has(self.slack.signingSecretRef)", UNSIGNED_SLACK),
    ))

    name: str = Field(pattern=DNS_LABEL_PATTERN, max_length=63, description="Name of the target.")
    webhook: WebhookTarget | None = Field(default=None, description="A generic JSON webhook.")
    slack: WebhookTarget | None = Field(default=None, description="A Slack-compatible incoming webhook.")
    events: list[Literal["started", "step", "paused", "promoted", "rolledBack", "failed", "hook"]] | None = Field(
        default=None, min_length=1,
        description="What to send: started, step, paused (for a person), promoted, rolledBack, failed, hook. "
        "Absent: all of them.",
    )

    @model_validator(mode="after")
    def _one(self) -> NotifyTarget:
        if (self.webhook is None) == (self.slack is None):
            raise ValueError(ONE_KIND)
        if self.slack is not None and self.slack.signing_secret_ref is not None:
            raise ValueError(UNSIGNED_SLACK)
        return self


class Link(Model):
    """A link the deployment report hands to operations: a runbook, a dashboard."""

    name: str = Field(min_length=1, max_length=63, description="What it is, e.g. runbook.")
    url: str = Field(pattern=URL_PATTERN, max_length=2048, description="Where it is.")


UNKNOWN_METRIC = "an analysis step names a metric that spec.analysis.metrics does not define"
BAKE_METRICS = "bake needs spec.analysis.metrics, and names only metrics it defines"
LONG_INTERVAL = "analysis.interval must not exceed progressDeadline, so that no wait for data outlives the deadline"


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
                _cel(
                    "!has(self.strategy.canary) || self.strategy.canary.steps.all(s, !has(s.analysis) || "
                    "!has(s.analysis.metrics) || s.analysis.metrics.all(n, has(self.analysis) && "
                    "has(self.analysis.metrics) && self.analysis.metrics.exists(m, m.name == n)))",
                    UNKNOWN_METRIC,
                    ".strategy.canary.steps",
                ),
                _cel(
                    "!has(self.analysis) || !has(self.analysis.interval) || "
                    "duration(self.analysis.interval) <= duration(self.progressDeadline)",
                    LONG_INTERVAL,
                    ".analysis.interval",
                ),
                _cel(
                    "!has(self.bake) || (has(self.analysis) && has(self.analysis.metrics) && "
                    "size(self.analysis.metrics) > 0 && (!has(self.bake.metrics) || self.bake.metrics.all(n, "
                    "self.analysis.metrics.exists(m, m.name == n))))",
                    BAKE_METRICS,
                    ".bake",
                ),
                _cel("!has(self.notify) || self.notify.all(t, self.notify.exists_one(o, o.name == t.name))",
                     "notify target names must be unique", ".notify"),
            ]
        }
    )

    strategy: Strategy = Field(description="How traffic moves to the new version.")
    analysis: Analysis = Field(default_factory=Analysis, description="How each version is judged.")
    progress_deadline: DayDuration = Field(
        default="10m",
        description="Longest wait for the candidate to become Ready or for analysis data; then the rollout fails.",
    )
    on_failure: OnFailure = Field(
        default=OnFailure.ROLLBACK,
        description="rollback (traffic back to stable) or pause (freeze, e.g. after a one-way migration).",
    )
    requires: list[Requirement] = Field(
        default_factory=list, max_length=20,
        description="Environments where this version must be running first (checked on their Deployments).",
    )
    bake: Bake | None = Field(
        default=None, description="Keep judging the new version at 100% before promotion, the old one kept warm."
    )
    notify: list[NotifyTarget] = Field(
        default_factory=list, max_length=10, description="Who is told about phase changes (webhooks, Slack)."
    )
    links: list[Link] = Field(
        default_factory=list, max_length=10,
        description="Links for the deployment report's operations handoff (runbook, dashboard).",
    )

    @model_validator(mode="after")
    def _steps_name_known_metrics(self) -> RolloutPolicySpec:
        known = {metric.name for metric in self.analysis.metrics}
        steps = self.strategy.canary.steps if self.strategy.canary else []
        unknown = [(i, name) for i, step in enumerate(steps) if step.analysis
                   for name in step.analysis.metrics or [] if name not in known]
        if unknown:
            named = ", ".join(f"{name!r} (step {i})" for i, name in unknown)
            raise ValueError(f"{UNKNOWN_METRIC}: {named}")
        return self

    @model_validator(mode="after")
    def _bake_names_known_metrics(self) -> RolloutPolicySpec:
        known = {metric.name for metric in self.analysis.metrics}
        if self.bake is not None and (not known or not set(self.bake.metrics or known) <= known):
            raise ValueError(BAKE_METRICS)
        return self

    @model_validator(mode="after")
    def _unique_targets(self) -> RolloutPolicySpec:
        names = [target.name for target in self.notify]
        if len(names) != len(set(names)):
            raise ValueError("notify target names must be unique")
        return self

    @model_validator(mode="after")
    def _interval_within_deadline(self) -> RolloutPolicySpec:
        if parse_duration(self.analysis.interval) > parse_duration(self.progress_deadline):
            raise ValueError(LONG_INTERVAL)
        return self


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
    failed_no_data: int = 0  # of `failed`, those with no data (noData: fail): they never count toward `count`
    inconclusive: int = 0
    errors: int = 0
    consecutive_errors: int = 0
    last_measured_at: str | None = None
    data_seen: bool = False  # a measurement of this run had data: noData applies from now on
    waiting_since: str | None = None  # first Waiting measurement since the last judged one
    waiting_for_traffic: bool = False  # ...and it waits for minSamples, not for data
    tripped_by: str | None = None  # the value (as shown) that met abortCondition: the run has failed
    job: str | None = None  # a job metric's measurement in progress: the Job that will give its verdict


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
    changes: list[str] = Field(default_factory=list)  # what changed against the stable before it


class HookRun(StatusModel):
    """One hook's Job in one rollout: what `sluice report` and `sluice get` show."""

    rollout: str  # the rollout's id (status.rolloutId when it ran): one Job per hook per rollout
    stage: Literal["preRollout", "postPromotion", "postRollback"]
    hook: str
    job: str
    version: str
    state: Literal["Pending", "Running", "Succeeded", "Failed"] = "Pending"
    started_at: str
    finished_at: str | None = None
    message: str = ""


class PolicySnapshot(StatusModel):
    """The RolloutPolicy a rollout started with: an edit mid-rollout never skips a step or an analysis."""

    name: str
    generation: int | None = None
    hash: str
    spec: dict[str, Any] = Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
    ignored_hash: str | None = None  # a later edit of the live policy, announced once as not applying


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
    rollout_id: str | None = None  # names this rollout's hook Jobs: unique per rollout, retries included
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
    input_problem: str | None = None  # input found unusable while measuring (a Secret gone, a query refused)
    events: list[PendingEvent] = Field(default_factory=list)  # the last decision's events (outbox)
    event_seq: int = 0
    replicas: dict[str, int] = Field(default_factory=dict)  # ready pods per track, for `sluice get`
    hooks: list[HookRun] = Field(default_factory=list)  # the hook Jobs of recent rollouts (bounded)


class PolicyStatus(StatusModel):
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None
    message: str = ""

"""`sluice lint`: Release and RolloutPolicy manifests checked offline, as the API server would
check them (the schema, and the CRDs' own CEL rules, evaluated with cel-expr-python) and beyond
(query templates render, conditions compile, referenced policies exist in the same files).
Each problem is reported as file:line; warnings (valid, but probably not what was meant) too,
without failing the run. Given the operator's notification allowlist (`--webhook-allow`, or
SLUICE_WEBHOOK_ALLOW), it warns of notify targets the operator would send nothing to; Secrets in
the same files that a target's urlSecretRef or signingSecretRef names are checked for the label the
operator needs."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
import yaml
from pydantic import ValidationError

from sluice import API_VERSION
from sluice.analysis import cel, judge
from sluice.analysis.addresses import WEBHOOK, Allowlist, origin, usable_url
from sluice.analysis.judge import problems
from sluice.api.crdgen import policy_crd, release_crd
from sluice.api.durations import DURATION_PATTERN, parse_duration
from sluice.api.models import (
    DNS_LABEL_PATTERN,
    PERCENT_PATTERN,
    SEMVER_PATTERN,
    URL_PATTERN,
    WEB_URL_PATTERN,
    ReleaseSpec,
    RolloutPolicySpec,
    SecretKeyRef,
)
from sluice.kube.objects import CREDENTIAL_LABEL
from sluice.plan.types import canary_replicas, effective_weight

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    message: str
    severity: str = "error"  # or "warning": printed, but the run still passes

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.severity}: {self.message}"


def _load(node: yaml.Node, lines: dict[Path_, int], path: Path_ = ()) -> Any:
    """A YAML node as Python data, noting the line of every path in `lines` (1-based)."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        return {key.value: _load(value, lines, (*path, key.value)) for key, value in node.value}
    if isinstance(node, yaml.SequenceNode):
        return [_load(item, lines, (*path, i)) for i, item in enumerate(node.value)]
    return yaml.safe_load(yaml.serialize(node))


BOOLEAN = "tag:yaml.org,2002:bool"


def _boolean_keys(node: yaml.Node, path: Path_ = ()) -> list[Path_]:
    """Keys written as a plain YAML 1.1 boolean (on, off, yes, no): kubectl reads `on:` as the key
    "true", which the API server then refuses as an unknown field, or drops. (Sluice's API has no
    such key; a person used to GitHub Actions may still write `on:` for a notify target's `events`.)"""
    found: list[Path_] = []
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.tag == BOOLEAN and not key.style:
                found.append((*path, key.value))
            found += _boolean_keys(value, (*path, key.value))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found += _boolean_keys(item, (*path, i))
    return found


def _line(lines: dict[Path_, int], path: Path_) -> int:
    for cut in range(len(path), -1, -1):
        if path[:cut] in lines:
            return lines[path[:cut]]
    return 1


def _dotted(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _cel(schema: dict[str, Any], value: Any, path: Path_, found: list[tuple[Path_, str]]) -> None:
    """Evaluate the schema's x-kubernetes-validations rules on `value`, recursively."""
    for rule in schema.get("x-kubernetes-validations", []):
        # None: a rule that cannot be evaluated offline (isURL...) is left to the API server
        if cel.rule_holds(rule["rule"], value) is False:
            found.append((path, rule["message"]))
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key in value:
                _cel(sub, value[key], (*path, key), found)
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            _cel(schema["items"], item, (*path, i), found)


PATTERNS = {
    SEMVER_PATTERN: "must be a semantic version such as 1.4.2",
    DURATION_PATTERN: "must be a duration such as 30s, 2m or 1h30m",
    DNS_LABEL_PATTERN: "must be a DNS label: lowercase letters, digits and '-'",
    PERCENT_PATTERN: "must be a percentage such as 10%",
    URL_PATTERN: "must be an http(s) URL such as http://prometheus.monitoring:9090: no spaces, query or fragment",
    WEB_URL_PATTERN: "must be an http(s) URL such as http://health-api.monitoring:8080/v1/rate?window=1m: no spaces "
                     "or fragment",
}


def _pydantic(error: ValidationError, aliases: type[Any]) -> list[tuple[Path_, str]]:
    out: list[tuple[Path_, str]] = []
    for item in error.errors():
        loc = tuple(p for p in item["loc"] if not (isinstance(p, str) and "[" in p))
        message = PATTERNS.get((item.get("ctx") or {}).get("pattern", ""), item["msg"])
        message = message.removeprefix("Value error, ")  # the models' own rules, worded as the CRD's
        if item["type"] == "string_pattern_mismatch" and message != item["msg"]:
            message = f"{item['input']!r} {message}"
        out.append((("spec", *loc), message))
    return out


# A setWeight that replica ratio misses by more than this many points of traffic is worth a warning.
RATIO_SLACK = 5


def ratio_weight(replicas: int, weight: int) -> int:
    """The traffic a setWeight really gets by replica ratio, where a canary below 100% runs beside
    at least one stable pod: ratio_weight(1, 10) == 50 (1 canary pod, 1 stable pod),
    ratio_weight(4, 10) == 25, ratio_weight(10, 10) == 10, ratio_weight(4, 100) == 100."""
    canary = canary_replicas(replicas, weight)
    stable = 0 if weight >= 100 else max(replicas - canary, 1)
    return effective_weight(canary, stable)


def _ratio_warnings(release: ReleaseSpec, policy: RolloutPolicySpec) -> list[str]:
    """setWeight steps that replica ratio cannot honour with this many replicas."""
    if release.traffic_routing is not None or policy.strategy.canary is None or release.replicas == 0:
        return []
    out: list[str] = []
    for weight in dict.fromkeys(s.set_weight for s in policy.strategy.canary.steps if s.set_weight is not None):
        real = ratio_weight(release.replicas, weight)
        if abs(real - weight) > RATIO_SLACK:
            out.append(f"setWeight {weight} becomes {real}% with replicas {release.replicas} by replica ratio; "
                       "use trafficRouting or more replicas")
    if policy.bake is not None and any(s.set_weight == 100 for s in policy.strategy.canary.steps):
        out.append("setWeight 100 by replica ratio scales the previous version to zero, and the bake then has to "
                   "start it again: a breach early in the bake waits for its pods. End the steps below 100; "
                   "the bake itself moves all traffic to the candidate with the previous version kept warm")
    return out


def bake_warnings(policy: RolloutPolicySpec) -> list[str]:
    """A bake that is valid but probably not what was meant."""
    bake = policy.bake
    if bake is None:
        return []
    out: list[str] = []
    if policy.strategy.rolling is not None:
        out.append("a bake after a rolling update keeps nothing warm: a breach rolls back in place, by a rolling "
                   "update to the previous version that waits for its pods; a canary or blue-green strategy "
                   "keeps the previous version Ready for an instant rollback")
    interval = parse_duration(policy.analysis.interval)
    if parse_duration(bake.duration) < 2 * interval:
        out.append(f"bake.duration {bake.duration} is shorter than two analysis intervals ({policy.analysis.interval} "
                   "each): the bake measures only as it begins and at its end")
    return out


def _hook_warnings(release: ReleaseSpec) -> list[tuple[Path_, str]]:
    """Hook pods never carry the labels Sluice's Services select on: a template that sets them
    was probably copied from the application's, and Sluice drops them."""
    out: list[tuple[Path_, str]] = []
    stages = {"preRollout": release.hooks.pre_rollout, "postPromotion": release.hooks.post_promotion,
              "postRollback": release.hooks.post_rollback} if release.hooks else {}
    for stage, hooks in stages.items():
        for index, hook in enumerate(hooks):
            labels = (hook.template.metadata.get("labels") or {}) if isinstance(hook.template.metadata, dict) else {}
            dropped = sorted(set(labels) & {"app.kubernetes.io/name", "app.kubernetes.io/version", "sluice.dev/track"})
            if dropped:
                out.append((("spec", "hooks", stage, index, "template", "metadata", "labels"),
                            f"hook {hook.name}: Sluice removes {', '.join(dropped)} from the hook's pods, so that "
                            "no Service of the Release ever sends them traffic"))
    return out


def _policy_warnings(policy: RolloutPolicySpec) -> list[str]:
    """The judge's own warnings (e.g. a ratio whose numerator can be empty), where it has them."""
    if not hasattr(judge, "warnings"):
        return []
    return [str(w) for w in judge.warnings(policy)]


def _secret_text(secret: dict[str, Any], key: str) -> str | None:
    """The value under `key` of a Secret manifest (stringData, else base64 data), or None."""
    plain = secret.get("stringData") or {}
    if isinstance(plain, dict) and isinstance(plain.get(key), str):
        return str(plain[key]).strip()
    data = secret.get("data") or {}
    if not isinstance(data, dict) or not isinstance(data.get(key), str):
        return None
    try:
        return base64.b64decode(data[key], validate=True).decode("utf-8").strip()
    except (binascii.Error, ValueError):
        return None


def _secret_among(secrets: dict[tuple[str | None, str], Any], namespace: str | None, name: str) -> Any:
    """The Secret `name` among the files, in `namespace` or (a document without one) by name alone."""
    return secrets.get((namespace, name)) or next(
        (body for (where, found), body in secrets.items() if found == name and (where is None or namespace is None)),
        None)


def _unlabelled(secret: dict[str, Any]) -> bool:
    labels = (secret.get("metadata") or {}).get("labels") or {}
    return str(labels.get(CREDENTIAL_LABEL)).lower() != "true"


def _signing_warnings(target: str, ref: SecretKeyRef | None, where: Path_, namespace: str | None,
                      secrets: dict[tuple[str | None, str], Any]) -> list[tuple[Path_, str]]:
    """A signing key's Secret among the files that the operator would not read, or that has no key:
    either way the operator sends the target nothing (never an unsigned request)."""
    secret = _secret_among(secrets, namespace, ref.name) if ref is not None else None
    if ref is None or secret is None:  # not among the files: nothing to check offline
        return []
    if _unlabelled(secret):
        return [(where, f"notify target {target}: Secret {ref.name}, its signing key, has no label "
                        f"{CREDENTIAL_LABEL}=true, so the operator will not read it and sends nothing")]
    if not _secret_text(secret, ref.key):
        return [(where, f"notify target {target}: Secret {ref.name} has no signing key under key {ref.key}, so "
                        "nothing is sent")]
    return []


def _notify_warnings(policy: RolloutPolicySpec, namespace: str | None, secrets: dict[tuple[str | None, str], Any],
                     allowed: Allowlist | None) -> list[tuple[Path_, str]]:
    """Notify targets the operator would skip: an address off the given allowlist, a Secret among
    the files (a URL's or a signing key's) without the label the operator reads Secrets by, or with
    no usable URL or key. An address is shown as its origin only: a webhook's path is its credential."""
    out: list[tuple[Path_, str]] = []
    for i, target in enumerate(policy.notify):
        field = "webhook" if target.webhook else "slack"
        hook = target.webhook or target.slack
        assert hook is not None
        out += _signing_warnings(target.name, hook.signing_secret_ref,
                                 ("spec", "notify", i, field, "signingSecretRef"), namespace, secrets)
        url: str | None = hook.url
        where: Path_ = ("spec", "notify", i, field, "url")
        ref = hook.url_secret_ref
        if ref is not None:
            where = ("spec", "notify", i, field, "urlSecretRef")
            secret = _secret_among(secrets, namespace, ref.name)
            if secret is None:
                continue  # not among the files: nothing to check offline
            if _unlabelled(secret):
                out.append((where, f"notify target {target.name}: Secret {ref.name} has no label "
                                   f"{CREDENTIAL_LABEL}=true, so the operator will not read it and sends nothing"))
                continue
            url = _secret_text(secret, ref.key)
            if url is None or not usable_url(url):
                out.append((where, f"notify target {target.name}: Secret {ref.name} has no http(s) URL under key "
                                   f"{ref.key}, so nothing is sent"))
                continue
        if url is None or allowed is None or not allowed or not usable_url(url):
            continue
        if not allowed.allows(url):
            out.append((where, f"notify target {target.name}: {origin(url)} is not on the {WEBHOOK.flag} list "
                               f"given ({allowed}), so the operator would send nothing to it"))
    return out


def _echo(finding: Finding) -> None:
    typer.echo(str(finding), err=True)


def lint(files: list[str], warn: Callable[[Finding], None] = _echo,
         webhook_allow: Allowlist | None = None) -> tuple[list[Finding], int]:
    """Errors over every file, and how many Sluice documents were checked. Warnings go to `warn`
    (stderr by default) and are not among the errors: they do not fail the run. `webhook_allow`
    is the operator's notification allowlist, if the caller knows it."""
    findings: list[Finding] = []
    documents: list[tuple[str, dict[str, Any], dict[Path_, int]]] = []
    secrets: dict[tuple[str | None, str], Any] = {}  # (namespace, name) -> a Secret among the files
    for name in files:
        try:
            text = Path(name).read_text()
            nodes = list(yaml.compose_all(text))
        except OSError as error:
            findings.append(Finding(name, 1, f"cannot read: {error.strerror}"))
            continue
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            findings.append(Finding(name, mark.line + 1 if mark else 1, f"not valid YAML: {error}"))
            continue
        for node in nodes:
            if node is None:
                continue
            lines: dict[Path_, int] = {}
            body = _load(node, lines)
            if isinstance(body, dict) and body.get("apiVersion") == API_VERSION:
                documents.append((name, body, lines))
                who = f"{body.get('kind')} {(body.get('metadata') or {}).get('name', '?')}"
                findings += [Finding(name, _line(lines, path), f"{who}: {_dotted(path)}: kubectl reads the unquoted "
                                     f"key {path[-1]} as true (YAML 1.1), so the API server never sees it: "
                                     f'write "{path[-1]}":') for path in _boolean_keys(node)]
            elif isinstance(body, dict) and body.get("apiVersion") == "v1" and body.get("kind") == "Secret":
                meta = body.get("metadata") or {}
                secrets[(meta.get("namespace"), str(meta.get("name")))] = body
    policies: dict[str, RolloutPolicySpec | None] = {}
    for _, body, _ in documents:
        if body.get("kind") == "RolloutPolicy":
            key = body.get("metadata", {}).get("name")
            try:
                policies[key] = RolloutPolicySpec.model_validate(body.get("spec") or {})
            except ValidationError:
                policies[key] = None  # its errors are reported with the policy itself
    crds = {"Release": release_crd(), "RolloutPolicy": policy_crd()}
    for name, body, lines in documents:
        kind = body.get("kind")
        found: list[tuple[Path_, str]] = []
        warnings: list[tuple[Path_, str]] = []
        if kind not in crds:
            findings.append(Finding(name, _line(lines, ("kind",)), f"unknown kind {kind!r} in {API_VERSION}"))
            continue
        model = ReleaseSpec if kind == "Release" else RolloutPolicySpec
        try:
            parsed = model.model_validate(body.get("spec") or {})
        except ValidationError as error:
            found += _pydantic(error, model)
            parsed = None
        schema = crds[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        rules: list[tuple[Path_, str]] = []
        _cel(schema, body, (), rules)
        # A rule the models enforce too is one problem, reported once (the models' wording is fuller).
        found += [(path, message) for path, message in rules
                  if not any(other.startswith(message) for _, other in found)]
        if isinstance(parsed, RolloutPolicySpec):
            found += [(("spec", "analysis"), problem) for problem in problems(parsed)]
            warnings += [(("spec", "analysis"), warning) for warning in _policy_warnings(parsed)]
            warnings += _notify_warnings(parsed, (body.get("metadata") or {}).get("namespace"), secrets,
                                         webhook_allow)
            warnings += [(("spec", "bake"), warning) for warning in bake_warnings(parsed)]
        if isinstance(parsed, ReleaseSpec):
            warnings += _hook_warnings(parsed)
        if isinstance(parsed, ReleaseSpec) and parsed.policy_ref:
            if parsed.policy_ref.name not in policies:
                found.append((("spec", "policyRef", "name"),
                              f"RolloutPolicy {parsed.policy_ref.name!r} is not among the given files"))
            elif (policy := policies[parsed.policy_ref.name]) is not None:
                warnings += [(("spec", "replicas"), warning) for warning in _ratio_warnings(parsed, policy)]
        who = f"{kind} {body.get('metadata', {}).get('name', '?')}"
        for path, message in found:
            where = _dotted(path)
            findings.append(Finding(name, _line(lines, path), f"{who}: {where}: {message}" if where else message))
        for path, message in warnings:
            warn(Finding(name, _line(lines, path), f"{who}: {_dotted(path)}: {message}", "warning"))
    return findings, len(documents)

"""`sluice pipeline`: one version's way through the environments a Release's `requires` chain names.

From the Release asked about (prod, say) the chain is followed upstream through each policy's
`requires` (prod -> staging -> dev) and shown in the order a version travels (dev, staging,
prod): each environment's versions and phase, whether the version has run there, and the gate
into it. "Has run there" is decided by plan.requires on facts built by kube.upstream, exactly as
the operator's gate decides, and a gate whose Release already asks for the version shows the very
message the operator writes into its status. Reading is one function; everything after it is pure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import ValidationError
from rich.table import Table
from rich.text import Text

from sluice import API_VERSION
from sluice.api.models import Phase, ReleaseSpec, ReleaseStatus, RolloutPolicySpec
from sluice.cli.view import PHASE_STYLE
from sluice.kube import objects
from sluice.kube.upstream import declared_by, upstream
from sluice.plan import requires
from sluice.plan.types import Upstream

Body = dict[str, Any]
MAX_ENVIRONMENTS = 20  # a chain longer than this is a mistake (or a cycle), not a pipeline


@dataclass(frozen=True)
class Environment:
    """What was read in one namespace: the same-named Release, its stable Deployment, and the
    namespaces its live policy `requires` (the operator gates on the live policy too)."""

    namespace: str
    release: Body | None = None
    deployment: Body | None = None
    requires: tuple[str, ...] = ()
    problem: str | None = None  # why its policy could not be read (its gate is then unknown)


@dataclass(frozen=True)
class Row:
    """One environment as the pipeline view shows it."""

    namespace: str
    release: bool
    desired_version: str | None
    stable_version: str | None
    candidate_version: str | None
    phase: str | None
    message: str
    requires: tuple[str, ...]
    ran: bool  # the version runs here, verified the way the gate verifies it
    why_not: str | None  # ...or why not
    gate: str | None  # why the gate into this environment is closed for the version; None: open


def order(start: str, requires_of: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Namespaces upstream first, `start` last; each once, whatever cycles the policies make:
    order("prod", {"prod": ("staging",), "staging": ("dev",)}) == ["dev", "staging", "prod"]."""
    found: list[str] = []
    seen: set[str] = set()

    def visit(namespace: str) -> None:
        if namespace in seen:
            return
        seen.add(namespace)
        for required in requires_of.get(namespace, ()):
            visit(required)
        found.append(namespace)

    visit(start)
    return found


def _spec(release: Body | None) -> ReleaseSpec | None:
    try:
        return ReleaseSpec.model_validate(release["spec"]) if release else None
    except (ValidationError, KeyError):
        return None


def artifact(version: str, downstream_first: list[Environment]) -> dict[str, str]:
    """The images of `version` (container name -> image): as the most downstream Release that
    declares the version (its spec, or the stable template its status keeps) declares them."""
    for env in downstream_first:
        for declared in declared_by(env.release) if env.release else ():
            if declared.version == version:
                return dict(declared.images)
    return {}


def rows(name: str, environments: Mapping[str, Environment], start: str, version: str) -> list[Row]:
    """The pipeline of Release `name` from namespace `start`, for `version`."""
    names = order(start, {ns: env.requires for ns, env in environments.items()})
    wanted = artifact(version, [environments[ns] for ns in reversed(names)])

    def facts(namespace: str) -> Upstream:
        env = environments.get(namespace, Environment(namespace))
        return upstream(namespace, name, env.release, env.deployment)

    found: list[Row] = []
    for namespace in names:
        env = environments.get(namespace, Environment(namespace))
        spec = _spec(env.release)
        status = _status(env.release)
        why = requires.why_not(version, wanted, facts(namespace))
        found.append(Row(
            namespace=namespace, release=env.release is not None,
            desired_version=spec.version if spec else None,
            stable_version=status.stable_version if status else None,
            candidate_version=status.candidate_version if status else None,
            phase=status.phase.value if status and env.release and env.release.get("status") else None,
            message=status.message if status else "", requires=env.requires,
            ran=why is None, why_not=why, gate=_gate(env, spec, version, wanted, facts)))
    return found


def _status(release: Body | None) -> ReleaseStatus | None:
    try:
        return ReleaseStatus.model_validate(release.get("status") or {}) if release else None
    except ValidationError:
        return None


def _gate(env: Environment, spec: ReleaseSpec | None, version: str, wanted: Mapping[str, str],
          facts: Callable[[str], Upstream]) -> str | None:
    """Why the gate into `env` is closed for `version`: when its Release asks for that version, the
    operator's own message (plan.requires.unmet on its spec); otherwise the message it will give
    once Git names the version there."""
    if env.problem:
        return env.problem
    upstreams = tuple(facts(namespace) for namespace in env.requires)
    if spec is not None and spec.version == version:
        return requires.unmet(spec, upstreams)
    for up in upstreams:
        why = requires.why_not(version, wanted, up)
        if why:
            return requires.sentence(version, up.namespace, why)
    return None


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part.title() for part in rest)


def as_json(name: str, start: str, version: str, found: list[Row]) -> Body:
    """The pipeline as data, field names as the Kubernetes API spells them (stableVersion)."""
    return {"release": name, "namespace": start, "version": version,
            "environments": [{_camel(k): list(v) if k == "requires" else v for k, v in asdict(row).items()}
                             for row in found]}


def _versions(row: Row) -> str:
    if not row.release:
        return "no Release"
    shown = row.stable_version or "-"
    if row.candidate_version:
        shown += f" -> {row.candidate_version}"
    if row.desired_version and row.desired_version not in (row.stable_version, row.candidate_version):
        shown += f" (Git: {row.desired_version})"
    return shown


def _ran(row: Row, version: str) -> str:
    return f"{version} runs here" if row.ran else f"not yet: {row.why_not}"


def _gate_text(row: Row, version: str) -> str:
    if row.gate:
        return row.gate
    if not row.requires:
        return "none (requires nothing)"
    return f"open: {', '.join(row.requires)} run{'s' if len(row.requires) == 1 else ''} {version}"


def plain(name: str, start: str, version: str, found: list[Row]) -> str:
    """The pipeline as plain text, upstream first:

    Pipeline checkout (from prod): version 2.0.0
      dev      2.0.0           Succeeded
               2.0.0 runs here
               gate: none (requires nothing)
      staging  1.0.0 -> 2.0.0  Progressing
               not yet: Deployment checkout in namespace staging runs 1.0.0, not 2.0.0
               gate: open: dev runs 2.0.0
    """
    lines = [f"Pipeline {name} (from {start}): version {version}"]
    width = max(len(row.namespace) for row in found)
    versions = max(len(_versions(row)) for row in found)
    for row in found:
        lines.append(f"  {row.namespace:<{width}}  {_versions(row):<{versions}}  {row.phase or '-'}")
        pad = " " * (width + 4)
        lines.append(f"{pad}{_ran(row, version)}")
        lines.append(f"{pad}gate: {_gate_text(row, version)}")
    return "\n".join(lines)


def rich_view(name: str, start: str, version: str, found: list[Row]) -> Table:
    table = Table(title=f"[bold]{name}[/bold]: version {version} (from {start})", header_style="bold",
                  title_justify="left", expand=False)
    for column in ("Environment", "Versions", "Phase", version, "Gate"):
        table.add_column(column, overflow="fold")
    for row in found:
        phase = Text(row.phase or "-", style=PHASE_STYLE.get(Phase(row.phase), "") if row.phase else "dim")
        ran = Text("✔ runs here", style="green") if row.ran else Text(f"✘ {row.why_not}", style="yellow")
        gate = Text(_gate_text(row, version), style="red" if row.gate else "green" if row.requires else "dim")
        table.add_row(row.namespace, _versions(row), phase, ran, gate)
    return table


def read(get: Callable[[str, str, str, str], Body | None], name: str, start: str) -> dict[str, Environment]:
    """Every environment of the chain from Release `name` in namespace `start`, upstream through
    each live policy's `requires`. `get(api_version, kind, name, namespace)` is the CLI's client."""
    found: dict[str, Environment] = {}
    pending = [start]
    while pending and len(found) < MAX_ENVIRONMENTS:
        namespace = pending.pop(0)
        if namespace in found:
            continue
        release = get(API_VERSION, "Release", name, namespace)
        if release is None:
            found[namespace] = Environment(namespace)
            continue
        deployment = get("apps/v1", "Deployment", objects.deployment_name(name, "stable"), namespace)
        needed, problem = _requires(get, release, namespace)
        found[namespace] = Environment(namespace, release, deployment, needed, problem)
        pending += [n for n in needed if n not in found]
    return found


def _requires(get: Callable[[str, str, str, str], Body | None], release: Body, namespace: str
              ) -> tuple[tuple[str, ...], str | None]:
    ref = ((release.get("spec") or {}).get("policyRef") or {}).get("name")
    if not ref:
        return (), None
    policy = get(API_VERSION, "RolloutPolicy", ref, namespace)
    if policy is None:
        return (), f"RolloutPolicy {ref} not found in namespace {namespace}: no rollout starts"
    try:
        parsed = RolloutPolicySpec.model_validate(policy.get("spec") or {})
    except ValidationError:
        return (), f"RolloutPolicy {ref} in namespace {namespace} is invalid: no rollout starts"
    return tuple(r.namespace for r in parsed.requires), None

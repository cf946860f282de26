"""`sluice`: run the operator, look at Releases and steer them.

Manual actions write a request into the Release's status (never its spec, so Argo CD and
Flux see no drift); the operator carries it out on its next pass, within a second or two.
"""

from __future__ import annotations

import getpass
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from sluice import API_VERSION
from sluice.api.models import Phase, ReleaseStatus

# Help texts are plain text: "[:port][/path-prefix]" must not be read as rich markup.
app = typer.Typer(help="Sluice: progressive delivery for Kubernetes.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False, rich_markup_mode=None)

Namespace = Annotated[str | None, typer.Option("--namespace", "-n", help="Namespace (default: the context's).")]
Context = Annotated[str | None, typer.Option("--context", help="kubeconfig context to use.")]
Kubeconfig = Annotated[str | None, typer.Option("--kubeconfig", envvar="KUBECONFIG", help="kubeconfig file.")]


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _connect(kubeconfig: str | None, context: str | None, namespace: str | None) -> tuple[Any, str]:
    from kubernetes import config as kconfig

    from sluice.kube.client import Kube, load_configuration

    try:
        configuration = load_configuration(kubeconfig, context)
    except Exception as error:
        fail(f"cannot load kubeconfig: {error}")
    if namespace is None:
        try:
            contexts, active = kconfig.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
            if context:
                active = next(c for c in contexts if c["name"] == context)
            namespace = active["context"].get("namespace", "default")
        except Exception:
            namespace = "default"
    return Kube(configuration), namespace


def _release(kube: Any, name: str, namespace: str) -> dict[str, Any]:
    from kubernetes.client import ApiException

    body: dict[str, Any] | None = None
    try:
        body = kube.get_sync(API_VERSION, "Release", name, namespace)
    except ApiException as error:
        fail(f"cannot read Release {name}: {error.reason}")
    except Exception as error:  # connection refused and the like: one line, no traceback
        fail(f"cannot reach the cluster: {error}")
    if body is None:
        fail(f'Release "{name}" not found in namespace {namespace}')
    assert body is not None
    return body


# Which phases each action applies to, and what to say when it does not.
ALLOWED: dict[str, tuple[set[Phase], str]] = {
    "promote": ({Phase.PROGRESSING, Phase.PAUSED}, "there is no rollout in progress to promote"),
    "promote-full": ({Phase.PROGRESSING, Phase.PAUSED}, "there is no rollout in progress to promote"),
    "abort": ({Phase.PROGRESSING, Phase.PAUSED, Phase.PENDING}, "there is no rollout in progress to abort"),
    "retry": ({Phase.ROLLED_BACK, Phase.FAILED, Phase.PAUSED}, "only a rolled-back, failed or paused rollout "
              "can be retried"),
    "pause": ({Phase.PROGRESSING}, "only a progressing rollout can be paused"),
    "resume": ({Phase.PAUSED}, "the rollout is not paused"),
}


def _request(action: str, name: str, namespace: str | None, context: str | None, kubeconfig: str | None) -> None:
    kube, namespace = _connect(kubeconfig, context, namespace)
    release = _release(kube, name, namespace)
    status = ReleaseStatus.model_validate(release.get("status") or {})
    phases, why = ALLOWED[action]
    if status.phase not in phases:
        version = status.candidate_version or status.stable_version or release["spec"]["version"]
        fail(f"cannot {action.replace('-full', ' --full')} {name}: it is {status.phase.value} ({version}); {why}")
    request = {"action": action, "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "by": getpass.getuser()}
    kube.patch_status_sync(API_VERSION, "Release", name, namespace, {"status": {"request": request}})
    typer.echo(f"release.sluice.dev/{name} {action} requested")


@app.command()
def promote(name: str, full: Annotated[bool, typer.Option("--full", help="Skip all remaining steps.")] = False,
            namespace: Namespace = None, context: Context = None, kubeconfig: Kubeconfig = None) -> None:
    """Go past the current step (a pause, a held analysis), or with --full straight to the end."""
    _request("promote-full" if full else "promote", name, namespace, context, kubeconfig)


@app.command()
def abort(name: str, namespace: Namespace = None, context: Context = None, kubeconfig: Kubeconfig = None) -> None:
    """Roll back now: all traffic to stable, then the canary scaled to zero."""
    _request("abort", name, namespace, context, kubeconfig)


@app.command()
def retry(name: str, namespace: Namespace = None, context: Context = None, kubeconfig: Kubeconfig = None) -> None:
    """Try a rolled-back or failed version again from its first step; no spec change needed."""
    _request("retry", name, namespace, context, kubeconfig)


@app.command()
def pause(name: str, namespace: Namespace = None, context: Context = None, kubeconfig: Kubeconfig = None) -> None:
    """Hold a rollout where it is: weights, pods and analysis."""
    _request("pause", name, namespace, context, kubeconfig)


@app.command()
def resume(name: str, namespace: Namespace = None, context: Context = None, kubeconfig: Kubeconfig = None) -> None:
    """Continue a rollout held by `sluice pause`."""
    _request("resume", name, namespace, context, kubeconfig)


def _policy_of(kube: Any, release: dict[str, Any]) -> dict[str, Any] | None:
    ref = (release["spec"].get("policyRef") or {}).get("name")
    if not ref:
        return None
    found: dict[str, Any] | None = kube.get_sync(API_VERSION, "RolloutPolicy", ref, release["metadata"]["namespace"])
    return found


@app.command()
def get(
    kind: Annotated[str, typer.Argument(help="rel (Release)")],
    name: str,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Keep the view live until interrupted.")] = False,
    output: Annotated[str | None, typer.Option("--output", "-o", help="json or yaml")] = None,
    namespace: Namespace = None, context: Context = None, kubeconfig: Kubeconfig = None,
) -> None:
    """Show a Release: versions, phase, steps, weight, pods, recent measurements, message."""
    import time

    from rich.console import Console
    from rich.live import Live

    from sluice.cli import view

    if kind not in ("rel", "release", "releases"):
        fail(f"unknown kind {kind!r}: use rel")
    if output not in (None, "json", "yaml"):
        fail(f"unknown output format {output!r}: use json or yaml")
    kube, namespace = _connect(kubeconfig, context, namespace)
    release = _release(kube, name, namespace)
    if output:
        typer.echo(json.dumps(release, indent=2) if output == "json" else yaml.safe_dump(release, sort_keys=False))
        return
    console = Console()
    policy = _policy_of(kube, release)
    if not console.is_terminal:
        typer.echo(view.plain(release, policy, datetime.now(UTC)))
        if not watch:
            return
        last = ""
        while True:  # plain text: print again whenever something changed
            time.sleep(2)
            release = _release(kube, name, namespace)
            text = view.plain(release, _policy_of(kube, release), datetime.now(UTC))
            if text != last:
                typer.echo("\n" + text)
                last = text
    if not watch:
        console.print(view.rich_view(release, policy, datetime.now(UTC)))
        return
    with Live(view.rich_view(release, policy, datetime.now(UTC)), console=console, refresh_per_second=2) as live:
        try:
            while True:
                time.sleep(1)
                release = _release(kube, name, namespace)
                live.update(view.rich_view(release, _policy_of(kube, release), datetime.now(UTC)))
        except KeyboardInterrupt:
            pass


@app.command("list")
def list_(
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A", help="Every namespace.")] = False,
    namespace: Namespace = None, context: Context = None, kubeconfig: Kubeconfig = None,
) -> None:
    """All Releases of a namespace (or of every namespace with -A)."""
    from rich.console import Console

    from sluice.cli import view

    kube, namespace = _connect(kubeconfig, context, namespace)
    try:
        releases = kube.list_sync(API_VERSION, "Release", None if all_namespaces else namespace)
    except Exception as error:
        fail(f"cannot list Releases: {getattr(error, 'reason', error)}")
    if not releases:
        where = "any namespace" if all_namespaces else f"namespace {namespace}"
        typer.echo(f"No Releases in {where}.")
        return
    releases.sort(key=lambda r: (r["metadata"]["namespace"], r["metadata"]["name"]))
    Console(width=None if Console().is_terminal else 200).print(
        view.listing(releases, datetime.now(UTC), all_namespaces))


def _cluster(kubeconfig: str | None, context: str | None) -> str | None:
    """The cluster name of the kubeconfig context in use, for the report's environment."""
    from kubernetes import config as kconfig

    try:
        contexts, active = kconfig.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        if context:
            active = next(c for c in contexts if c["name"] == context)
        cluster = active["context"].get("cluster")
    except Exception:  # in a pod, or no kubeconfig: the report says "-"
        return None
    return str(cluster) if cluster else None


@app.command()
def report(
    kind: Annotated[str, typer.Argument(help="rel (Release)")],
    name: str,
    output: Annotated[str | None, typer.Option(
        "--output", "-o", help="json: the same content as one JSON object (keys: docs/report.md).")] = None,
    save_inputs: Annotated[str | None, typer.Option(
        "--save-inputs", metavar="FILE", help="Also write what the report is made from (the Release, its events, "
        "its policy, the previous template) to FILE as YAML: to attach to a bug report, or as a golden test's "
        "input.")] = None,
    namespace: Namespace = None, context: Context = None, kubeconfig: Kubeconfig = None,
) -> None:
    """The deployment report of the latest rollout (or the one under way) in Markdown: summary, changes,
    timeline (steps, hooks, measurements, events), zero downtime, rollback plan, next steps."""
    from sluice.cli import report as reporting
    from sluice.kube import objects

    if kind not in ("rel", "release", "releases"):
        fail(f"unknown kind {kind!r}: use rel")
    if output not in (None, "json"):
        fail(f"unknown output format {output!r}: use json (or nothing, for Markdown)")
    kube, namespace = _connect(kubeconfig, context, namespace)
    release = _release(kube, name, namespace)
    uid = release["metadata"].get("uid")
    try:
        events = [e for e in kube.list_sync("v1", "Event", namespace)
                  if (e.get("involvedObject") or {}).get("name") == name
                  and (e.get("involvedObject") or {}).get("kind") == "Release"
                  and (e.get("involvedObject") or {}).get("uid") in (None, uid)]
        policy = _policy_of(kube, release)
        before = None
        if digest := reporting.previous_template_hash(release):
            replica_sets = kube.list_sync("apps/v1", "ReplicaSet", namespace, f"{objects.NAME}={name}")
            before = reporting.template_in(replica_sets, objects.deployment_name(name, "stable"), digest)
    except Exception as error:
        fail(f"cannot read what the report needs: {getattr(error, 'reason', error)}")
    events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp") or "")
    now, cluster = datetime.now(UTC), _cluster(kubeconfig, context)
    if save_inputs:
        inputs = {"release": release, "events": events, "policy": policy, "before": before,
                  "now": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "cluster": cluster}
        Path(save_inputs).write_text(yaml.safe_dump(json.loads(json.dumps(inputs, default=str)), sort_keys=True))
    render = reporting.as_json if output == "json" else reporting.render
    typer.echo(render(release, events, policy, before, now, cluster), nl=False)


@app.command()
def pipeline(
    name: str,
    version: Annotated[str | None, typer.Option(
        "--version", help="The version to follow (default: the one this Release asks for).")] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="json")] = None,
    namespace: Namespace = None, context: Context = None, kubeconfig: Kubeconfig = None,
) -> None:
    """One version's way through the environments this Release `requires` (dev -> staging -> prod)."""
    from kubernetes.client import ApiException
    from rich.console import Console

    from sluice.cli import pipeline as chain

    if output not in (None, "json"):
        fail(f"unknown output format {output!r}: use json")
    kube, namespace = _connect(kubeconfig, context, namespace)
    release = _release(kube, name, namespace)
    try:
        environments = chain.read(kube.get_sync, name, namespace)
    except ApiException as error:
        fail(f"cannot read the pipeline of {name}: {error.reason}")
    wanted = version or release["spec"]["version"]
    rows = chain.rows(name, environments, namespace, wanted)
    if output == "json":
        typer.echo(json.dumps(chain.as_json(name, namespace, wanted, rows), indent=2))
        return
    console = Console()
    if not console.is_terminal:
        typer.echo(chain.plain(name, namespace, wanted, rows))
        return
    console.print(chain.rich_view(name, namespace, wanted, rows))


@app.command()
def lint(
    files: Annotated[list[str], typer.Argument(help="Manifest files (YAML, many documents each).")],
    webhook_allow: Annotated[list[str] | None, typer.Option(
        "--webhook-allow", metavar="URL",
        help="The operator's notification allowlist (as `sluice operator --webhook-allow`): warn of notify "
             "targets off it. Default: $SLUICE_WEBHOOK_ALLOW; with neither, addresses are not checked.")] = None,
) -> None:
    """Check manifests offline as the API server would, and more; file:line errors, exit 1."""
    from sluice.analysis.addresses import WEBHOOK, Allowlist
    from sluice.cli.lint import lint as check

    try:
        allowed = Allowlist.parse(webhook_allow, WEBHOOK) if webhook_allow else Allowlist.from_environment(WEBHOOK)
    except ValueError as error:
        fail(str(error), code=2)
    findings, documents = check(files, webhook_allow=allowed)
    for finding in findings:
        typer.echo(str(finding), err=True)
    summary = f"{len(files)} file(s), {documents} Sluice document(s), {len(findings)} error(s)"
    typer.echo(summary, err=bool(findings))
    if findings:
        raise typer.Exit(1)


@app.command()
def operator(
    namespace: Annotated[list[str] | None, typer.Option("--namespace", "-n", help="Watch only these.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    metrics_address: Annotated[str | None, typer.Option(
        "--metrics-address", help="Serve /metrics on host:port, e.g. 127.0.0.1:9108.")] = None,
    health_address: Annotated[str | None, typer.Option(
        "--health-address", help="Serve the liveness probe /healthz on host:port.")] = None,
    prometheus_allow: Annotated[list[str] | None, typer.Option(
        "--prometheus-allow", metavar="URL",
        help="A Prometheus that analysis may query: scheme://host[:port][/path-prefix]; repeat for more. "
             "Scheme, host and port must match exactly (no port: 80 or 443). Default: "
             "$SLUICE_PROMETHEUS_ALLOW (comma-separated); with neither, any address (a warning).")] = None,
    web_allow: Annotated[list[str] | None, typer.Option(
        "--web-allow", metavar="URL",
        help="A URL prefix that web metrics may call: scheme://host[:port][/path-prefix]; repeat for more. "
             "Default: $SLUICE_WEB_ALLOW (comma-separated); with neither, none if a Prometheus allowlist is "
             "set, else any URL (a warning).")] = None,
    webhook_allow: Annotated[list[str] | None, typer.Option(
        "--webhook-allow", metavar="URL",
        help="An address that notifications (RolloutPolicy spec.notify) may be sent to: "
             "scheme://host[:port][/path-prefix]; repeat for more. Matched as --prometheus-allow. Default: "
             "$SLUICE_WEBHOOK_ALLOW (comma-separated); with neither, none if a Prometheus allowlist is set, "
             "else any address (a warning).")] = None,
    leader_elect: Annotated[bool, typer.Option(
        "--leader-elect", help="Act only while holding a Lease, so replicas can run side by side.")] = False,
    lease_namespace: Annotated[str, typer.Option(
        "--lease-namespace", envvar="POD_NAMESPACE", help="Namespace of the leader Lease.")] = "default",
    lease_name: Annotated[str, typer.Option("--lease-name", help="Name of the leader Lease.")] = "sluice-leader",
    lease_duration: Annotated[float, typer.Option(
        "--lease-duration", help="Seconds a standby waits after the leader's last renewal.")] = 8.0,
    renew_deadline: Annotated[float, typer.Option(
        "--renew-deadline", help="Seconds the leader acts after its last renewal began.")] = 5.0,
    retry_period: Annotated[float, typer.Option(
        "--retry-period", help="Seconds between tries to take or renew the Lease.")] = 2.0,
    concurrency: Annotated[int, typer.Option(
        "--concurrency", min=1, envvar="SLUICE_CONCURRENCY",
        help="Reconcile passes running at once; the other Releases wait their turn.")] = 32,
) -> None:
    """Run the operator in the foreground against the current kubeconfig (all namespaces by default)."""
    from sluice.analysis.addresses import WEB, WEBHOOK, Allowlist

    try:  # the flag wins over the variable
        allowed = Allowlist.parse(prometheus_allow) if prometheus_allow else Allowlist.from_environment()
        web_allowed = Allowlist.parse(web_allow, WEB) if web_allow else Allowlist.from_environment(WEB)
        webhooks = Allowlist.parse(webhook_allow, WEBHOOK) if webhook_allow else Allowlist.from_environment(WEBHOOK)
    except ValueError as error:
        fail(str(error), code=2)

    from sluice import handlers
    from sluice.leader import Timing

    timing = Timing(lease_duration=lease_duration, renew_deadline=renew_deadline, retry_period=retry_period)
    if leader_elect and (problem := timing.problem()):
        fail(problem, code=2)
    options = handlers.Options(
        namespaces=namespace or [], verbose=verbose, metrics_address=metrics_address,
        health_address=health_address, leader_election=leader_elect, lease_namespace=lease_namespace,
        lease_name=lease_name, timing=timing, prometheus_allow=allowed, web_allow=web_allowed,
        webhook_allow=webhooks,
        concurrency=concurrency)
    try:
        handlers.run(options)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    app()

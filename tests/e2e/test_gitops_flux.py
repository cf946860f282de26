"""GitOps with Flux: given a Git repository that names a Release and its policy, and Flux's
source-controller and kustomize-controller applying it with `wait: true`, when a good version is
committed it is rolled out and only then is the Kustomization Ready; when a bad one is committed
Sluice rolls it back and the Kustomization fails its health check; Flux re-applying the same
commit changes nothing, and reverting the commit makes everything Ready again.

The Git and kubectl commands here are the README's GitOps guide, run as written there; the Flux
objects are examples/gitops/ applied verbatim but for the repository's URL.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import ROOT, Flux, Kubectl, Operator, wait_for
from tests.e2e.manifests import policy, release

pytestmark = pytest.mark.e2e

STEPS = [{"setWeight": 50}, {"analysis": {}}, {"setWeight": 100}]
KUSTOMIZATION = "kustomizations.kustomize.toolkit.fluxcd.io"
GIT_REPOSITORY = "gitrepositories.source.toolkit.fluxcd.io"


class Repository:
    """A clone of the test's Git repository, where the story's commits are made and pushed."""

    def __init__(self, url: str, parent: Path) -> None:
        self.dir = parent / "shop"
        self.env = {**os.environ, "GIT_AUTHOR_NAME": "e2e", "GIT_AUTHOR_EMAIL": "e2e@example.com",
                    "GIT_COMMITTER_NAME": "e2e", "GIT_COMMITTER_EMAIL": "e2e@example.com"}
        self.git("clone", "--quiet", url, str(self.dir), cwd=parent)

    def git(self, *args: str, cwd: Path | None = None) -> str:
        done = subprocess.run(["git", *args], cwd=cwd or self.dir, env=self.env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, f"git {' '.join(args)} failed: {done.stderr}"
        return done.stdout.strip()

    def write(self, file: str, manifest: dict[str, Any]) -> None:
        (self.dir / file).write_text(yaml.safe_dump(manifest, sort_keys=False))

    @property
    def revision(self) -> str:
        """The revision Flux reports for the branch's head: main@sha1:<commit>."""
        return f"main@sha1:{self.git('rev-parse', 'HEAD')}"


def in_namespace(manifest: dict[str, Any], namespace: str) -> dict[str, Any]:
    """Manifests in Git name their namespace; the Kustomization sets none."""
    manifest["metadata"]["namespace"] = namespace
    return manifest


def condition(body: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for found in ((body or {}).get("status") or {}).get("conditions") or []:
        if found["type"] == kind:
            return dict(found)
    return {}


def kustomization(kubectl: Kubectl) -> dict[str, Any]:
    return kubectl.get(KUSTOMIZATION, "shop") or {}


def applied(kubectl: Kubectl, revision: str) -> Any:
    """The Kustomization applied `revision` and its health checks passed."""
    def check() -> Any:
        body = kustomization(kubectl)
        ready = condition(body, "Ready")
        return body if ready.get("status") == "True" and body["status"].get("lastAppliedRevision") == revision \
            else None
    return check


def reconcile_now(kubectl: Kubectl, kind: str) -> str:
    """What `flux reconcile` does: ask for a reconcile now; returns the token the object echoes."""
    token = str(time.time_ns())
    kubectl.run("annotate", "--overwrite", kind, f"reconcile.fluxcd.io/requestedAt={token}")
    return token


def release_facts(kubectl: Kubectl) -> tuple[int, int, int, str]:
    """What a re-apply must not change: generation, history, the Release's events, its phase."""
    body = kubectl.get("releases.sluice.dev", "checkout") or {}
    status = body.get("status") or {}
    return (body["metadata"]["generation"], len(status.get("history") or []), len(kubectl.events("checkout")),
            status.get("phase", ""))


def reapplied_changes_nothing(kubectl: Kubectl) -> None:
    before = release_facts(kubectl)
    token = reconcile_now(kubectl, "kustomization/shop")
    wait_for("kustomize-controller to apply the same commit again",
             lambda: kustomization(kubectl).get("status", {}).get("lastHandledReconcileAt") == token, 90)
    time.sleep(3)  # anything the re-apply set off would show by now: the operator acts within a second or two
    assert release_facts(kubectl) == before, "Flux re-applying the same commit changed the rollout"


def test_flux_ships_a_good_version_rolls_a_bad_one_back_and_a_revert_is_ready_again(
        kubectl: Kubectl, operator: Operator, prometheus_url: str, flux: Flux, tmp_path: Path) -> None:
    namespace = kubectl.namespace or ""
    url = flux.new_repository(namespace)
    repo = Repository(url, tmp_path)

    # Given a repository naming a policy and checkout 1.0.0, and Flux watching it with wait: true.
    repo.write("policy.yaml", in_namespace(policy("fast", STEPS, prometheus_url), namespace))
    repo.write("release.yaml", in_namespace(release("checkout", "1.0.0"), namespace))
    repo.git("add", "policy.yaml", "release.yaml")
    repo.git("commit", "-m", "checkout 1.0.0")
    repo.git("push", "origin", "main")
    flux_objects = "".join((ROOT / "examples/gitops" / name).read_text()
                           for name in ("gitrepository.yaml", "flux-kustomization.yaml")).replace(
        "apiVersion: kustomize", "---\napiVersion: kustomize")
    assert "http://git.example.com/shop.git" in flux_objects
    # A Release Sluice has not written yet (no status at all) is not healthy: plain kstatus would
    # call it Current, the example's healthCheckExprs wait for Sluice's Ready. With the operator
    # stopped, the Kustomization never turns Ready while the Release has no status.
    operator.kill()
    try:
        kubectl.apply(flux_objects.replace("http://git.example.com/shop.git", url))
        wait_for("Flux to create the Release", lambda: kubectl.get("releases.sluice.dev", "checkout"), 90)
        deadline = time.monotonic() + 12  # a few of kustomize-controller's 5 s health polls
        while time.monotonic() < deadline:
            ready = condition(kustomization(kubectl), "Ready").get("status")  # read first
            assert ready != "True" or kubectl.status("checkout"), \
                "the Kustomization was Ready on a Release Sluice had not written"
            time.sleep(0.5)
    finally:
        operator.start()
    first = wait_for("Flux to apply 1.0.0 and find it healthy", applied(kubectl, repo.revision), 180)
    kubectl.run("wait", "kustomization/shop", f"--for=jsonpath={{.status.lastAppliedRevision}}={repo.revision}",
                "--timeout=3m")
    status = kubectl.status("checkout")
    assert status["phase"] == "Succeeded" and status["stableVersion"] == "1.0.0"
    inventory = {entry["id"] for entry in first["status"]["inventory"]["entries"]}
    assert {f"{namespace}_checkout_sluice.dev_Release", f"{namespace}_fast_sluice.dev_RolloutPolicy"} <= inventory

    # When a good version is committed, the Kustomization is not Ready while the Release progresses.
    repo.write("release.yaml", in_namespace(release("checkout", "1.1.0"), namespace))
    repo.git("commit", "-am", "checkout 1.1.0")
    repo.git("push", "origin", "main")
    reconcile_now(kubectl, "gitrepository/shop")
    good = repo.revision
    seen: list[tuple[str, str, str, str]] = []  # (Kustomization Ready, its applied revision, phase, candidate)

    def watch() -> bool:
        body = kustomization(kubectl)  # read first: once it is Ready, the Release must already be Succeeded
        status = kubectl.status("checkout")
        sample = (condition(body, "Ready").get("status", ""), (body.get("status") or {}).get("lastAppliedRevision", ""),
                  status.get("phase", ""), status.get("candidateVersion", ""))
        if not seen or seen[-1] != sample:
            seen.append(sample)
        return sample[:2] == ("True", good)
    wait_for("Flux to apply 1.1.0 and find it healthy", watch, 240, every=0.3)
    assert any(phase == "Progressing" and ready != "True" for ready, _, phase, _ in seen), seen
    assert all(phase == "Succeeded" for ready, revision, phase, _ in seen if (ready, revision) == ("True", good)), seen
    status = kubectl.status("checkout")
    assert status["phase"] == "Succeeded" and status["stableVersion"] == "1.1.0"
    kubectl.run("wait", "kustomization/shop", f"--for=jsonpath={{.status.lastAppliedRevision}}={good}",
                "--timeout=3m")

    # Then Flux sees no drift: kustomize-controller alone manages the spec, Sluice only status,
    # and applying the same commit again changes neither the spec's generation nor the rollout.
    meta = json.loads(kubectl.run("get", "releases.sluice.dev", "checkout", "-o", "json",
                                  "--show-managed-fields").stdout)["metadata"]
    spec_managers = {(f["manager"], f.get("subresource")) for f in meta["managedFields"]
                     if "f:spec" in (f.get("fieldsV1") or {})}
    assert spec_managers == {("kustomize-controller", None)}, meta["managedFields"]
    assert {f.get("subresource") for f in meta["managedFields"] if f["manager"] == "sluice"} == {"status"}
    reapplied_changes_nothing(kubectl)

    # When a bad version is committed, Sluice rolls it back and the Kustomization's health check fails.
    repo.write("release.yaml", in_namespace(release("checkout", "1.2.0", error_rate=0.5), namespace))
    repo.git("commit", "-am", "checkout 1.2.0")
    repo.git("push", "origin", "main")
    reconcile_now(kubectl, "gitrepository/shop")
    bad = repo.revision
    wait_for("the bad version to be rolled back", lambda: kubectl.status("checkout").get("phase") == "RolledBack", 180)
    failed = wait_for("the Kustomization to fail its health check",
                      lambda: (r := condition(kustomization(kubectl), "Ready")).get("status") == "False" and r, 240)
    assert failed["reason"] == "HealthCheckFailed", failed
    assert "Release" in failed["message"] and "checkout" in failed["message"], failed
    assert kustomization(kubectl)["status"]["lastAttemptedRevision"] == bad
    kubectl.run("wait", "kustomization/shop", "--for=condition=Ready=false", "--timeout=3m")
    status = kubectl.status("checkout")
    assert status["stableVersion"] == "1.1.0" and status["history"][-1]["outcome"] == "RolledBack"
    # Git still names 1.2.0: Flux applying it again, as it does at every retry, starts no new rollout.
    reapplied_changes_nothing(kubectl)
    assert kubectl.status("checkout")["phase"] == "RolledBack"

    # When the bad commit is reverted, Git names the stable version again and Flux is Ready.
    repo.git("revert", "--no-edit", "HEAD")
    repo.git("push", "origin", "main")
    reconcile_now(kubectl, "gitrepository/shop")
    wait_for("Flux to apply the revert and find it healthy", applied(kubectl, repo.revision), 240)
    body = kubectl.get("releases.sluice.dev", "checkout") or {}
    assert body["spec"]["version"] == "1.1.0"
    assert body["status"]["phase"] == "Succeeded" and body["status"]["stableVersion"] == "1.1.0"
    assert condition(body, "Ready")["status"] == "True"

    # Deleting the Kustomization prunes what it applied (prune: true), before Flux stops at the
    # end of the session and could no longer lift its finalizer.
    kubectl.run("delete", "kustomization/shop", "--timeout=90s")
    assert kubectl.get("releases.sluice.dev", "checkout") is None
    assert kubectl.get("rolloutpolicies.sluice.dev", "fast") is None

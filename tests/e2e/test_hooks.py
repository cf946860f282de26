"""Hook Jobs against a real PostgreSQL: given a Release whose preRollout hook backs up and
migrates the database, when a new version is applied, then the schema changes before any pod of
the new version starts or any traffic moves; and a migration that fails leaves the old version
serving untouched, with the backup on disk.

The hook's pod really runs on the real node (psql and pg_dump from the tools image `make image`
builds); the application's pods are kwok's. The database is Debian's PostgreSQL on the host's
127.0.0.1, which the node bridges to its own address."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Kubectl, Operator, Postgres, RealNode, report_of, wait_for
from tests.e2e.manifests import policy, release
from tests.e2e.test_canary import phase

pytestmark = pytest.mark.e2e

SCHEMA = ("CREATE TABLE IF NOT EXISTS orders (id int PRIMARY KEY); "
          "CREATE TABLE IF NOT EXISTS migrations (version text, at timestamptz)")


def migration(node: RealNode, db: Postgres, backups: Path, name: str, script: str) -> dict[str, Any]:
    """A hook that runs `script` (sh) with psql's PG* settings pointing at the test's database."""
    return {
        "name": name, "timeout": "2m",
        "template": {"spec": {
            **node.placement,
            "containers": [{
                "name": name, "image": node.tools_image, "imagePullPolicy": "Never",
                "command": ["sh", "-ec", script],
                "env": [{"name": "PGHOST", "value": node.ip}, {"name": "PGPORT", "value": str(db.port)},
                        {"name": "PGUSER", "value": db.user}, {"name": "PGDATABASE", "value": db.database},
                        {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}],
                "volumeMounts": [{"name": "backups", "mountPath": "/backups"}],
            }],
            "volumes": [{"name": "backups", "hostPath": {"path": str(backups), "type": "Directory"}}],
        }},
    }


def with_hooks(body: dict[str, Any], *pre: dict[str, Any]) -> dict[str, Any]:
    body["spec"]["hooks"] = {"preRollout": list(pre)}
    return body


def ship_first_version(kubectl: Kubectl, node: RealNode, db: Postgres, backups: Path, prometheus: str) -> None:
    wait_for("the default ServiceAccount", lambda: kubectl.get("serviceaccount", "default"), 30)
    kubectl.apply([
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "stringData": {"password": db.password}},
        policy("fast", [{"setWeight": 50}, {"pause": {"duration": "2s"}}], prometheus),
    ])
    kubectl.apply(with_hooks(release("shop", "1.0.0"), migration(node, db, backups, "schema", f'psql -c "{SCHEMA}"')))
    wait_for("shop 1.0.0 to be stable after its schema hook", phase(kubectl, "shop", "Succeeded"), 120)
    assert db.sql("SELECT count(*) FROM orders") == "0", "the first version's preRollout hook made the schema"


def sample(kubectl: Kubectl) -> tuple[str, int, int]:
    """(state of the current rollout's first preRollout hook, canary pods asked for, canary weight).
    The Deployment is read first: Sluice writes its decision to status before it acts, so a status
    read after a Deployment change shows the decision that made it."""
    canary = kubectl.get("deployment", "shop-canary") or {}
    status = kubectl.status("shop")
    runs = [r for r in status.get("hooks", []) if r["stage"] == "preRollout" and r["version"] == "2.0.0"]
    return (runs[0]["state"] if runs else "-", canary.get("spec", {}).get("replicas", 0),
            status.get("canaryWeight", 0))


def test_a_migration_runs_before_any_pod_or_traffic_of_the_new_version(
        kubectl: Kubectl, operator: Operator, real_node: RealNode, postgres: Postgres, tmp_path: Path,
        prometheus_url: str) -> None:
    backups = tmp_path / "backups"
    backups.mkdir()
    ship_first_version(kubectl, real_node, postgres, backups, prometheus_url)
    script = ('pg_dump --schema-only > "/backups/shop-before-$SLUICE_VERSION.sql"; sleep 3; '
              'psql -c "ALTER TABLE orders ADD COLUMN note text" '
              '-c "INSERT INTO migrations VALUES (\'$SLUICE_VERSION\', now())"')

    kubectl.apply(with_hooks(release("shop", "2.0.0"), migration(real_node, postgres, backups, "migrate", script)))
    seen: list[tuple[str, int, int]] = []

    def rolled_out() -> bool:
        seen.append(sample(kubectl))
        return kubectl.status("shop").get("stableVersion") == "2.0.0"
    wait_for("shop 2.0.0 to ship after its migration", rolled_out, 180, every=0.3)

    before = [s for s in seen if s[0] != "Succeeded"]
    assert any(state == "Running" for state, _, _ in before), f"the hook was seen running: {seen}"
    assert all(pods == 0 and weight == 0 for _, pods, weight in before), \
        f"no candidate pod and no traffic before the migration succeeded: {seen}"
    walked = [e["message"] for e in kubectl.events("shop") if e["reason"] == "StepCompleted"]
    assert any("(setWeight 50) complete" in message for message in walked), f"then it walked its steps: {walked}"
    assert postgres.sql("SELECT column_name FROM information_schema.columns WHERE table_name = 'orders' "
                        "AND column_name = 'note'") == "note"
    migrated = datetime.fromisoformat(postgres.sql(
        "SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') FROM migrations "
        "WHERE version = '2.0.0'")).replace(tzinfo=UTC)
    canary = kubectl.get("deployment", "shop-canary")
    assert canary is not None
    created = datetime.fromisoformat(canary["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    assert migrated <= created, "the schema changed before the candidate's Deployment existed"
    assert "CREATE TABLE public.orders" in (backups / "shop-before-2.0.0.sql").read_text()
    run = next(r for r in kubectl.status("shop")["hooks"] if r["version"] == "2.0.0")
    assert run["state"] == "Succeeded" and run["job"].startswith("shop-migrate-")
    reasons = [e["reason"] for e in kubectl.events("shop")]
    assert "HookSucceeded" in reasons
    report = report_of(kubectl, "shop", "real-hook-succeeded")
    assert "| Outcome | **✅ Succeeded**" in report
    assert f"| preRollout | migrate | `{run['job']}` | Succeeded |" in report


def test_a_failing_migration_leaves_the_old_version_serving_with_the_backup_on_disk(
        kubectl: Kubectl, operator: Operator, real_node: RealNode, postgres: Postgres, tmp_path: Path,
        prometheus_url: str) -> None:
    backups = tmp_path / "backups"
    backups.mkdir()
    ship_first_version(kubectl, real_node, postgres, backups, prometheus_url)
    stable_before = kubectl.get("deployment", "shop")
    assert stable_before is not None
    script = ('pg_dump > "/backups/shop-before-$SLUICE_VERSION.sql"; '
              'psql -v ON_ERROR_STOP=1 -c "ALTER TABLE invoices ADD COLUMN total int"')

    kubectl.apply(with_hooks(release("shop", "2.0.0"), migration(real_node, postgres, backups, "migrate", script)))
    seen: list[tuple[str, int, int]] = []

    def failed() -> Any:
        seen.append(sample(kubectl))
        return phase(kubectl, "shop", "RolledBack")()
    status = wait_for("the rollout of 2.0.0 to fail on its migration", failed, 180, every=0.3)

    job = next(r for r in status["hooks"] if r["version"] == "2.0.0")["job"]
    assert f"preRollout hook migrate failed: Job {job} failed" in status["message"]
    assert 'relation "invoices" does not exist' in status["message"], "the end of the Job's log"
    assert all(pods == 0 and weight == 0 for _, pods, weight in seen), f"nothing moved: {seen}"
    stable = kubectl.get("deployment", "shop")
    assert stable is not None
    assert stable["spec"]["template"] == stable_before["spec"]["template"], "1.0.0 untouched"
    assert stable["status"].get("readyReplicas") == 4
    assert status["stableVersion"] == "1.0.0"
    assert any(c["type"] == "Stalled" and c["status"] == "True" for c in status["conditions"])
    assert "CREATE TABLE public.orders" in (backups / "shop-before-2.0.0.sql").read_text(), "the backup stays"
    assert postgres.sql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders'") == "1"
    assert "HookFailed" in [e["reason"] for e in kubectl.events("shop")]
    report = report_of(kubectl, "shop", "real-hook-failed")
    assert "| Outcome | **↩️ RolledBack**: preRollout hook migrate failed" in report
    assert f"| preRollout | migrate | `{job}` | Failed |" in report
    assert "sluice retry" in report, "the rollback plan says how to try again"

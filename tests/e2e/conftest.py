"""e2e fixtures: a real API server (the local kwok cluster, or any cluster KUBECONFIG names,
such as kind), the real Prometheus, the operator as a real process, a namespace per test.

Nothing here fakes Kubernetes: tests talk to the API server with kubectl and read what a
user would read.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LOCAL_KUBECONFIG = ROOT / ".local" / "kubeconfig"
LOGS = ROOT / ".local" / "e2e"


def _binary_path() -> str:
    if shutil.which("kubectl") and os.environ.get("KUBECONFIG") != str(LOCAL_KUBECONFIG):
        return os.environ["PATH"]
    built = subprocess.run([str(ROOT / "hack/cluster/build.sh")], capture_output=True, text=True, check=True)
    return built.stdout.strip().splitlines()[-1] + os.pathsep + os.environ["PATH"]


@pytest.fixture(scope="session")
def env() -> dict[str, str]:
    """The environment every command runs in: KUBECONFIG and the built kubectl on PATH."""
    given = os.environ.get("KUBECONFIG")
    kubeconfig = given or str(LOCAL_KUBECONFIG)
    result = {**os.environ, "KUBECONFIG": kubeconfig, "PATH": _binary_path()}
    probe = subprocess.run(["kubectl", "get", "--raw", "/readyz"], env=result, capture_output=True)
    if probe.returncode != 0:
        if given and given != str(LOCAL_KUBECONFIG):
            pytest.exit(f"the cluster in KUBECONFIG={given} is not reachable", returncode=2)
        subprocess.run([str(ROOT / "hack/cluster/up.sh")], check=True)
    subprocess.run(["kubectl", "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds")],
                   env=result, check=True, capture_output=True)
    # kubectl wait fails at once on a CRD created a moment ago (no conditions yet): ask again
    for attempt in range(30):
        waited = subprocess.run(["kubectl", "wait", "--for", "condition=established", "--timeout=60s", "-f",
                                 str(ROOT / "crds")], env=result, capture_output=True, text=True)
        if waited.returncode == 0:
            break
        assert attempt < 29, f"the CRDs never became established: {waited.stderr}"
        time.sleep(1)
    return result


class Kubectl:
    def __init__(self, env: dict[str, str], namespace: str | None = None) -> None:
        self.env, self.namespace = env, namespace

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = ["kubectl", *(["-n", self.namespace] if self.namespace else []), *args]
        done = subprocess.run(command, input=stdin, env=self.env, capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed: {done.stderr.strip()}")
        return done

    def apply(self, manifest: str | dict[str, Any] | list[dict[str, Any]], check: bool = True
              ) -> subprocess.CompletedProcess[str]:
        text = manifest if isinstance(manifest, str) else yaml.safe_dump_all(
            manifest if isinstance(manifest, list) else [manifest])
        return self.run("apply", "-f", "-", stdin=text, check=check)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        done = self.run("get", kind, name, "-o", "json", check=False)
        return json.loads(done.stdout) if done.returncode == 0 else None

    def status(self, name: str) -> dict[str, Any]:
        body = self.get("releases.sluice.dev", name)
        return (body or {}).get("status") or {}

    def events(self, name: str) -> list[dict[str, Any]]:
        done = self.run("get", "events", "--field-selector", f"involvedObject.name={name},involvedObject.kind=Release",
                        "-o", "json")
        return sorted(json.loads(done.stdout)["items"], key=lambda e: e.get("firstTimestamp") or "")


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120, every: float = 0.5) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


@pytest.fixture
def kubectl(env: dict[str, str], request: pytest.FixtureRequest) -> Iterator[Kubectl]:
    """A fresh namespace for one test, deleted after it."""
    name = f"e2e-{request.node.name[:40].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:5]}"
    name = "".join(c for c in name if c.isalnum() or c == "-")
    Kubectl(env).run("create", "namespace", name)
    yield Kubectl(env, name)
    Kubectl(env).run("delete", "namespace", name, "--wait=false", check=False)


class Operator:
    """The operator as a real process, to be killed and restarted like a Pod would be."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log = LOGS / "operator.log"

    def start(self) -> None:
        self.log_file = self.log.open("ab")
        mark = self.log.stat().st_size
        self.process = subprocess.Popen([sys.executable, "-m", "sluice.cli.main", "operator"], env=self.env,
                                        stdout=self.log_file, stderr=subprocess.STDOUT)
        try:
            wait_for("the operator to start", lambda: "sluice operator started" in self.log.read_text()[mark:], 60)
        except AssertionError:
            self.stop()  # never left behind to act beside the next test's operator
            raise

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture(scope="session")
def operator(env: dict[str, str]) -> Iterator[Operator]:
    running = Operator(env)
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def prometheus_url() -> str:
    return os.environ.get("PROMETHEUS_URL", f"http://127.0.0.1:{os.environ.get('PROMETHEUS_PORT', '9090')}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivatePrometheus:
    """A Prometheus of one test's own, scraping the same simulator, that the test may stop."""

    def __init__(self, tmp: Path, web_config: str | None = None) -> None:
        self.port = free_port()
        self.url = f"{'https' if web_config else 'http'}://127.0.0.1:{self.port}"
        self.dir = tmp
        self.web_config = web_config
        sim = os.environ.get("SIMULATOR_PORT", "9102")
        (tmp / "prometheus.yml").write_text(
            "global: {scrape_interval: 2s}\nscrape_configs:\n"
            f"  - job_name: traffic-simulator\n    static_configs: [{{targets: ['127.0.0.1:{sim}']}}]\n")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["prometheus", f"--config.file={self.dir / 'prometheus.yml'}", f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}",
             *([f"--web.config.file={self.web_config}"] if self.web_config else [])],
            stdout=(self.dir / "log").open("ab"), stderr=subprocess.STDOUT)
        import httpx

        def up() -> bool:
            try:
                return httpx.get(f"{self.url}/-/ready", timeout=1, verify=False).status_code == 200
            except httpx.HTTPError:
                return False
        wait_for("the private Prometheus to be ready", up, 30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)


@pytest.fixture
def private_prometheus(tmp_path: Path) -> Iterator[PrivatePrometheus]:
    instance = PrivatePrometheus(tmp_path)
    instance.start()
    yield instance
    instance.stop()


# --- The real node (hack/node/, make node-up) ------------------------------------------------
# Appended by the real-node work; the rest of this file is not its business.

REAL_NODE_STATE = ROOT / ".local" / "node"


@dataclass(frozen=True)
class RealNode:
    """The real node, sluice-real-0, as a pod on it sees the cluster.

    No kube-proxy runs, so the Service `kubernetes` does not route: a pod reaches the API server
    at the node's address, with `api_env` in its container's env, and Prometheus at
    `prometheus_url`. `placement` puts a pod on the node (it is tainted), and only images
    `make image` built are there (`imagePullPolicy: Never`).
    """

    name: str
    ip: str
    apiserver_port: int
    prometheus_port: int
    image: str
    state: Path
    postgres_port: int = 55432  # bridged to the host's 127.0.0.1 (the `postgres` fixture listens there)
    tools_image: str = "localhost/sluice-tools:dev"  # psql and pg_dump

    @property
    def api_env(self) -> list[dict[str, str]]:
        return [{"name": "KUBERNETES_SERVICE_HOST", "value": self.ip},
                {"name": "KUBERNETES_SERVICE_PORT", "value": str(self.apiserver_port)}]

    @property
    def prometheus_url(self) -> str:
        return f"http://{self.ip}:{self.prometheus_port}"

    @property
    def placement(self) -> dict[str, Any]:
        return {"nodeSelector": {"sluice.dev/real-node": "true"},
                "tolerations": [{"key": "sluice.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}]}

    def logs(self, namespace: str, pod: str) -> str:
        """What the pod's containers printed, read from the node's pod log folder."""
        done = subprocess.run([str(ROOT / "hack/node/logs.sh"), namespace, pod], capture_output=True, text=True)
        return done.stdout


@pytest.fixture(scope="session")
def real_node(env: dict[str, str]) -> RealNode:
    """The real node when it is up and Ready; otherwise the test is skipped, saying why."""
    settings_file = REAL_NODE_STATE / "node.env"
    if not settings_file.exists():
        pytest.skip("real node not running: make node-up (needs root)")
    settings = dict(line.split("=", 1) for line in settings_file.read_text().split())
    ready = subprocess.run(["kubectl", "get", "node", settings["NODE_NAME"], "-o",
                            "jsonpath={.status.conditions[?(@.type=='Ready')].status}"],
                           env=env, capture_output=True, text=True)
    if ready.stdout != "True":
        pytest.skip(f"real node {settings['NODE_NAME']} is not Ready in this cluster: make node-up (needs root)")
    chart = yaml.safe_load((ROOT / "charts/sluice/Chart.yaml").read_text())
    if "POSTGRES_PORT" not in settings:
        pytest.skip("the real node predates the PostgreSQL bridge: make node-down node-up")
    return RealNode(name=settings["NODE_NAME"], ip=settings["NODE_IP"],
                    apiserver_port=int(settings["APISERVER_PORT"]), prometheus_port=int(settings["PROMETHEUS_PORT"]),
                    image=f"localhost/sluice:{chart['appVersion']}", state=REAL_NODE_STATE,
                    postgres_port=int(settings["POSTGRES_PORT"]), tools_image=settings["TOOLS_IMAGE"])


@dataclass
class Postgres:
    """Debian's PostgreSQL on the host's 127.0.0.1, owned by this test: a database `shop` that
    the user `app` (password `app-secret`) owns. A pod on the real node reaches it at the node's
    address and the same port."""

    port: int
    folder: Path
    user: str = "app"
    password: str = "app-secret"
    database: str = "shop"

    def sql(self, query: str) -> str:
        done = subprocess.run([str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
                               "-d", self.database, "-v", "ON_ERROR_STOP=1", "-tAc", query],
                              env={**os.environ, "PGPASSWORD": self.password}, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    @property
    def bin(self) -> Path:
        return max(Path("/usr/lib/postgresql").glob("*/bin"))


@pytest.fixture
def postgres(real_node: RealNode) -> Iterator[Postgres]:
    """A fresh PostgreSQL for one test, on the port the real node bridges; stopped and removed after.
    Its folder is outside pytest's (which only root may enter): the server runs as `postgres`."""
    folder = Path(tempfile.mkdtemp(prefix="sluice-postgres-"))
    shutil.chown(folder, "postgres", "postgres")
    folder.chmod(0o700)
    db = Postgres(port=real_node.postgres_port, folder=folder)
    as_postgres = ["runuser", "-u", "postgres", "--"]
    secret = folder / "pw"
    secret.write_text("superuser-secret\n")
    shutil.chown(secret, "postgres", "postgres")
    subprocess.run([*as_postgres, str(db.bin / "initdb"), "-D", str(folder / "data"), "-U", "postgres",
                    "--auth=scram-sha-256", f"--pwfile={secret}"], check=True, capture_output=True)
    (folder / "data" / "postgresql.auto.conf").write_text(
        f"listen_addresses = '127.0.0.1'\nport = {db.port}\nunix_socket_directories = '{folder}'\n")
    subprocess.run([*as_postgres, str(db.bin / "pg_ctl"), "-D", str(folder / "data"), "-l", str(folder / "log"),
                    "-w", "-t", "60", "start"], check=True, capture_output=True)
    try:
        admin = {**os.environ, "PGPASSWORD": "superuser-secret"}
        for statement in (f"CREATE ROLE {db.user} LOGIN PASSWORD '{db.password}'",
                          f"CREATE DATABASE {db.database} OWNER {db.user}"):
            subprocess.run([str(db.bin / "psql"), "-h", "127.0.0.1", "-p", str(db.port), "-U", "postgres",
                            "-d", "postgres", "-c", statement], env=admin, check=True, capture_output=True)
        yield db
    finally:
        subprocess.run([*as_postgres, str(db.bin / "pg_ctl"), "-D", str(folder / "data"), "-m", "fast", "-w",
                        "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


# --- Flux (hack/flux/, make flux) ---------------------------------------------------------------
# Appended by the GitOps work; the rest of this file is not its business.

FLUX_STATE = ROOT / ".local" / "flux"
FLUX_PROCESSES = ("git-server", "source-controller", "kustomize-controller")


@dataclass(frozen=True)
class Flux:
    """source-controller and kustomize-controller as host processes, and a Git server beside them.

    `new_repository` makes an empty bare repository that Flux and a test's clone both reach at
    the URL it returns (http://127.0.0.1:<port>/<name>.git).
    """

    git_url: str
    git_root: Path

    def new_repository(self, name: str) -> str:
        bare = self.git_root / f"{name}.git"
        subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(bare)], check=True)
        return f"{self.git_url}/{name}.git"


def _alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


@pytest.fixture(scope="session")
def flux(env: dict[str, str]) -> Iterator[Flux]:
    """Flux running against the cluster; built on first use (hack/flux/build.sh, cached).

    What this fixture started it stops at the end; controllers already running stay running.
    """
    already = all(_alive(FLUX_STATE / f"{name}.pid") for name in FLUX_PROCESSES)
    done = subprocess.run([str(ROOT / "hack/flux/up.sh")], env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise AssertionError(f"hack/flux/up.sh failed:\n{done.stderr[-3000:]}")
    settings = dict(line.split("=", 1) for line in Path(done.stdout.strip().splitlines()[-1]).read_text().split())
    yield Flux(git_url=settings["GIT_URL"], git_root=FLUX_STATE / "git")
    if not already:
        subprocess.run([str(ROOT / "hack/flux/down.sh")], env=env, capture_output=True, check=False)


# --- Reports of real rollouts ---------------------------------------------------------------------

GOLDEN = ROOT / "tests" / "unit" / "golden"


def report_of(kubectl: Kubectl, name: str, case: str) -> str:
    """`sluice report rel <name>` of a rollout this test really ran. With SLUICE_CAPTURE_GOLDEN=1,
    what the report was made from is also saved as tests/unit/golden/<case>.input.yaml, where the
    report's golden tests render it (UPDATE_GOLDEN=1 then writes <case>.md)."""
    args = [sys.executable, "-m", "sluice.cli.main", "report", "rel", name, "-n", kubectl.namespace or ""]
    if os.environ.get("SLUICE_CAPTURE_GOLDEN") == "1":
        args += ["--save-inputs", str(GOLDEN / f"{case}.input.yaml")]
    done = subprocess.run(args, env=kubectl.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout

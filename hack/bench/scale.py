"""Scale benchmark: the operator against many Releases on the local cluster. Prints figures; asserts nothing.

It starts its own operator (`sluice operator --namespace <ns> --metrics-address ...`, as
tests/e2e/conftest.py does, but watching only the namespace it creates) and measures four things:

1. Create: N Releases (`--releases`, 1.0.0, `--replicas` pods, no policy: a first version goes
   stable directly) in one `kubectl apply --server-side` of one multi-document file. Settle time
   is from the start of that apply to the last Release seen `Succeeded` (observedGeneration
   current); then the operator's RSS (VmRSS) and, from its /metrics, the deltas over the settle
   of sluice_api_reads_total by verb ("get" is a read outside the watch caches),
   sluice_api_writes_total{result="sent"} and sluice_reconcile_total.
2. At rest for `--idle` seconds: writes per minute, gets, passes, and the operator's CPU seconds
   (utime + stime of /proc/<pid>/stat over the window).
3. In flight: `--inflight` of those Releases move to 1.1.0 at once under the policy setWeight 20,
   pause `--pause`, setWeight 60, pause `--pause`, then promotion; no analysis. Apply to all of
   them Succeeded. Step latency past a due pause: a watch on the namespace's Releases records
   every status change with the time this process received it. For each pause, due = the
   operator's `status.stepStartedAt` for that step + the pause (stepStartedAt has whole seconds,
   truncated, and the operator times the pause from that value too), and the latency is the
   arrival of the first status whose currentStep is past the pause, minus due: the operator's
   lag behind its own deadline plus the watch's delivery. "Pause as seen" is the same arrival
   minus the arrival of the status that started the pause.
4. Rollback of a bad canary, `--rollback-trials` times: a Release of 4 pods under the policy
   setWeight 25, then an analysis (interval 5s, count 100, the e2e tests' error-rate query from
   tests/e2e/manifests.py, successCondition `result < 0.05`, failureLimit 10, abortCondition
   `result > 0.3`), whose 1.1.0 pods have the simulator's error rate 0.5. t_breach: the first
   time Prometheus, polled every 0.5 s, answers that query for 1.1.0 above 0.3. t_clean: the
   first time, after a 1.1.0 pod was listed, that the EndpointSlices of Service <name> list no
   pod labelled app.kubernetes.io/version=1.1.0 (slices and pods are watched, times are of
   arrival). Also apply to `RolledBack`.

The pods run on a kwok node of the benchmark's own (`sluice-bench-<id>`, tainted so that no other
pod lands there, with room for any number of pods: kwok's two nodes hold 110 each). The namespace
`bench-<id>` and that node are deleted at the end, after the operator is stopped, on Ctrl-C and
on failure too. Run it alone on the cluster (`make bench-scale` takes the e2e lock):

    flock -o /tmp/sluice-e2e.lock .venv/bin/python hack/bench/scale.py --releases 500
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch
from kubernetes.client import ApiException
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.e2e.manifests import ERROR_RATE, SAMPLES  # noqa: E402  (the e2e tests' queries, verbatim)

API = "sluice.dev/v1alpha1"
TAINT = "sluice.dev/bench"
VERSION_LABEL = "app.kubernetes.io/version"
ROLLBACK_REPLICAS = 4  # 25% by replica ratio is one candidate pod beside three stable ones
BREACH = 0.3
LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy from the environment
Body = dict[str, Any]


def say(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def row(label: str, value: str) -> None:
    print(f"  {label:<46}{value}", flush=True)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def spread(values: list[float]) -> str:
    if not values:
        return "no samples"
    return (f"min {min(values):.2f}s  p50 {statistics.median(values):.2f}s  "
            f"p99 {quantile(values, 0.99):.2f}s  max {max(values):.2f}s  (n={len(values)})")


# --- Manifests ---------------------------------------------------------------------------------


def release(name: str, version: str, replicas: int, node: str, policy: str | None = None,
            error_rate: float = 0.0) -> Body:
    template = {
        "metadata": {"annotations": {"sim.sluice.dev/error-rate": str(error_rate)}},
        "spec": {"containers": [{"name": "app", "image": f"example.com/{name}:{version}"}],
                 "nodeSelector": {"kubernetes.io/hostname": node},
                 "tolerations": [{"key": TAINT, "operator": "Exists", "effect": "NoSchedule"}]},
    }
    spec: Body = {"version": version, "replicas": replicas, "template": template}
    if policy:
        spec["policyRef"] = {"name": policy}
    return {"apiVersion": API, "kind": "Release", "metadata": {"name": name}, "spec": spec}


def stepped_policy(pause: float) -> Body:
    steps = [{"setWeight": 20}, {"pause": {"duration": f"{pause:g}s"}},
             {"setWeight": 60}, {"pause": {"duration": f"{pause:g}s"}}]
    return {"apiVersion": API, "kind": "RolloutPolicy", "metadata": {"name": "stepped"},
            "spec": {"strategy": {"canary": {"steps": steps}}}}


def tripwire_policy(prometheus: str) -> Body:
    metric = {"name": "error-rate", "query": ERROR_RATE, "successCondition": "result < 0.05",
              "failureLimit": 10, "abortCondition": f"result > {BREACH}",
              "minSamples": {"query": SAMPLES, "atLeast": 10}}
    analysis = {"interval": "5s", "count": 100, "prometheus": {"address": prometheus, "timeout": "2s"},
                "metrics": [metric]}
    steps = [{"setWeight": 25}, {"analysis": {}}, {"setWeight": 100}]
    return {"apiVersion": API, "kind": "RolloutPolicy", "metadata": {"name": "tripwire"},
            "spec": {"strategy": {"canary": {"steps": steps}}, "analysis": analysis, "progressDeadline": "2m"}}


def bench_node(name: str, bench_id: str) -> Body:
    """A kwok node (kwok's node stage fills in its status, with room for a million pods)."""
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"},
                         "labels": {"type": "kwok", "kubernetes.io/hostname": name, TAINT: bench_id}},
            "spec": {"podCIDR": "10.200.0.0/16", "podCIDRs": ["10.200.0.0/16"],
                     "taints": [{"key": TAINT, "value": bench_id, "effect": "NoSchedule"}]}}


# --- The cluster -------------------------------------------------------------------------------


@dataclass
class Cluster:
    env: dict[str, str]
    namespace: str

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True,
                timeout: float = 600) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["kubectl", *args], input=stdin, env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done

    def apply(self, objects: list[Body]) -> float:
        """Server-side apply of one multi-document file; returns when it began (Unix time)."""
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as manifest:
            yaml.safe_dump_all(objects, manifest)
            manifest.flush()
            began = time.time()
            self.kubectl("apply", "--server-side", "--field-manager=sluice-bench", "-n", self.namespace,
                         "-f", manifest.name)
        return began


def environment() -> dict[str, str]:
    """KUBECONFIG (the local cluster's unless set) and kubectl on PATH (the one build.sh built)."""
    env = {**os.environ, "KUBECONFIG": os.environ.get("KUBECONFIG", str(ROOT / ".local/kubeconfig"))}
    if shutil.which("kubectl") is None:
        built = subprocess.run([str(ROOT / "hack/cluster/build.sh")], capture_output=True, text=True, check=True)
        env["PATH"] = built.stdout.strip().splitlines()[-1] + os.pathsep + env["PATH"]
    return env


class Watcher:
    """Follows one kind in a namespace from a thread: a list, then a watch from its
    resourceVersion (listing again when it expired). `seen(type, object, arrival)` gets every
    object of the list as ADDED and every event after it, with the Unix time it arrived."""

    def __init__(self, list_call: Callable[..., Any], args: tuple[Any, ...],
                 seen: Callable[[str, Body, float], None], label_selector: str = "") -> None:
        self.list_call, self.args, self.seen, self.selector = list_call, args, seen, label_selector
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()

    def _run(self) -> None:
        version: str | None = None
        while not self.stopped.is_set():
            try:
                if version is None:
                    listed = json.loads(self.list_call(*self.args, label_selector=self.selector,
                                                       _preload_content=False).data)
                    arrival = time.time()
                    for item in listed["items"]:
                        self.seen("ADDED", item, arrival)
                    version = listed["metadata"]["resourceVersion"]
                stream = watch.Watch().stream(self.list_call, *self.args, label_selector=self.selector,
                                              resource_version=version, timeout_seconds=5,
                                              allow_watch_bookmarks=True, deserialize=False)
                for event in stream:
                    body = event["object"]
                    version = body["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self.seen(event["type"], body, time.time())
                    if self.stopped.is_set():
                        break
            except ApiException as error:
                if error.status == 410:  # expired: list again
                    version = None
                else:
                    time.sleep(1)
            except Exception:  # a dropped connection: the watch is opened again from where it stood
                time.sleep(1)


@dataclass(frozen=True)
class Seen:
    """A Release's status as this process received it."""

    at: float
    generation: int
    observed: int | None
    phase: str | None
    stable: str | None
    candidate: str | None
    step: int | None
    step_started: str | None

    def settled(self, version: str) -> bool:
        return self.phase == "Succeeded" and self.stable == version and self.observed == self.generation


class Releases:
    """Every status change of the namespace's Releases, in order of arrival."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.history: dict[str, list[Seen]] = {}

    def seen(self, kind: str, body: Body, arrival: float) -> None:
        if kind == "DELETED":
            return
        status = body.get("status") or {}
        now = Seen(arrival, body["metadata"].get("generation", 0), status.get("observedGeneration"),
                   status.get("phase"), status.get("stableVersion"), status.get("candidateVersion"),
                   status.get("currentStep"), status.get("stepStartedAt"))
        with self.lock:
            past = self.history.setdefault(body["metadata"]["name"], [])
            if not past or {**vars(past[-1]), "at": 0} != {**vars(now), "at": 0}:
                past.append(now)

    def changes(self, name: str) -> list[Seen]:
        with self.lock:
            return list(self.history.get(name, []))

    def first(self, name: str, test: Callable[[Seen], bool], since: float = 0.0) -> Seen | None:
        return next((s for s in self.changes(name) if s.at >= since and test(s)), None)

    def wait(self, names: list[str], test: Callable[[Seen], bool], since: float, timeout: float,
             what: str) -> dict[str, Seen]:
        """The first change of each Release that passes `test`, waiting up to `timeout` seconds
        (and saying how many are there every 10 s); those that never got there are left out."""
        deadline, shown = time.time() + timeout, time.time()
        while True:
            found = {n: s for n in names if (s := self.first(n, test, since)) is not None}
            if len(found) == len(names) or time.time() > deadline:
                if len(found) < len(names):
                    say(f"timed out after {timeout:.0f}s: {len(found)}/{len(names)} {what}")
                return found
            if time.time() - shown > 10:
                say(f"{len(found)}/{len(names)} {what}")
                shown = time.time()
            time.sleep(0.2)


# --- The operator ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Operator:
    """`sluice operator` as a process of this one: its /metrics, memory and CPU time."""

    def __init__(self, env: dict[str, str], namespace: str, prometheus: str, log: Path,
                 concurrency: int | None) -> None:
        self.port = free_port()
        self.log = log
        command = [sys.executable, "-m", "sluice.cli.main", "operator", "--namespace", namespace,
                   f"--metrics-address=127.0.0.1:{self.port}", f"--prometheus-allow={prometheus}",
                   *([f"--concurrency={concurrency}"] if concurrency else [])]
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                            env={**env, "PYTHONPATH": str(ROOT / "operator")})

    def wait_started(self) -> None:
        deadline = time.time() + 90
        while "sluice operator started" not in self.log.read_text(errors="replace"):
            if self.process.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"the operator did not start; see {self.log}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with LOOPBACK.open(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples
                if not s.name.endswith("_created")}

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def problems(self) -> list[str]:
        """The log's warnings, errors and tracebacks, one line each."""
        lines = self.log.read_text(errors="replace").splitlines()
        return [line for line in lines if any(word in line for word in ("WARNING", "ERROR", "Traceback"))]


class Window:
    """What the operator did between two readings of its /metrics."""

    def __init__(self, operator: Operator) -> None:
        self.operator = operator
        self.before = operator.metrics()
        self.cpu = operator.cpu_seconds()
        self.began = time.time()

    def close(self) -> None:
        after = self.operator.metrics()
        self.seconds = time.time() - self.began
        self.cpu = self.operator.cpu_seconds() - self.cpu
        self.delta = {key: value - self.before.get(key, 0.0) for key, value in after.items()}

    def total(self, name: str, **labels: str) -> float:
        return sum(v for (n, ls), v in self.delta.items()
                   if n == name and all(dict(ls).get(k) == want for k, want in labels.items()))

    def by(self, name: str, label: str) -> str:
        counts: dict[str, float] = {}
        for (n, ls), v in self.delta.items():
            if n == name and v:
                key = dict(ls).get(label, "")
                counts[key] = counts.get(key, 0) + v
        return ", ".join(f"{k} {v:.0f}" for k, v in sorted(counts.items())) or "none"

    def report(self) -> None:
        row("API reads by verb (get = outside the caches)", self.by("sluice_api_reads_total", "verb"))
        gets = {k: v for k, v in self.delta.items() if k[0] == "sluice_api_reads_total" and ("verb", "get") in k[1]}
        if any(gets.values()):
            row("  gets by kind", ", ".join(f"{dict(ls)['kind']} {v:.0f}" for (_, ls), v in gets.items() if v))
        row("API writes sent / fenced", f"{self.total('sluice_api_writes_total', result='sent'):.0f} / "
                                        f"{self.total('sluice_api_writes_total', result='fenced'):.0f}")
        row("reconcile passes", f"{self.total('sluice_reconcile_total'):.0f} "
                                f"({self.by('sluice_reconcile_total', 'result')})")
        count = self.total("sluice_reconcile_duration_seconds_count")
        if count:
            mean = self.total("sluice_reconcile_duration_seconds_sum") / count
            buckets = sorted((float(dict(ls)["le"]), v) for (n, ls), v in self.delta.items()
                             if n == "sluice_reconcile_duration_seconds_bucket")
            p99 = next(le for le, v in buckets if v >= 0.99 * count)
            row("pass duration", f"mean {mean * 1000:.0f} ms, p99 <= {p99:g} s")
        row("operator CPU", f"{self.cpu:.1f} s over {self.seconds:.0f} s")


# --- The four parts ----------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    cluster: Cluster
    operator: Operator
    releases: Releases
    node: str
    prometheus: str

    def names(self, count: int) -> list[str]:
        return [f"app-{i:04d}" for i in range(count)]

    def create(self) -> None:
        n = self.args.releases
        print(f"\n1. Create {n} Releases ({self.args.replicas} pod(s) each, no policy)", flush=True)
        objects = [release(name, "1.0.0", self.args.replicas, self.node) for name in self.names(n)]
        window = Window(self.operator)
        began = self.cluster.apply(objects)
        row("kubectl apply took", f"{time.time() - began:.1f} s")
        done = self.releases.wait(self.names(n), lambda s: s.settled("1.0.0"), began, self.args.timeout,
                                  "Succeeded")
        window.close()
        if done:
            arrivals = [s.at - began for s in done.values()]
            row("settle: apply -> all Succeeded", f"{max(arrivals):.1f} s ({len(done)}/{n} Succeeded)")
            row("  each Release: apply -> Succeeded", spread(arrivals))
        row("operator RSS after settle", f"{self.operator.rss_mib():.0f} MiB")
        window.report()

    def idle(self) -> None:
        seconds = self.args.idle
        print(f"\n2. At rest for {seconds:.0f} s", flush=True)
        window = Window(self.operator)
        time.sleep(seconds)
        window.close()
        minutes = window.seconds / 60
        row("writes per minute", f"{window.total('sluice_api_writes_total', result='sent') / minutes:.1f}")
        row("API gets (reads outside the caches)", f"{window.total('sluice_api_reads_total', verb='get'):.0f}")
        row("reconcile passes", f"{window.total('sluice_reconcile_total'):.0f}")
        row("operator CPU", f"{window.cpu:.2f} s over {window.seconds:.0f} s "
                            f"({100 * window.cpu / window.seconds:.1f}% of a core)")
        row("operator RSS", f"{self.operator.rss_mib():.0f} MiB")

    def inflight(self) -> None:
        names = self.names(min(self.args.inflight, self.args.releases))
        pause = self.args.pause
        print(f"\n3. In flight: {len(names)} Releases 1.0.0 -> 1.1.0 at once "
              f"(setWeight 20, pause {pause:g}s, setWeight 60, pause {pause:g}s)", flush=True)
        self.cluster.apply([stepped_policy(pause)])
        objects = [release(name, "1.1.0", self.args.replicas, self.node, policy="stepped") for name in names]
        window = Window(self.operator)
        began = self.cluster.apply(objects)
        row("kubectl apply took", f"{time.time() - began:.1f} s")
        done = self.releases.wait(names, lambda s: s.settled("1.1.0"), began, self.args.timeout, "promoted")
        window.close()
        if done:
            arrivals = [s.at - began for s in done.values()]
            row("apply -> all Succeeded", f"{max(arrivals):.1f} s ({len(done)}/{len(names)} Succeeded)")
            row("  each Release: apply -> Succeeded", spread(arrivals))
        late, lengths = [], []
        for name in names:
            changes = [s for s in self.releases.changes(name) if s.at >= began]
            for index in (1, 3):  # the pauses
                start = next((s for s in changes if s.step == index and s.candidate == "1.1.0"
                              and s.step_started), None)
                if start is None or start.step_started is None:
                    continue
                past = next((s for s in changes if s.at > start.at and s.step != index), None)
                if past is None:
                    continue
                due = datetime.strptime(start.step_started, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
                late.append(past.at - due.timestamp() - pause)
                lengths.append(past.at - start.at)
        row("step past a due pause: late by", spread(late))
        row(f"pause as seen by a watch (set to {pause:g}s)", spread(lengths))
        row("operator RSS", f"{self.operator.rss_mib():.0f} MiB")
        window.report()

    def rollback(self) -> None:
        trials = self.args.rollback_trials
        print(f"\n4. Rollback of a bad canary ({trials} trial(s): error rate 0.5, abort at > {BREACH})",
              flush=True)
        up = prometheus_value(self.prometheus, 'min(up{job="traffic-simulator"})')
        if up != 1:
            row("WARNING", f"Prometheus does not scrape the simulator (up = {up}): no breach will be seen")
        self.cluster.apply([tripwire_policy(self.prometheus)])
        cleaned, rolled = [], []
        for trial in range(trials):
            name = f"bad-{trial}"
            outcome = self.rollback_trial(name)
            breach, clean, rolled_back, apply = (outcome.get(k) for k in ("breach", "clean", "rolled", "apply"))
            parts = [f"apply->breach {breach - apply:.1f}s" if breach and apply else "no breach seen",
                     f"clean-breach {clean - breach:.2f}s" if clean and breach else "never clean",
                     f"apply->RolledBack {rolled_back - apply:.1f}s" if rolled_back and apply else "not RolledBack"]
            row(f"trial {trial + 1}", ", ".join(parts))
            row("  its status.message", self.message(name)[:110])
            if clean and breach:
                cleaned.append(clean - breach)
            if rolled_back and apply:
                rolled.append(rolled_back - apply)
        if cleaned:
            row("t_clean - t_breach, median", f"{statistics.median(cleaned):.2f} s (n={len(cleaned)})")
        if rolled:
            row("apply -> RolledBack, median", f"{statistics.median(rolled):.1f} s (n={len(rolled)})")

    def message(self, name: str) -> str:
        try:
            body = client.CustomObjectsApi().get_namespaced_custom_object(
                "sluice.dev", "v1alpha1", self.cluster.namespace, "releases", name)
        except ApiException as error:
            return f"(cannot read it: HTTP {error.status})"
        return str((body.get("status") or {}).get("message", ""))

    def rollback_trial(self, name: str) -> dict[str, float | None]:
        outcome: dict[str, float | None] = {}
        began = self.cluster.apply([release(name, "1.0.0", ROLLBACK_REPLICAS, self.node, policy="tripwire")])
        if not self.releases.wait([name], lambda s: s.settled("1.0.0"), began, self.args.timeout, "stable"):
            return outcome
        endpoints = Endpoints(bad="1.1.0")
        watchers = [
            Watcher(client.CoreV1Api().list_namespaced_pod, (self.cluster.namespace,), endpoints.pod,
                    label_selector=f"app.kubernetes.io/name={name}"),
            Watcher(client.DiscoveryV1Api().list_namespaced_endpoint_slice, (self.cluster.namespace,),
                    endpoints.slice, label_selector=f"kubernetes.io/service-name={name}"),
        ]
        query = (ERROR_RATE.replace("{{namespace}}", self.cluster.namespace).replace("{{release}}", name)
                 .replace("{{version}}", "1.1.0"))
        try:
            outcome["apply"] = self.cluster.apply([release(name, "1.1.0", ROLLBACK_REPLICAS, self.node,
                                                           policy="tripwire", error_rate=0.5)])
            deadline = outcome["apply"] + self.args.timeout
            while time.time() < deadline:
                if outcome.get("breach") is None:
                    value = prometheus_value(self.prometheus, query)
                    if value is not None and value > BREACH:
                        outcome["breach"] = time.time()
                outcome["clean"] = endpoints.clean()
                rolled = self.releases.first(name, lambda s: s.phase == "RolledBack" and s.observed == s.generation,
                                             outcome["apply"])
                outcome["rolled"] = rolled.at if rolled else None
                if all(outcome.get(k) for k in ("breach", "clean", "rolled")):
                    break
                time.sleep(0.5)
        finally:
            for watcher in watchers:
                watcher.stop()
        return outcome


class Endpoints:
    """Which pods of one version the EndpointSlices of one Service list, and since when."""

    def __init__(self, bad: str) -> None:
        self.bad = bad
        self.lock = threading.Lock()
        self.versions: dict[str, str] = {}  # pod name -> version; kept after the pod is gone
        self.slices: dict[str, list[str]] = {}  # slice name -> pod names listed
        self.log: list[tuple[float, int]] = []  # (arrival, bad pods listed), on each change

    def pod(self, kind: str, body: Body, arrival: float) -> None:
        with self.lock:
            self.versions[body["metadata"]["name"]] = (body["metadata"].get("labels") or {}).get(VERSION_LABEL, "")
            self._count(arrival)

    def slice(self, kind: str, body: Body, arrival: float) -> None:
        with self.lock:
            if kind == "DELETED":
                self.slices.pop(body["metadata"]["name"], None)
            else:
                self.slices[body["metadata"]["name"]] = [
                    (e.get("targetRef") or {}).get("name", "") for e in body.get("endpoints") or []]
            self._count(arrival)

    def _count(self, arrival: float) -> None:
        bad = sum(1 for pods in self.slices.values() for pod in pods if self.versions.get(pod) == self.bad)
        if not self.log or self.log[-1][1] != bad:
            self.log.append((arrival, bad))

    def clean(self) -> float | None:
        """When the bad version's pods were first all gone from the slices, after one was listed."""
        with self.lock:
            listed = False
            for arrival, bad in self.log:
                listed = listed or bad > 0
                if listed and bad == 0:
                    return arrival
        return None


def prometheus_value(base: str, query: str) -> float | None:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    try:
        with LOOPBACK.open(url, timeout=2) as answer:
            result = json.load(answer)["data"]["result"]
    except (OSError, ValueError, KeyError):
        return None
    return float(result[0]["value"][1]) if result else None


# --- Main --------------------------------------------------------------------------------------


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class _Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def parse(argv: Iterable[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=_Help)
    parser.add_argument("--releases", type=int, default=500, help="Releases created at once (part 1)")
    parser.add_argument("--replicas", type=int, default=1, help="pods of each of those Releases")
    parser.add_argument("--idle", type=float, default=120, help="seconds at rest (part 2)")
    parser.add_argument("--inflight", type=int, default=100, help="Releases moved to 1.1.0 at once (part 3)")
    parser.add_argument("--pause", type=float, default=10, help="seconds of each pause step in part 3")
    parser.add_argument("--rollback-trials", type=int, default=3, help="bad canaries rolled back (part 4)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds any one wait may last")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="passed to the operator as --concurrency when given")
    parser.add_argument("--prometheus", default=os.environ.get(
        "PROMETHEUS_URL", f"http://127.0.0.1:{os.environ.get('PROMETHEUS_PORT', '9090')}"),
        help="the Prometheus scraping the traffic simulator")
    parser.add_argument("--skip-create", action="store_true",
                        help="skip part 1, and parts 2 and 3, which use its Releases")
    parser.add_argument("--skip-idle", action="store_true", help="skip part 2")
    parser.add_argument("--skip-inflight", action="store_true", help="skip part 3")
    parser.add_argument("--skip-rollback", action="store_true", help="skip part 4")
    return parser.parse_args(argv)


def main() -> None:
    args = parse()
    signal.signal(signal.SIGTERM, _interrupted)
    env = environment()
    config.load_kube_config(config_file=env["KUBECONFIG"])
    bench_id = uuid.uuid4().hex[:6]
    namespace, node = f"bench-{bench_id}", f"sluice-bench-{bench_id}"
    cluster = Cluster(env, namespace)
    log = ROOT / ".local" / "bench" / f"operator-{namespace}.log"
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    print(f"Sluice at scale ({commit}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}): "
          f"namespace {namespace}, node {node}", flush=True)
    operator: Operator | None = None
    watcher: Watcher | None = None
    created_node = interrupted = False
    try:
        cluster.kubectl("create", "namespace", namespace)
        created_node = True
        cluster.kubectl("create", "-f", "-", stdin=yaml.safe_dump(bench_node(node, bench_id)))
        cluster.kubectl("wait", "--for=condition=Ready", f"node/{node}", "--timeout=60s")
        releases = Releases()
        watcher = Watcher(client.CustomObjectsApi().list_namespaced_custom_object,
                          ("sluice.dev", "v1alpha1", namespace, "releases"), releases.seen)
        operator = Operator(env, namespace, args.prometheus, log, args.concurrency)
        operator.wait_started()
        say(f"operator pid {operator.process.pid}, /metrics on 127.0.0.1:{operator.port}, log {log}")
        bench = Bench(args, cluster, operator, releases, node, args.prometheus)
        if not args.skip_create and args.releases > 0:
            bench.create()
            if not args.skip_idle:
                bench.idle()
            if not args.skip_inflight and args.inflight > 0:
                bench.inflight()
        if not args.skip_rollback and args.rollback_trials > 0:
            bench.rollback()
        problems = operator.problems()
        print(f"\nOperator log: {len(problems)} warning/error line(s) ({log})", flush=True)
        for line in problems[:10]:
            print(f"  {line[:200]}")
    except KeyboardInterrupt:
        say("interrupted; cleaning up")
        interrupted = True
    finally:
        if watcher:
            watcher.stop()
        if operator:
            operator.stop()
        say(f"deleting namespace {namespace}")
        cluster.kubectl("delete", "namespace", namespace, "--ignore-not-found", f"--timeout={args.timeout:.0f}s",
                        check=False, timeout=args.timeout + 30)
        if created_node:
            cluster.kubectl("delete", "node", node, "--ignore-not-found", check=False)
    if interrupted:
        sys.exit(130)


if __name__ == "__main__":
    main()

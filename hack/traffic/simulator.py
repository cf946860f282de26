"""A traffic SIMULATOR for the local cluster: no real requests are served or sent.

kwok's pods run nothing, so this process stands in for an application's users. It watches the
cluster (polling once a second) and, for every app, makes up requests at the rate its Service
asks for, routed the way Kubernetes would route them, and serves the resulting request metrics
on /metrics for Prometheus to scrape:

- An app is every Deployment whose pod template has `app.kubernetes.io/name`; its Ready pods'
  `app.kubernetes.io/version` and `sluice.dev/track` labels name the version and the track.
- The rate is the annotation `sim.sluice.dev/rps` on the Service named after the app (default 50/s).
- An HTTPRoute with backendRefs to the app's Services splits traffic by their weights, each
  Service's selector deciding which Ready pods receive it. Without one, traffic goes to the Ready
  pods the Service named after the app selects (all the app's Ready pods if there is no such
  Service), in proportion to their number. A version with no Ready pods gets no traffic.
- Any other Service of the app annotated with `sim.sluice.dev/rps` (a blue-green preview, say)
  gets that rate on top, spread over the Ready pods it selects, as a smoke test would send it.
- Behaviour comes from pod annotations: `sim.sluice.dev/error-rate` (fraction of 5xx, default 0)
  and `sim.sluice.dev/latency-ms` (mean latency, default 20).

Series: http_requests_total{namespace,app,version,track,code} and the histogram
http_request_duration_seconds with the same labels.
"""

from __future__ import annotations

import argparse
import logging
import random
import signal
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

from kubernetes import client, config
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

NAME = "app.kubernetes.io/name"
VERSION = "app.kubernetes.io/version"
TRACK = "sluice.dev/track"
RPS = "sim.sluice.dev/rps"
ERROR_RATE = "sim.sluice.dev/error-rate"
LATENCY = "sim.sluice.dev/latency-ms"
DEFAULT_RPS = 50.0
DEFAULT_LATENCY_MS = 20.0

log = logging.getLogger("simulator")


@dataclass(frozen=True)
class Backend:
    """Ready pods of one version and track of an app: where a share of its traffic lands."""

    namespace: str
    app: str
    version: str
    track: str
    error_rate: float
    latency_ms: float


def _float(annotations: dict[str, str], key: str, default: float) -> float:
    try:
        return float(annotations.get(key, default))
    except ValueError:
        return default


def _ready(pod: client.V1Pod) -> bool:
    if pod.metadata.deletion_timestamp is not None:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def _selects(selector: dict[str, str] | None, labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def split(pods: list[client.V1Pod], services: dict[str, client.V1Service],
          routes: list[dict], app: str, entry: str | None = None) -> dict[Backend, float]:
    """Share of an app's traffic per backend (summing to 1, or empty when nothing is Ready).
    Without a route, traffic enters through the Service `entry` (default: the one named `app`)."""
    ready = [p for p in pods if _ready(p)]
    app_services = {name: s for name, s in services.items() if (s.spec.selector or {}).get(NAME) == app}
    weights: list[tuple[list[client.V1Pod], float]] = []
    for route in routes:
        for rule in route.get("spec", {}).get("rules", []) or []:
            for ref in rule.get("backendRefs", []) or []:
                if ref.get("kind", "Service") == "Service" and ref.get("name") in app_services:
                    service = app_services[ref["name"]]
                    chosen = [p for p in ready if _selects(service.spec.selector, p.metadata.labels or {})]
                    weights.append((chosen, float(ref.get("weight", 1))))
    if not weights:
        main = app_services.get(entry or app)
        chosen = [p for p in ready if _selects(main.spec.selector, p.metadata.labels or {})] if main else ready
        weights = [(chosen, 1.0)]
    total = sum(w for pods_, w in weights if pods_)
    shares: dict[Backend, float] = defaultdict(float)
    if total <= 0:
        return {}
    for chosen, weight in weights:
        for pod in chosen:
            labels, notes = pod.metadata.labels or {}, pod.metadata.annotations or {}
            backend = Backend(
                pod.metadata.namespace, app, labels.get(VERSION, "unknown"), labels.get(TRACK, "none"),
                min(max(_float(notes, ERROR_RATE, 0.0), 0.0), 1.0), _float(notes, LATENCY, DEFAULT_LATENCY_MS),
            )
            shares[backend] += weight / total / len(chosen)
    return dict(shares)


class Simulator:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["namespace", "app", "version", "track", "code"]
        self.requests = Counter("http_requests", "Simulated requests.", labels, registry=registry)
        self.latency = Histogram(
            "http_request_duration_seconds", "Simulated request latency.", labels, registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.core = client.CoreV1Api()
        self.apps = client.AppsV1Api()
        self.custom = client.CustomObjectsApi()
        self.rng = random.Random()

    def _routes(self) -> dict[str, list[dict]]:
        try:
            items = self.custom.list_cluster_custom_object("gateway.networking.k8s.io", "v1", "httproutes")["items"]
        except client.ApiException:
            return {}  # Gateway API CRDs not installed: replica ratio only
        by_namespace: dict[str, list[dict]] = defaultdict(list)
        for route in items:
            by_namespace[route["metadata"]["namespace"]].append(route)
        return by_namespace

    def observe(self) -> dict[Backend, float]:
        """Requests per second per backend, as the cluster stands now."""
        apps: set[tuple[str, str]] = set()
        for deployment in self.apps.list_deployment_for_all_namespaces().items:
            name = (deployment.spec.template.metadata.labels or {}).get(NAME)
            if name:
                apps.add((deployment.metadata.namespace, name))
        if not apps:
            return {}
        pods: dict[tuple[str, str], list[client.V1Pod]] = defaultdict(list)
        for pod in self.core.list_pod_for_all_namespaces(label_selector=NAME).items:
            pods[(pod.metadata.namespace, pod.metadata.labels[NAME])].append(pod)
        services: dict[str, dict[str, client.V1Service]] = defaultdict(dict)
        for service in self.core.list_service_for_all_namespaces().items:
            services[service.metadata.namespace][service.metadata.name] = service
        routes = self._routes()
        rates: dict[Backend, float] = {}
        for namespace, app in sorted(apps):
            main = services[namespace].get(app)
            rps = _float((main.metadata.annotations or {}) if main else {}, RPS, DEFAULT_RPS)
            for backend, share in split(pods[(namespace, app)], services[namespace],
                                        routes.get(namespace, []), app).items():
                rates[backend] = rates.get(backend, 0.0) + rps * share
            for name, service in services[namespace].items():
                extra = (service.metadata.annotations or {}).get(RPS)
                if name == app or extra is None or (service.spec.selector or {}).get(NAME) != app:
                    continue
                selected = {name: service}
                for backend, share in split(pods[(namespace, app)], selected, [], app, entry=name).items():
                    rates[backend] = rates.get(backend, 0.0) + _float({RPS: extra}, RPS, 0.0) * share
        return rates

    def emit(self, rates: dict[Backend, float], seconds: float) -> None:
        for backend, rps in rates.items():
            expected = rps * seconds
            count = int(expected) + (1 if self.rng.random() < expected - int(expected) else 0)
            errors = sum(1 for _ in range(count) if self.rng.random() < backend.error_rate)
            base = [backend.namespace, backend.app, backend.version, backend.track]
            for code, n in (("200", count - errors), ("500", errors)):
                if n == 0:
                    continue
                self.requests.labels(*base, code).inc(n)
                histogram = self.latency.labels(*base, code)
                for _ in range(min(n, 200)):  # latencies of a sample; the count above stays exact
                    histogram.observe(self.rng.expovariate(1000.0 / max(backend.latency_ms, 0.1)))


def main() -> None:
    parser = argparse.ArgumentParser(description="Traffic SIMULATOR for the local Sluice cluster.")
    parser.add_argument("--kubeconfig", default=None)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9102)
    parser.add_argument("--tick", type=float, default=1.0, help="seconds between traffic ticks")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s simulator %(message)s")
    config.load_kube_config(config_file=args.kubeconfig)
    registry = CollectorRegistry()
    simulator = Simulator(registry)
    start_http_server(args.port, addr=args.address, registry=registry)
    log.info("serving simulated request metrics on http://%s:%d/metrics", args.address, args.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    last = time.monotonic()
    while not stop.is_set():
        try:
            rates = simulator.observe()
        except Exception as error:  # the API server restarting must not end the simulation
            log.warning("cannot read the cluster: %s", error)
            rates = {}
        now = time.monotonic()
        simulator.emit(rates, now - last)
        last = now
        stop.wait(args.tick)


if __name__ == "__main__":
    main()

"""The operator's own /metrics: what it did and how long passes take (prometheus_client)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

PASSES = Counter("sluice_reconcile_total", "Reconcile passes, by result.", ["result"])
PASS_SECONDS = Histogram("sluice_reconcile_duration_seconds", "Time one reconcile pass takes.",
                         buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
EVENTS = Counter("sluice_events_total", "Events Sluice posted on Releases, by reason and type.", ["reason", "type"])
WRITES = Counter("sluice_api_writes_total", "Writes to the API server: sent, or refused by the leader fence.",
                 ["result"])
API_READS = Counter("sluice_api_reads_total", "Reads from the API server, by kind and verb (list and watch "
                    "are the caches'; get is a read outside them).", ["kind", "verb"])
LAST_WRITE = Gauge("sluice_api_last_write_timestamp_seconds", "When this process last sent a write (Unix time).")
LEADER = Gauge("sluice_leader", "1 while this replica holds the leader lease and acts, else 0.")
MEASUREMENTS = Counter("sluice_measurements_total", "Metric measurements, by verdict.", ["verdict"])
NOTIFICATIONS = Counter(
    "sluice_notifications_total",
    "Notifications for notify targets, by target kind (webhook, slack) and result: sent (answered 2xx), "
    "failed (a refusing answer, or every attempt failed), refused (address not allowed or Secret unusable: "
    "nothing sent), dropped (the queue was full, or the operator stopped).",
    ["target_kind", "result"])
NOTIFICATION_ATTEMPTS = Counter("sluice_notification_attempts_total",
                                "HTTP requests to notify targets, by target kind and outcome (2xx, 4xx, 5xx, "
                                "timeout, error).", ["target_kind", "outcome"])
NOTIFICATION_SECONDS = Histogram("sluice_notification_delivery_seconds",
                                 "From an event's decision to its notification's 2xx answer, retries included.",
                                 buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300))
NOTIFICATION_QUEUE = Gauge("sluice_notification_queue", "Notifications waiting to be sent (bounded).")


def serve(address: str) -> None:
    """Serve /metrics on host:port (a daemon thread of prometheus_client)."""
    host, _, port = address.rpartition(":")
    start_http_server(int(port), addr=host or "127.0.0.1")

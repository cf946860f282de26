"""Notifications: a Release's rollout told to webhooks and Slack (RolloutPolicy.spec.notify).

A reconcile pass hands the events it posted to `Notifier.send`, which only queues them: sending
happens in background tasks, so a receiver that is slow, down or hostile never blocks or slows a
rollout, and never changes its outcome. Each target (namespace, policy, target name) is one lane:
its notifications go out one at a time, in the order they were decided (started before promoted),
while other targets' lanes go on beside it. A request has a timeout; a failed one is retried with
exponential backoff a bounded number of times; the queue is bounded, and when it is full the oldest
waiting notification is dropped, with a log line and a metric.

Each event is sent once per process (its Event object's name, `reconcile.event_name`, is the key
and the body's `id`), and a process never sends what an earlier process decided: a restart or a
leader change does not repeat every Release's last events to Slack. The price is that a
notification queued when a process dies is lost; receivers that need every event read the
Release's Events or status.history, which are the record.

Trust. The address comes from the policy, or from a Secret (a Slack webhook URL is a credential);
the Secret is read only if it carries the label sluice.dev/analysis-credential=true (the watch
cache holds no other), and the address must be on the operator's notification allowlist
(`--webhook-allow`, SLUICE_WEBHOOK_ALLOW; sluice.analysis.addresses: empty allows any address,
unless `--prometheus-allow` is set, then none).
A target that cannot be used is skipped, and a Warning event on the Release says why, once per
cause; the rollout goes on. Messages and logs show an address as scheme://host[:port] only: a
webhook's path or query is often its secret. Redirects are not followed (they would leave the
allowlist), and nothing a receiver answers is read beyond its status code, or written anywhere.

Signing. A generic webhook target with a signingSecretRef has every request signed, so that its
receiver can tell a POST from Sluice from anyone else's: the header

    Sluice-Signature: sha256=<lowercase hex HMAC-SHA256 of the exact body bytes>

keyed with the Secret's value (as text, surrounding whitespace removed, like every Secret Sluice
reads): the scheme of GitHub's X-Hub-Signature-256 and Flux's generic-hmac. The body carries `id`
and `time`, so a receiver can also refuse a replay. The key is read like a URL from a Secret (the
label, the watch cache), for each notification; a key that cannot be read (no Secret, no label, no
such key, an empty value) means the target is refused, as an address off the allowlist is: a
target that asked for signatures is never sent an unsigned request. The key is never logged or
shown; a message names its Secret and key only.

The generic webhook body (schemaVersion 1, stable; new fields may be added):

    {"schemaVersion": 1, "id": "checkout.sluice-1a2b3c4d-7", "event": "promoted",
     "release": "checkout", "namespace": "shop", "version": "1.4.2", "stableVersion": "1.4.2",
     "phase": "Succeeded", "reason": "Promoted", "type": "Normal",
     "message": "1.4.2 promoted to stable", "weight": 0, "time": "2026-11-28T18:00:00Z"}
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from sluice import metrics
from sluice.analysis.addresses import PROMETHEUS, WEBHOOK, Allowlist, origin, usable_url
from sluice.analysis.providers import SecretSource, read_secret
from sluice.analysis.runner import Rejected
from sluice.api.models import NotifyTarget, PendingEvent, ReleaseStatus, RolloutPolicySpec, WebhookTarget
from sluice.plan import reasons
from sluice.reconcile import event_name

log = logging.getLogger(__name__)
Body = dict[str, Any]
Lane = tuple[str, str, str]  # (namespace, policy, target): one receiver as a policy names it

FLAG, ENVIRONMENT, HELM_VALUE = WEBHOOK.flag, WEBHOOK.environment, WEBHOOK.helm

# Event reasons -> the `on` kinds of NotifyTarget.
KINDS = {
    reasons.ROLLOUT_STARTED: "started",
    reasons.STEP_COMPLETED: "step",
    reasons.ROLLOUT_PAUSED: "paused",  # paused on failure (onFailure: pause)
    reasons.WAITING_FOR_PROMOTE: "paused",  # a pause step, or blue-green without autoPromotion
    reasons.ANALYSIS_INCONCLUSIVE: "paused",  # too little to judge: a person decides
    reasons.PROMOTED: "promoted",
    reasons.ROLLED_BACK: "rolledBack",
    reasons.FAST_ROLLBACK: "rolledBack",  # the stable version re-applied mid-rollout
    reasons.PROGRESS_DEADLINE: "failed",  # a direct rollout not Ready in time: phase Failed
    reasons.HOOK_SUCCEEDED: "hook",  # a hook Job (preRollout, postPromotion, postRollback) ended
    reasons.HOOK_FAILED: "hook",
}

TIMEOUT = 5.0  # seconds for one request, connection to answer
ATTEMPTS = 5  # requests per notification at most
FIRST_DELAY = 1.0  # seconds before the first retry; doubling after that
MAX_DELAY = 60.0
CAPACITY = 1000  # notifications waiting, over all targets
CONCURRENCY = 8  # requests in flight at once, over all targets
GRACE = 5.0  # seconds close() gives the queue to drain
REMEMBERED = 10_000  # event keys kept to send each event once
SIGNATURE = "Sluice-Signature"  # the header of a signed webhook request


def signature(key: bytes, body: bytes) -> str:
    """The Sluice-Signature header of a request: HMAC-SHA256 of the body, keyed with `key`, in
    lowercase hex. GitHub's documented example holds: key b"It's a Secret to Everybody", body
    b"Hello, World!" -> "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"."""
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


class EventSink(Protocol):
    async def event(self, regarding: Body, type_: str, reason: str, message: str, name: str | None = None) -> bool:
        ...


def retry_delay(attempt: int, jitter: float, first: float = FIRST_DELAY, ceiling: float = MAX_DELAY,
                retry_after: float | None = None) -> float:
    """Seconds to wait after failed attempt `attempt` (>= 1) before the next one: doubling from
    `first`, capped at `ceiling`, spread over its upper half by `jitter` (uniform in [0, 1)) so
    that targets failing together do not retry in lock step. With first=1: attempts 1, 2, 3, 4
    wait 0.5-1 s, 1-2 s, 2-4 s, 4-8 s. A Retry-After the receiver asked for (429, 503) is
    honoured, within `ceiling`."""
    limit = min(ceiling, first * 2.0 ** min(attempt - 1, 32))
    delay = limit / 2 + limit / 2 * jitter
    if retry_after is not None:
        delay = max(delay, min(retry_after, ceiling))
    return delay


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Notice:
    """One event of one Release, as every target is told it."""

    id: str
    event: str  # the `on` kind: started, step, paused, promoted, rolledBack, failed, hook
    release: str
    namespace: str
    version: str
    stable_version: str | None
    phase: str
    reason: str
    type: str
    message: str
    weight: int
    time: str

    @classmethod
    def of(cls, release: Body, status: ReleaseStatus, event: PendingEvent, kind: str, now: datetime) -> Notice:
        """The version an event is about: the candidate while one is in flight, else (promoted,
        abandoned) the one the last history entry names."""
        meta = release["metadata"]
        spec = release.get("spec") or {}
        version = status.candidate_version or (status.history[-1].version if status.history else None) \
            or str(spec.get("version", ""))
        return cls(id=event_name(release, event.id), event=kind, release=meta["name"], namespace=meta["namespace"],
                   version=version, stable_version=status.stable_version, phase=status.phase.value,
                   reason=event.reason, type=event.type, message=event.message, weight=status.canary_weight,
                   time=_iso(now))

    def webhook(self) -> Body:
        """The generic JSON body (see the module's docstring)."""
        return {"schemaVersion": 1, "id": self.id, "event": self.event, "release": self.release,
                "namespace": self.namespace, "version": self.version, "stableVersion": self.stable_version,
                "phase": self.phase, "reason": self.reason, "type": self.type, "message": self.message,
                "weight": self.weight, "time": self.time}

    def slack(self) -> Body:
        """A Slack incoming-webhook message: `text` for notifications and clients without blocks,
        section blocks for the rest. Everything from the cluster is escaped (&, <, >), so a
        message cannot mention @channel or forge a link."""
        icon, headline = HEADLINES[self.event]
        said = headline.format(version=_escape(self.version))
        where = f"*{_escape(self.release)}* in `{_escape(self.namespace)}`"
        fields = [("Version", self.version), ("Stable", self.stable_version or "none"), ("Phase", self.phase),
                  ("Reason", self.reason)]
        return {
            "text": f"{icon} {_escape(self.namespace)}/{_escape(self.release)}: {said}",
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn",
                                             "text": f"{icon} {where}: {said}\n{_escape(self.message)}"[:3000]}},
                {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{name}*\n{_escape(value)}"}
                                               for name, value in fields]},
                {"type": "context", "elements": [{"type": "mrkdwn",
                                                  "text": f"Sluice · {self.time} · event {_escape(self.id)}"}]},
            ],
        }


HEADLINES = {
    "started": (":rocket:", "rollout of {version} started"),
    "step": (":arrow_forward:", "{version}: step complete"),
    "paused": (":double_vertical_bar:", "rollout of {version} paused, waiting for a person"),
    "promoted": (":white_check_mark:", "{version} promoted"),
    "rolledBack": (":leftwards_arrow_with_hook:", "{version} rolled back"),
    "failed": (":x:", "rollout of {version} failed"),
    "hook": (":hook:", "{version}: hook"),
}


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass
class Job:
    lane: Lane
    kind: str  # webhook | slack
    target: WebhookTarget
    notice: Notice
    regarding: Body  # the Release, for a Warning event
    seq: int
    queued: float  # monotonic


class Notifier:
    """The operator's notifications: send() queues, background tasks deliver (one per busy target)."""

    def __init__(self, secrets: SecretSource, events: EventSink | None = None, allowed: Allowlist | None = None, *,
                 timeout: float = TIMEOUT, attempts: int = ATTEMPTS, first_delay: float = FIRST_DELAY,
                 max_delay: float = MAX_DELAY, capacity: int = CAPACITY, concurrency: int = CONCURRENCY,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], datetime] | None = None,
                 jitter: Callable[[], float] = random.random,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.secrets, self.events = secrets, events
        self.allowed = Allowlist.from_environment(WEBHOOK) if allowed is None else allowed
        self.timeout, self.attempts = timeout, max(1, attempts)
        self.first_delay, self.max_delay = first_delay, max_delay
        self.capacity, self.clock, self.jitter = max(1, capacity), clock, jitter
        self.wall = wall or (lambda: datetime.now(UTC))
        self.transport = transport
        self.slots = asyncio.Semaphore(max(1, concurrency))
        self.lanes: dict[Lane, collections.deque[Job]] = {}
        self.running: dict[Lane, asyncio.Task[None]] = {}
        self.pending = 0
        self.seq = 0
        self.sent: collections.OrderedDict[str, None] = collections.OrderedDict()  # event keys, bounded
        self.floors: dict[str, int] = {}  # Release uid -> the last event id decided before this process saw it
        self.warned: set[tuple[str, str, str]] = set()  # (Release uid, target, cause) already said in an event
        self.client: httpx.AsyncClient | None = None
        self.closed = False
        # httpx logs every request with its whole URL at INFO, and a webhook's URL is a credential.
        httpx_log = logging.getLogger("httpx")
        httpx_log.setLevel(max(httpx_log.getEffectiveLevel(), logging.WARNING))
        if self.allowed:
            log.info("notifications may go to: %s", self.allowed)
        elif self.allowed.closed:
            log.info("notifications may go nowhere: %s restricts analysis and %s is not set", PROMETHEUS.flag, FLAG)
        else:
            log.warning("no notification allowlist (%s, %s): any RolloutPolicy may have the operator POST its "
                        "Releases' events to any address, with the URL from any labelled Secret in its namespace",
                        FLAG, ENVIRONMENT)

    # --- queueing (called from a reconcile pass: never awaits, never raises) -------------------

    def send(self, release: Body, status: ReleaseStatus, policy: RolloutPolicySpec | None,
             events: Sequence[PendingEvent]) -> None:
        """Queue the notifications of `events` (the outbox just posted) for the policy's targets."""
        if self.closed or policy is None or not policy.notify or not events:
            return
        try:
            self._send(release, status, policy, events)
        except Exception:  # a bug here must never fail a pass that has already acted
            log.exception("notifications for %s/%s could not be queued", release["metadata"].get("namespace"),
                          release["metadata"].get("name"))

    def _send(self, release: Body, status: ReleaseStatus, policy: RolloutPolicySpec,
              events: Sequence[PendingEvent]) -> None:
        meta = release["metadata"]
        if len(self.floors) > 10 * REMEMBERED:  # Releases deleted long ago; a live one only loses its carry-over
            self.floors.clear()
        # The first time this process meets a Release, what its status had decided before is an
        # earlier process's to send (or was sent by it): a restart repeats nothing.
        floor = self.floors.setdefault(meta["uid"], int((release.get("status") or {}).get("eventSeq") or 0))
        policy_name = ((release.get("spec") or {}).get("policyRef") or {}).get("name", "")
        regarding = {"apiVersion": release.get("apiVersion"), "kind": release.get("kind"),
                     "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]}}
        for event in events:
            kind = KINDS.get(event.reason)
            if kind is None or not event.id.isdigit() or int(event.id) <= floor:
                continue
            key = event_name(release, event.id)
            if key in self.sent:
                continue
            self.sent[key] = None
            if len(self.sent) > REMEMBERED:
                self.sent.popitem(last=False)
            notice = Notice.of(release, status, event, kind, self.wall())
            for target in policy.notify:
                if target.events is None or kind in target.events:
                    self._queue(_job(target, (meta["namespace"], policy_name, target.name), notice, regarding,
                                     self._next(), self.clock()))

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def _queue(self, job: Job) -> None:
        if self.pending >= self.capacity:
            self._drop_oldest()
        self.lanes.setdefault(job.lane, collections.deque()).append(job)
        self.pending += 1
        metrics.NOTIFICATION_QUEUE.set(self.pending)
        if job.lane not in self.running:
            self.running[job.lane] = asyncio.get_running_loop().create_task(
                self._drain(job.lane), name=f"notify {'/'.join(job.lane)}")

    def _drop_oldest(self) -> None:
        lane = min((lane for lane, jobs in self.lanes.items() if jobs), key=lambda lane: self.lanes[lane][0].seq)
        dropped = self.lanes[lane].popleft()
        self.pending -= 1
        metrics.NOTIFICATIONS.labels(dropped.kind, "dropped").inc()
        log.warning("notification queue full (%d waiting): dropped the oldest, %s of %s/%s for notify target %s "
                    "of RolloutPolicy %s", self.capacity, dropped.notice.event, dropped.notice.namespace,
                    dropped.notice.release, lane[2], lane[1])

    async def _drain(self, lane: Lane) -> None:
        jobs = self.lanes[lane]
        try:
            while jobs:
                job = jobs.popleft()
                self.pending -= 1
                metrics.NOTIFICATION_QUEUE.set(self.pending)
                try:
                    await self._deliver(job)
                except asyncio.CancelledError:  # close() ran out of time
                    metrics.NOTIFICATIONS.labels(job.kind, "dropped").inc()
                    raise
                except Exception as error:  # never let one notification stop its lane (and no traceback:
                    metrics.NOTIFICATIONS.labels(job.kind, "failed").inc()  # it could quote the URL)
                    log.error("notify target %s of RolloutPolicy %s/%s: a notification failed (%s)", lane[2],
                              lane[0], lane[1], type(error).__name__)
        finally:
            self.running.pop(lane, None)
            if not jobs:
                self.lanes.pop(lane, None)

    # --- delivery (background) ----------------------------------------------------------------

    async def _deliver(self, job: Job) -> None:
        try:
            url = await self._address(job)
            key = await self._signing_key(job)
        except Rejected as error:
            metrics.NOTIFICATIONS.labels(job.kind, "refused").inc()
            await self._warn(job, reasons.NOTIFICATION_REFUSED, f"{error}; nothing is sent to it, and the "
                             "rollout is not affected")
            return
        content = json.dumps(job.notice.webhook() if job.kind == "webhook" else job.notice.slack()).encode()
        headers = {"Content-Type": "application/json", "Sluice-Event-Id": job.notice.id}
        if key is not None:
            headers[SIGNATURE] = signature(key, content)
        outcome = ""
        for attempt in range(1, self.attempts + 1):
            outcome, retry, retry_after = await self._post(job, url, content, headers)
            if not outcome:
                metrics.NOTIFICATIONS.labels(job.kind, "sent").inc()
                metrics.NOTIFICATION_SECONDS.observe(self.clock() - job.queued)
                return
            if not retry:
                break
            if attempt < self.attempts:
                await asyncio.sleep(retry_delay(attempt, self.jitter(), self.first_delay, self.max_delay,
                                                retry_after))
        metrics.NOTIFICATIONS.labels(job.kind, "failed").inc()
        tries = f"after {attempt} attempt(s)" if retry else "(not retried)"
        await self._warn(job, reasons.NOTIFICATION_FAILED,
                         f"notify target {job.lane[2]}: {job.notice.event} of {job.notice.version} could not be "
                         f"delivered to {origin(url)} "
                         f"{tries}: {outcome}; the rollout is not affected", cause=outcome)

    async def _address(self, job: Job) -> str:
        """The target's URL, or Rejected with a sentence that never quotes more than its origin."""
        target, namespace = job.target, job.lane[0]
        if target.url is not None:
            url, where = target.url, "its url"
            if not usable_url(url):  # the schema's pattern is looser than a request
                raise Rejected(f"notify target {job.lane[2]}: its url is not an http(s) URL with a host")
        else:
            ref = target.url_secret_ref
            assert ref is not None
            try:
                url = await read_secret(self.secrets, namespace, ref)
            except Rejected as error:
                raise Rejected(f"notify target {job.lane[2]}: {error}") from None
            where = f"the URL in Secret {ref.name}, key {ref.key},"
            if not usable_url(url):
                raise Rejected(f"notify target {job.lane[2]}: {where} is not an http(s) URL with a host "
                               "(no spaces, no #fragment)")
        if not self.allowed.allows(url):
            allow = origin(url)
            empty = f" (it is empty while {PROMETHEUS.flag} restricts analysis)" if self.allowed.closed and \
                not self.allowed else ""
            raise Rejected(f"notify target {job.lane[2]}: {where} goes to {allow}, which is not on this operator's "
                           f"notification allowlist{empty}; an operator administrator can allow it with "
                           f"{FLAG}={allow} (or {ENVIRONMENT}; the Helm value {HELM_VALUE})")
        return url

    async def _signing_key(self, job: Job) -> bytes | None:
        """The key that signs the target's requests, None if it asks for no signature, or Rejected
        with a sentence that names the Secret and the key, never the value."""
        ref = job.target.signing_secret_ref
        if ref is None:
            return None
        where = f"notify target {job.lane[2]}: the signing key (Secret {ref.name}, key {ref.key})"
        try:
            key = await read_secret(self.secrets, job.lane[0], ref)
        except Rejected as error:
            raise Rejected(f"{where} cannot be read: {error}") from None
        if not key:
            raise Rejected(f"{where} is empty")
        return key.encode()

    async def _post(self, job: Job, url: str, content: bytes, headers: dict[str, str]
                    ) -> tuple[str, bool, float | None]:
        """One request: ("", ...) when answered 2xx, else (what happened, worth retrying, Retry-After)."""
        if self.client is None:
            self.client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False, transport=self.transport,
                                            headers={"User-Agent": "sluice"})
        async with self.slots:
            try:
                async with asyncio.timeout(self.timeout):  # the whole exchange, not each read
                    async with self.client.stream("POST", url, content=content, headers=headers) as answer:
                        code, after = answer.status_code, answer.headers.get("Retry-After", "")
            except (TimeoutError, httpx.TimeoutException):
                metrics.NOTIFICATION_ATTEMPTS.labels(job.kind, "timeout").inc()
                return f"no answer within {self.timeout:g}s", True, None
            except httpx.HTTPError as error:
                metrics.NOTIFICATION_ATTEMPTS.labels(job.kind, "error").inc()
                return f"the connection failed ({type(error).__name__})", True, None
        metrics.NOTIFICATION_ATTEMPTS.labels(job.kind, f"{code // 100}xx").inc()
        if 200 <= code < 300:
            return "", False, None
        retry_after = float(after) if after.isdigit() else None
        if 300 <= code < 400:
            return f"answered HTTP {code}, a redirect, which Sluice does not follow", False, None
        return f"answered HTTP {code}", code >= 500 or code in (408, 425, 429), retry_after

    async def _warn(self, job: Job, reason: str, message: str, cause: str | None = None) -> None:
        """A Warning event on the Release, once per target and cause (not per notification)."""
        uid = job.regarding["metadata"]["uid"]
        said = (uid, job.lane[2], f"{reason}: {cause or message}")
        if said in self.warned:
            return
        if len(self.warned) > REMEMBERED:
            self.warned.clear()
        self.warned.add(said)
        name = job.regarding["metadata"]["name"]
        log.warning("%s/%s: %s", job.lane[0], name, message)
        if self.events is None:
            return
        digest = hashlib.sha256("\0".join(said).encode()).hexdigest()[:10]
        with contextlib.suppress(Exception):  # a standby, or the API server away: the log has said it
            await self.events.event(job.regarding, "Warning", reason, message,
                                    name=f"{name}.sluice-{uid[:8]}-notify-{digest}")

    async def close(self, grace: float = GRACE) -> None:
        """Stop taking notifications, give the queue `grace` seconds, drop the rest (counted)."""
        self.closed = True
        tasks = list(self.running.values())
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        left = sum(len(jobs) for jobs in self.lanes.values())
        for jobs in self.lanes.values():
            for job in jobs:
                metrics.NOTIFICATIONS.labels(job.kind, "dropped").inc()
        if left:
            log.warning("operator stopping: %d notification(s) not sent", left)
        self.lanes.clear()
        self.pending = 0
        metrics.NOTIFICATION_QUEUE.set(0)
        if self.client is not None:
            await self.client.aclose()


def _job(target: NotifyTarget, lane: Lane, notice: Notice, regarding: Body, seq: int, queued: float) -> Job:
    hook = target.webhook or target.slack
    assert hook is not None  # the model requires exactly one
    return Job(lane, "webhook" if target.webhook else "slack", hook, notice, regarding, seq, queued)

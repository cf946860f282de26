"""Notifications (sluice.notify): which events go to which target, the bodies a receiver gets, and
that a receiver never slows or steers a rollout.

Requests go to real HTTP servers on 127.0.0.1 (threads), so a test sees exactly what arrived,
in what order, with which body; a receiver that is "down" is a port nobody listens on. Rollouts
are driven through the real sluice.reconcile against test_reconcile's in-memory store.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import pytest
from typer.testing import CliRunner

from sluice import metrics
from sluice.analysis import cel
from sluice.analysis.addresses import WEBHOOK, Allowlist, usable_url
from sluice.api.crdgen import policy_crd
from sluice.api.models import NotifyTarget, PendingEvent, Phase, ReleaseStatus, RolloutPolicySpec
from sluice.cli.main import app
from sluice.notify import KINDS, Notifier, retry_delay, signature
from sluice.plan import reasons
from sluice.reconcile import Context
from tests.unit.test_analysis_trust import secret
from tests.unit.test_reconcile import T0, Providers, Store, passes, release, request, status

Body = dict[str, Any]
SLACK_PATH = "/services/T0SECRET/B0SECRET/xoxSECRETxox"


def verified(key: bytes, body: bytes, header: str | None) -> bool:
    """What a receiver of signed webhooks does (README): recompute the HMAC-SHA256 of the exact body
    bytes with its own copy of the key, and compare it with Sluice-Signature in constant time."""
    expected = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
    return header is not None and hmac.compare_digest(header, expected)


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST and answers as told: `answers` are the
    status codes of the next requests (then 200), `delay` seconds before each answer. Given a `key`,
    it answers 401 to a request whose Sluice-Signature does not verify, as a careful receiver would."""

    def __init__(self, key: bytes | None = None) -> None:
        self.got: list[tuple[float, str, dict[str, str], Any]] = []  # (monotonic, path, headers, body)
        self.requests: list[tuple[dict[str, str], bytes]] = []  # (headers, the body's exact bytes)
        self.key = key
        self.answers: list[int] = []
        self.headers: dict[str, str] = {}
        self.delay = 0.0
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(size)
                body = json.loads(raw or b"null")
                receiver.requests.append((dict(self.headers), raw))
                receiver.got.append((time.monotonic(), self.path, dict(self.headers), body))
                if receiver.delay:
                    receiver.release.wait(receiver.delay)
                code = receiver.answers.pop(0) if receiver.answers else 200
                if receiver.key is not None and not verified(receiver.key, raw, self.headers["Sluice-Signature"]):
                    code = 401
                payload = b'{"ok": false, "error": "<remote words>"}'
                self.send_response(code)
                for key, value in receiver.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def bodies(self) -> list[Any]:
        return [body for _, _, _, body in self.got]

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.stop()


@pytest.fixture
def other() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.stop()


def down_url() -> str:
    """An address where nothing listens: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/hook"


class Events:
    """The Release's events as the notifier posts them (Kube.event's signature)."""

    def __init__(self) -> None:
        self.posted: dict[str, tuple[str, str, str]] = {}

    async def event(self, regarding: Body, type_: str, reason: str, message: str, name: str | None = None) -> bool:
        assert name
        self.posted.setdefault(name, (type_, reason, message))
        return True

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.posted.values()]


class Secrets:
    def __init__(self, *bodies: Body) -> None:
        self.bodies = {body["metadata"]["name"]: body for body in bodies}

    async def get(self, api_version: str, kind: str, name: str, namespace: str) -> Body | None:
        return self.bodies.get(name)


def a_release(event_seq: int = 0, uid: str = "0123456789abcdef") -> Body:
    return {"apiVersion": "sluice.dev/v1alpha1", "kind": "Release",
            "metadata": {"name": "checkout", "namespace": "shop", "uid": uid},
            "spec": {"version": "1.2.0", "policyRef": {"name": "careful"}},
            "status": {"eventSeq": event_seq}}


def a_policy(*targets: Body) -> RolloutPolicySpec:
    return RolloutPolicySpec.model_validate({"strategy": {"canary": {"steps": [{"setWeight": 50}]}},
                                             "notify": list(targets)})


def webhook(url: str, name: str = "hooks", **extra: Any) -> Body:
    return {"name": name, "webhook": {"url": url}, **extra}


def slack(url: str, name: str = "team", **extra: Any) -> Body:
    return {"name": name, "slack": {"url": url}, **extra}


def from_secret(kind: str, name: str = "team", secret_name: str = "slack-url") -> Body:
    return {"name": name, kind: {"urlSecretRef": {"name": secret_name, "key": "url"}}}


IN_FLIGHT = ReleaseStatus(phase=Phase.PROGRESSING, stable_version="1.1.0", candidate_version="1.2.0",
                          canary_weight=20)


def event(number: int, reason: str = reasons.ROLLOUT_STARTED, message: str = "rolling out 1.2.0",
          type_: Literal["Normal", "Warning"] = "Normal") -> PendingEvent:
    return PendingEvent(id=str(number), type=type_, reason=reason, message=message)


def notifier(secrets: Secrets | None = None, events: Events | None = None, allowed: list[str] | None = None,
             **settings: Any) -> Notifier:
    settings.setdefault("first_delay", 0.02)
    settings.setdefault("timeout", 1.0)
    settings.setdefault("jitter", lambda: 0.0)
    return Notifier(secrets or Secrets(), events or Events(), Allowlist.parse(allowed or [], WEBHOOK), **settings)


async def until(what: str, check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def count(kind: str, result: str) -> float:
    return metrics.NOTIFICATIONS.labels(kind, result)._value.get()  # type: ignore[no-any-return]


# --- Which events, which targets ---------------------------------------------------------------

@pytest.mark.parametrize(("reason", "kind"), [
    ("RolloutStarted", "started"), ("StepCompleted", "step"), ("RolloutPaused", "paused"),
    ("WaitingForPromote", "paused"), ("AnalysisInconclusive", "paused"), ("Promoted", "promoted"),
    ("RolledBack", "rolledBack"), ("StableReapplied", "rolledBack"), ("ProgressDeadlineExceeded", "failed"),
    ("HookSucceeded", "hook"), ("HookFailed", "hook"),
])
def test_event_reasons_map_to_the_kinds_a_target_chooses(reason: str, kind: str) -> None:
    assert KINDS[reason] == kind


@pytest.mark.parametrize("reason", ["Superseded", "RequestApplied", "RequestRefused", "PolicyChanged",
                                    "TrafficWithdrawn", "Adopted"])
def test_bookkeeping_events_are_not_notifications(reason: str) -> None:
    assert reason not in KINDS


async def test_a_target_gets_only_the_kinds_it_asked_for_in_order(receiver: Receiver, other: Receiver) -> None:
    sender = notifier()
    policy = a_policy(webhook(receiver.url, "everything"), webhook(other.url, "outcomes", events=["promoted",
                                                                                                 "rolledBack"]))
    sender.send(a_release(), IN_FLIGHT, policy, [
        event(1), event(2, reasons.STEP_COMPLETED, "step 1/3 (setWeight 20) complete"),
        event(3, reasons.REQUEST_APPLIED, "step 2 promoted by ana"), event(4, reasons.PROMOTED, "1.2.0 promoted")])
    await until("four notifications", lambda: len(receiver.got) == 3 and len(other.got) == 1)
    await sender.close()
    assert [b["event"] for b in receiver.bodies] == ["started", "step", "promoted"]
    assert [b["event"] for b in other.bodies] == ["promoted"]


# --- Bodies ------------------------------------------------------------------------------------

async def test_the_generic_webhook_body_is_documented_json(receiver: Receiver) -> None:
    sender = notifier(wall=lambda: T0)
    sender.send(a_release(), IN_FLIGHT, a_policy(webhook(receiver.url + "/sluice")), [event(7)])
    await until("one notification", lambda: receiver.got)
    await sender.close()
    _, path, headers, body = receiver.got[0]
    assert path == "/sluice" and headers["Content-Type"] == "application/json"
    assert headers["Sluice-Event-Id"] == "checkout.sluice-01234567-7"
    assert body == {"schemaVersion": 1, "id": "checkout.sluice-01234567-7", "event": "started",
                    "release": "checkout", "namespace": "shop", "version": "1.2.0", "stableVersion": "1.1.0",
                    "phase": "Progressing", "reason": "RolloutStarted", "type": "Normal",
                    "message": "rolling out 1.2.0", "weight": 20, "time": "2026-11-28T12:00:00Z"}


async def test_after_a_promotion_the_version_is_the_promoted_one(receiver: Receiver) -> None:
    done = ReleaseStatus.model_validate({
        "phase": "Succeeded", "stableVersion": "1.2.0",
        "history": [{"version": "1.2.0", "outcome": "Succeeded", "startedAt": "2026-11-28T11:00:00Z",
                     "finishedAt": "2026-11-28T12:00:00Z", "reason": "all steps passed"}]})
    sender = notifier()
    sender.send(a_release(), done, a_policy(webhook(receiver.url)), [event(9, reasons.PROMOTED, "1.2.0 promoted")])
    await until("one notification", lambda: receiver.got)
    await sender.close()
    assert receiver.bodies[0]["version"] == "1.2.0" and receiver.bodies[0]["phase"] == "Succeeded"


async def test_slack_gets_text_and_section_blocks_with_cluster_words_escaped(receiver: Receiver) -> None:
    sender = notifier(wall=lambda: T0)
    rolled_back = ReleaseStatus(phase=Phase.ROLLED_BACK, stable_version="1.1.0", candidate_version="1.2.0")
    sender.send(a_release(), rolled_back, a_policy(slack(receiver.url + SLACK_PATH)), [
        event(3, reasons.ROLLED_BACK, "rolled back 1.2.0: error-rate <!channel> & more", "Warning")])
    await until("one notification", lambda: receiver.got)
    await sender.close()
    body = receiver.bodies[0]
    assert body["text"] == ":leftwards_arrow_with_hook: shop/checkout: 1.2.0 rolled back"
    kinds = [block["type"] for block in body["blocks"]]
    assert kinds == ["section", "section", "context"]
    headline = body["blocks"][0]["text"]
    assert headline["type"] == "mrkdwn"
    assert headline["text"] == (":leftwards_arrow_with_hook: *checkout* in `shop`: 1.2.0 rolled back\n"
                                "rolled back 1.2.0: error-rate &lt;!channel&gt; &amp; more")
    assert [f["text"] for f in body["blocks"][1]["fields"]] == [
        "*Version*\n1.2.0", "*Stable*\n1.1.0", "*Phase*\nRolledBack", "*Reason*\nRolledBack"]
    assert "checkout.sluice-01234567-3" in body["blocks"][2]["elements"][0]["text"]


# --- Once per event, never what an earlier process decided -------------------------------------

async def test_each_event_is_sent_once_however_often_a_pass_hands_it_over(receiver: Receiver) -> None:
    sender = notifier()
    policy = a_policy(webhook(receiver.url))
    for _ in range(3):
        sender.send(a_release(), IN_FLIGHT, policy, [event(1), event(2, reasons.STEP_COMPLETED)])
    await until("two notifications", lambda: len(receiver.got) >= 2)
    await asyncio.sleep(0.2)
    await sender.close()
    assert [b["id"] for b in receiver.bodies] == ["checkout.sluice-01234567-1", "checkout.sluice-01234567-2"]


async def test_a_new_process_does_not_repeat_what_an_earlier_one_decided(receiver: Receiver) -> None:
    """The outbox keeps a Release's last events in status; a restarted operator posts them again
    (idempotently), but must not tell Slack about a promotion from last week once more."""
    sender = notifier()
    policy = a_policy(webhook(receiver.url))
    restarted = a_release(event_seq=4)  # status as this process first reads it: events 1-4 decided before
    sender.send(restarted, IN_FLIGHT, policy, [event(3, reasons.STEP_COMPLETED), event(4, reasons.PROMOTED)])
    sender.send(a_release(event_seq=4), IN_FLIGHT, policy, [event(5, reasons.ROLLOUT_STARTED)])
    await until("one notification", lambda: receiver.got)
    await asyncio.sleep(0.2)
    await sender.close()
    assert [b["reason"] for b in receiver.bodies] == ["RolloutStarted"]


# --- Retries, timeouts, the bounded queue -------------------------------------------------------

@pytest.mark.parametrize(("attempt", "jitter", "retry_after", "wanted"), [
    (1, 0.0, None, 0.5), (1, 0.999, None, 0.9995), (2, 0.0, None, 1.0), (4, 0.0, None, 4.0),
    (10, 0.0, None, 30.0), (50, 0.999, None, 59.97), (1, 0.0, 7.0, 7.0), (1, 0.0, 3600.0, 60.0),
])
def test_retries_back_off_exponentially_within_a_ceiling(attempt: int, jitter: float, retry_after: float | None,
                                                         wanted: float) -> None:
    assert retry_delay(attempt, jitter, first=1.0, ceiling=60.0, retry_after=retry_after) == pytest.approx(wanted)


async def test_a_failing_receiver_is_retried_with_backoff_until_it_answers(receiver: Receiver) -> None:
    receiver.answers = [503, 500, 429]
    sender = notifier(first_delay=0.2)
    before = count("webhook", "sent")
    sender.send(a_release(), IN_FLIGHT, a_policy(webhook(receiver.url)), [event(1)])
    await until("the fourth attempt", lambda: len(receiver.got) == 4)
    await sender.close()
    times = [t for t, _, _, _ in receiver.got]
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(times)]
    # jitter 0: half of 0.2, 0.4, 0.8; never sooner, a little later on a busy machine
    assert all(wanted - 0.01 <= gap <= wanted + 0.25 for gap, wanted in zip(gaps, (0.1, 0.2, 0.4), strict=True)), \
        gaps
    assert len({b["id"] for b in receiver.bodies}) == 1, "a retry carries the same id"
    assert count("webhook", "sent") == before + 1


async def test_attempts_are_bounded_and_a_give_up_is_said_once_in_an_event(receiver: Receiver) -> None:
    receiver.answers = [500] * 20
    events = Events()
    sender = notifier(events=events, attempts=3)
    before = count("webhook", "failed")
    policy = a_policy(webhook(receiver.url + "/private/path"))
    sender.send(a_release(), IN_FLIGHT, policy, [event(1), event(2, reasons.STEP_COMPLETED)])
    await until("two notifications given up", lambda: count("webhook", "failed") == before + 2)
    await sender.close()
    assert len(receiver.got) == 6, "3 attempts each"
    assert events.reasons() == ["NotificationFailed"], "once per cause, not per notification"
    (type_, _, message), = events.posted.values()
    assert type_ == "Warning"
    assert message == (f"notify target hooks: started of 1.2.0 could not be delivered to {receiver.url} after 3 "
                       "attempt(s): answered HTTP 500; the rollout is not affected")
    assert "/private/path" not in message and "remote words" not in message


async def test_a_refusing_answer_is_not_retried(receiver: Receiver) -> None:
    receiver.answers = [404]
    sender = notifier()
    sender.send(a_release(), IN_FLIGHT, a_policy(slack(receiver.url)), [event(1)])
    await until("one attempt", lambda: receiver.got)
    await asyncio.sleep(0.3)
    await sender.close()
    assert len(receiver.got) == 1


async def test_a_redirect_is_not_followed(receiver: Receiver, other: Receiver) -> None:
    """A redirect would take the notification (and a Slack URL's secret path) off the allowlist."""
    receiver.answers = [307]
    receiver.headers = {"Location": other.url + "/elsewhere"}
    sender = notifier()
    sender.send(a_release(), IN_FLIGHT, a_policy(webhook(receiver.url)), [event(1)])
    await until("one attempt", lambda: receiver.got)
    await asyncio.sleep(0.3)
    await sender.close()
    assert len(receiver.got) == 1 and other.got == []


async def test_a_slow_receiver_times_out_and_never_holds_up_the_caller(receiver: Receiver) -> None:
    receiver.delay = 5.0
    sender = notifier(timeout=0.3, attempts=2)
    started = time.monotonic()
    sender.send(a_release(), IN_FLIGHT, a_policy(webhook(receiver.url)), [event(n) for n in range(1, 6)])
    handed_over = time.monotonic() - started
    assert handed_over < 0.1, f"send() took {handed_over:.3f}s"
    before = count("webhook", "failed")
    await until("the first notification given up", lambda: count("webhook", "failed") >= before + 1, 3)
    assert time.monotonic() - started < 1.5, "2 attempts of 0.3s and a backoff"
    await sender.close(grace=0.1)


async def test_a_full_queue_drops_the_oldest_with_a_log_line_and_a_metric(
        receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    sender = notifier(capacity=3)
    before = count("webhook", "dropped")
    with caplog.at_level(logging.WARNING, "sluice.notify"):
        sender.send(a_release(), IN_FLIGHT, a_policy(webhook(receiver.url)),
                    [event(n, reasons.STEP_COMPLETED, f"step {n}") for n in range(1, 7)])
    await until("three notifications", lambda: len(receiver.got) == 3)
    await asyncio.sleep(0.2)
    await sender.close()
    assert [b["message"] for b in receiver.bodies] == ["step 4", "step 5", "step 6"]
    assert count("webhook", "dropped") == before + 3
    assert sum("notification queue full (3 waiting): dropped the oldest" in r.message for r in caplog.records) == 3


async def test_a_receiver_that_is_down_delays_no_other_target(receiver: Receiver) -> None:
    sender = notifier(first_delay=4.0, attempts=4)  # the down target's first notification takes >14s
    policy = a_policy(webhook(down_url(), "down"), slack(receiver.url, "up"))
    sender.send(a_release(), IN_FLIGHT, policy, [event(n, reasons.STEP_COMPLETED, f"step {n}") for n in range(1, 4)])
    await until("the up target's three", lambda: len(receiver.got) == 3, 2)
    await sender.close(grace=0.1)


async def test_close_gives_the_queue_a_grace_period_and_counts_what_is_left(receiver: Receiver) -> None:
    sender = notifier()
    before, sent = count("webhook", "dropped"), count("webhook", "sent")
    sender.send(a_release(), IN_FLIGHT, a_policy(webhook(receiver.url)), [event(1)])
    await until("the first delivered", lambda: count("webhook", "sent") == sent + 1)
    receiver.delay = 10.0  # from now on, every answer comes too late
    sender.send(a_release(), IN_FLIGHT, a_policy(webhook(receiver.url)), [event(n) for n in range(2, 6)])
    await until("the second in flight", lambda: len(receiver.got) == 2)
    started = time.monotonic()
    await sender.close(grace=0.2)
    assert time.monotonic() - started < 1.0
    assert count("webhook", "dropped") == before + 4  # three waiting, one cut off in flight
    sender.send(a_release(), IN_FLIGHT, a_policy(webhook(receiver.url)), [event(9)])
    await asyncio.sleep(0.1)
    assert len(receiver.got) == 2, "a closed notifier takes nothing more"


# --- Trust: the allowlist and the Secret's label ------------------------------------------------

async def test_an_address_off_the_allowlist_gets_nothing_and_the_release_says_why_once(
        receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    events = Events()
    sender = notifier(events=events, allowed=["https://hooks.slack.com"])
    before = count("slack", "refused")
    with caplog.at_level(logging.INFO):
        sender.send(a_release(), IN_FLIGHT, a_policy(slack(receiver.url + SLACK_PATH)),
                    [event(n, reasons.STEP_COMPLETED) for n in range(1, 4)])
        await until("three refusals", lambda: count("slack", "refused") == before + 3)
    await sender.close()
    assert receiver.got == []
    assert events.reasons() == ["NotificationRefused"]
    (type_, _, message), = events.posted.values()
    assert type_ == "Warning"
    assert message == (f"notify target team: its url goes to {receiver.url}, which is not on this operator's "
                       f"notification allowlist; an operator administrator can allow it with --webhook-allow="
                       f"{receiver.url} (or SLUICE_WEBHOOK_ALLOW; the Helm value notify.allowedAddresses); nothing "
                       "is sent to it, and the rollout is not affected")
    assert "SECRET" not in caplog.text + message


async def test_with_analysis_restricted_and_no_webhook_list_notifications_go_nowhere(receiver: Receiver) -> None:
    """The operator closes an empty webhook list when --prometheus-allow is set (sluice.handlers),
    as it does for web metrics: whoever restricted analysis meant it for notifications too."""
    events = Events()
    sender = Notifier(Secrets(), events, Allowlist(setting=WEBHOOK, closed=True), first_delay=0.01)
    sender.send(a_release(), IN_FLIGHT, a_policy(webhook(receiver.url + "/x")), [event(1)])
    await until("a refusal", lambda: events.posted)
    await sender.close()
    assert receiver.got == []
    (_, reason, message), = events.posted.values()
    assert reason == "NotificationRefused"
    assert f"goes to {receiver.url}, which is not on this operator's notification allowlist (it is empty while " \
           f"--prometheus-allow restricts analysis); an operator administrator can allow it with --webhook-allow=" \
           f"{receiver.url} " in message


async def test_an_allowed_address_is_sent_to(receiver: Receiver) -> None:
    sender = notifier(allowed=[receiver.url + "/services"])
    sender.send(a_release(), IN_FLIGHT, a_policy(slack(receiver.url + SLACK_PATH)), [event(1)])
    await until("one notification", lambda: receiver.got)
    await sender.close()
    assert receiver.got[0][1] == SLACK_PATH


async def test_a_url_from_a_labelled_secret_is_used_and_never_shown(
        receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    events = Events()
    secrets = Secrets(secret("slack-url", url=receiver.url + SLACK_PATH))
    sender = notifier(secrets, events, allowed=[receiver.url], attempts=1)
    receiver.answers = [500]
    with caplog.at_level(logging.DEBUG):
        sender.send(a_release(), IN_FLIGHT, a_policy(from_secret("slack")), [event(1), event(2, reasons.PROMOTED)])
        await until("two attempts", lambda: len(receiver.got) == 2)
        await asyncio.sleep(0.1)
    await sender.close()
    assert [path for _, path, _, _ in receiver.got] == [SLACK_PATH, SLACK_PATH]
    assert events.reasons() == ["NotificationFailed"]
    shown = caplog.text + json.dumps(list(events.posted.values()))
    assert "SECRET" not in shown and receiver.url in shown


@pytest.mark.parametrize(("stored", "says"), [
    (secret("slack-url", labelled=False, url="http://127.0.0.1:1/x"),
     "notify target team: Secret slack-url in namespace shop is not marked for analysis: Sluice reads a Secret "
     "for a RolloutPolicy only if it has the label sluice.dev/analysis-credential=true (kubectl label secret "
     "slack-url -n shop sluice.dev/analysis-credential=true)"),
    (None, "notify target team: Secret slack-url not found in namespace shop, or not marked for analysis"),
    (secret("slack-url", other="http://127.0.0.1:1/x"),
     "notify target team: Secret slack-url with key url not found in namespace shop"),
    (secret("slack-url", url="hooks.slack.com/services/T0SECRET"),
     "notify target team: the URL in Secret slack-url, key url, is not an http(s) URL with a host"),
    (secret("slack-url", url="https://hooks.slack.com/services/T0SECRET"),
     "notify target team: the URL in Secret slack-url, key url, goes to https://hooks.slack.com, which is not "
     "on this operator's notification allowlist"),
])
async def test_a_secret_that_cannot_be_used_sends_nothing_and_says_why(stored: Body | None, says: str) -> None:
    events = Events()
    sender = notifier(Secrets(*([stored] if stored else [])), events, allowed=["http://127.0.0.1:1"])
    sender.send(a_release(), IN_FLIGHT, a_policy(from_secret("slack")), [event(1), event(2, reasons.PROMOTED)])
    await until("a refusal", lambda: events.posted)
    await asyncio.sleep(0.1)
    await sender.close()
    (type_, reason, message), = events.posted.values()
    assert (type_, reason) == ("Warning", "NotificationRefused")
    assert message.startswith(says), message
    assert "SECRET" not in message


# --- Signed webhooks -----------------------------------------------------------------------------

def signed(url: str, name: str = "hooks", secret_name: str = "hook-key", **extra: Any) -> Body:
    return {"name": name, "webhook": {"url": url, "signingSecretRef": {"name": secret_name, "key": "secret"}}, **extra}


def test_the_signature_is_githubs_scheme() -> None:
    """GitHub's documented example of X-Hub-Signature-256: a receiver built for it verifies Sluice."""
    assert signature(b"It's a Secret to Everybody", b"Hello, World!") == \
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


async def test_a_signed_webhook_carries_the_hmac_of_the_exact_body_it_sends(receiver: Receiver, other: Receiver,
                                                                            caplog: pytest.LogCaptureFixture) -> None:
    """The key is the Secret's value as text, surrounding whitespace removed (as `kubectl create
    secret --from-file` of an echoed key leaves a newline): the receiver keys with "s3cr3t-key"."""
    receiver.key = b"s3cr3t-key"
    events = Events()
    sender = notifier(Secrets(secret("hook-key", secret="s3cr3t-key\n")), events)
    policy = a_policy(signed(receiver.url + "/sluice"), webhook(other.url, "plain"), slack(other.url, "team"))
    with caplog.at_level(logging.DEBUG):
        sender.send(a_release(), IN_FLIGHT, policy, [event(1), event(2, reasons.PROMOTED, "1.2.0 promoted")])
        await until("two signed and four plain", lambda: len(receiver.got) == 2 and len(other.got) == 4)
    await sender.close()
    assert events.posted == {}, "the receiver accepted both"
    for headers, raw in receiver.requests:
        assert verified(b"s3cr3t-key", raw, headers["Sluice-Signature"]), headers
        assert not verified(b"s3cr3t-key\n", raw, headers["Sluice-Signature"])
        assert not verified(b"another key", raw, headers["Sluice-Signature"])
        assert headers["Sluice-Signature"] == headers["Sluice-Signature"].lower()
        assert headers["Sluice-Event-Id"] == json.loads(raw)["id"]
    assert [b["event"] for b in receiver.bodies] == ["started", "promoted"]
    assert all("Sluice-Signature" not in headers for headers, _ in other.requests), "only the target that asked"
    assert "s3cr3t" not in caplog.text


async def test_a_receiver_with_another_key_refuses_the_request_and_the_release_says_so_once(
        receiver: Receiver) -> None:
    receiver.key = b"the receiver's key"
    events = Events()
    sender = notifier(Secrets(secret("hook-key", secret="an old key")), events)
    sender.send(a_release(), IN_FLIGHT, a_policy(signed(receiver.url)), [event(1), event(2, reasons.PROMOTED)])
    await until("a failure said", lambda: events.posted)
    await until("both tried", lambda: len(receiver.got) == 2)
    await asyncio.sleep(0.1)
    await sender.close()
    assert len(receiver.got) == 2, "a 401 is not retried"
    (type_, reason, message), = events.posted.values()
    assert (type_, reason) == ("Warning", "NotificationFailed")
    assert message == (f"notify target hooks: started of 1.2.0 could not be delivered to {receiver.url} (not "
                       "retried): answered HTTP 401; the rollout is not affected")


@pytest.mark.parametrize(("stored", "says"), [
    (secret("hook-key", labelled=False, secret="s3cr3t-key"),
     "notify target hooks: the signing key (Secret hook-key, key secret) cannot be read: Secret hook-key in namespace "
     "shop is not marked for analysis: Sluice reads a Secret for a RolloutPolicy only if it has the label "
     "sluice.dev/analysis-credential=true (kubectl label secret hook-key -n shop "
     "sluice.dev/analysis-credential=true)"),
    (None, "notify target hooks: the signing key (Secret hook-key, key secret) cannot be read: Secret hook-key not "
           "found in namespace shop, or not marked for analysis: Sluice reads a Secret for a RolloutPolicy only if it "
           "has the label sluice.dev/analysis-credential=true (kubectl label secret hook-key -n shop "
           "sluice.dev/analysis-credential=true)"),
    (secret("hook-key", token="s3cr3t-key"),
     "notify target hooks: the signing key (Secret hook-key, key secret) cannot be read: Secret hook-key with key "
     "secret not found in namespace shop"),
    (secret("hook-key", secret=" \n"), "notify target hooks: the signing key (Secret hook-key, key secret) is empty"),
], ids=["unlabelled", "missing", "no such key", "empty"])
async def test_a_signing_key_that_cannot_be_read_sends_nothing_unsigned_and_says_why_once(
        receiver: Receiver, stored: Body | None, says: str, caplog: pytest.LogCaptureFixture) -> None:
    events = Events()
    sender = notifier(Secrets(*([stored] if stored else [])), events)
    before = count("webhook", "refused")
    with caplog.at_level(logging.DEBUG):
        sender.send(a_release(), IN_FLIGHT, a_policy(signed(receiver.url)), [event(1), event(2, reasons.PROMOTED)])
        await until("two refusals", lambda: count("webhook", "refused") == before + 2)
    await sender.close()
    assert receiver.got == []
    (type_, reason, message), = events.posted.values()
    assert (type_, reason) == ("Warning", "NotificationRefused")
    assert message == f"{says}; nothing is sent to it, and the rollout is not affected"
    assert "s3cr3t" not in caplog.text + message


def test_a_slack_target_cannot_be_signed_by_the_model_or_the_crd() -> None:
    unsigned_slack = {"name": "team", "slack": {"url": "https://hooks.slack.com/services/x",
                                                "signingSecretRef": {"name": "hook-key", "key": "secret"}}}
    with pytest.raises(ValueError, match="signingSecretRef is for webhook targets only: Slack does not check a "
                                         "signature"):
        NotifyTarget.model_validate(unsigned_slack)
    spec = policy_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    target = spec["properties"]["notify"]["items"]
    rule, = (r["rule"] for r in target["x-kubernetes-validations"]
             if r["message"] == "signingSecretRef is for webhook targets only: Slack does not check a signature")
    assert cel.rule_holds(rule, unsigned_slack) is False
    assert cel.rule_holds(rule, signed("http://hooks.internal/x")) is True
    assert cel.rule_holds(rule, slack("https://hooks.slack.com/services/x")) is True
    hook = NotifyTarget.model_validate(signed("http://hooks.internal/x")).webhook
    assert hook is not None and hook.signing_secret_ref is not None


def test_the_operator_command_refuses_a_bad_webhook_entry_from_the_flag_or_the_environment() -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["operator", "--webhook-allow", "hooks.slack.com"])
    assert done.exit_code == 2 and "--webhook-allow 'hooks.slack.com' must be http:// or https://" in done.output
    done = runner.invoke(app, ["operator"], env={"SLUICE_WEBHOOK_ALLOW": "https://hooks.slack.com, ftp://nope"})
    assert done.exit_code == 2 and "--webhook-allow 'ftp://nope'" in done.output


def test_the_environment_lists_webhook_entries_and_an_empty_list_is_warned_of(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("SLUICE_WEBHOOK_ALLOW", "https://hooks.slack.com,http://hooks.internal:8080/sluice")
    monkeypatch.setenv("SLUICE_PROMETHEUS_ALLOW", "")
    with caplog.at_level(logging.INFO, logger="sluice"):
        sender = Notifier(Secrets())
    assert str(sender.allowed) == "https://hooks.slack.com, http://hooks.internal:8080/sluice"
    assert "notifications may go to: https://hooks.slack.com, http://hooks.internal:8080/sluice" in caplog.text
    monkeypatch.setenv("SLUICE_WEBHOOK_ALLOW", "")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sluice"):
        Notifier(Secrets())
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and warned[0].startswith("no notification allowlist (--webhook-allow, "
                                                     "SLUICE_WEBHOOK_ALLOW)")


@pytest.mark.parametrize(("text", "usable"), [
    ("https://hooks.slack.com/services/T/B/x", True), ("http://10.0.0.1:8080/hook?token=a", True),
    ("hooks.slack.com/x", False), ("ftp://host/x", False), ("https://host/x#frag", False),
    ("https://host/x y", False), ("https://host/x\n", False), ("http://[::1", False), ("", False),
])
def test_a_url_read_from_a_secret_must_be_one_a_request_can_go_to(text: str, usable: bool) -> None:
    assert usable_url(text) is usable


# --- Through reconcile: a receiver never changes a rollout -------------------------------------

NOTIFYING = {"strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]}}}


def notifying(store: Store, *targets: Body) -> None:
    store.put({"apiVersion": "sluice.dev/v1alpha1", "kind": "RolloutPolicy",
               "metadata": {"name": "manual", "namespace": "shop"},
               "spec": {**NOTIFYING, "notify": list(targets)}})


async def test_a_rollout_is_told_in_order_and_a_receiver_down_changes_nothing(receiver: Receiver) -> None:
    store, clock = Store(), [T0]
    sender = notifier(attempts=3, first_delay=0.05)
    context = Context(kube=store, providers=Providers(), now=lambda: clock[0], notifier=sender)  # type: ignore[arg-type]
    notifying(store, webhook(receiver.url, "up"), slack(down_url(), "down"))
    release(store, "1.0.0")
    await passes(context, clock, 3)
    release(store, "1.1.0")
    started = time.monotonic()
    await passes(context, clock, 4)
    assert status(store)["phase"] == "Paused"
    request(store, "promote")
    await passes(context, clock, 4)
    elapsed = time.monotonic() - started
    assert status(store)["phase"] == "Succeeded" and status(store)["stableVersion"] == "1.1.0"
    assert elapsed < 1.0, f"8 passes took {elapsed:.2f}s with a receiver down"
    # 1.0.0, a first version, is promoted directly; 1.1.0 walks the steps and waits for a person
    # (the pause a person ends says RequestApplied, which is no notification).
    wanted = [("promoted", "1.0.0"), ("started", "1.1.0"), ("step", "1.1.0"), ("paused", "1.1.0"),
              ("step", "1.1.0"), ("promoted", "1.1.0")]
    await until("the whole story", lambda: len(receiver.bodies) >= len(wanted), 2)
    assert [(b["event"], b["version"]) for b in receiver.bodies] == wanted
    paused = receiver.bodies[3]
    assert paused["reason"] == "WaitingForPromote" and paused["phase"] == "Paused"
    assert receiver.bodies[-1]["version"] == "1.1.0" and receiver.bodies[-1]["stableVersion"] == "1.1.0"
    await sender.close(grace=0.1)
    assert "remote words" not in json.dumps(status(store)) + json.dumps(list(store.events.values()))


async def test_a_restarted_operator_tells_only_what_it_decides_itself(receiver: Receiver) -> None:
    store, clock = Store(), [T0]
    first = notifier()
    context = Context(kube=store, providers=Providers(), now=lambda: clock[0], notifier=first)  # type: ignore[arg-type]
    notifying(store, webhook(receiver.url))
    release(store, "1.0.0")
    await passes(context, clock, 3)
    release(store, "1.1.0")
    await passes(context, clock, 4)
    await until("the pause told", lambda: len(receiver.got) == 4)
    await first.close()
    assert status(store)["events"][-1]["reason"] == "WaitingForPromote", "the outbox still holds the last events"
    second = notifier()  # a new process: its passes post the outbox again, idempotently
    restarted = Context(kube=store, providers=Providers(), now=lambda: clock[0], notifier=second)  # type: ignore[arg-type]
    await passes(restarted, clock, 2)
    request(store, "promote")
    await passes(restarted, clock, 4)
    await until("the promotion told", lambda: len(receiver.got) == 6)
    await asyncio.sleep(0.1)
    await second.close()
    assert [(b["event"], b["version"]) for b in receiver.bodies] == [
        ("promoted", "1.0.0"), ("started", "1.1.0"), ("step", "1.1.0"), ("paused", "1.1.0"),
        ("step", "1.1.0"), ("promoted", "1.1.0")]


# --- sluice lint ------------------------------------------------------------------------------

LINTED = """\
apiVersion: sluice.dev/v1alpha1
kind: RolloutPolicy
metadata: {name: careful}
spec:
  strategy: {canary: {steps: [{setWeight: 50}]}}
  notify:
    - name: deploys
      webhook: {url: "http://hooks.internal:8080/sluice"}
    - name: team
      slack: {urlSecretRef: {name: slack-url, key: url}}
      events: [promoted, rolledBack, failed]
    - name: elsewhere
      webhook: {url: "https://evil.example.com/private/T0SECRET"}
---
apiVersion: v1
kind: Secret
metadata: {name: slack-url}
stringData: {url: "https://hooks.slack.com/services/T0SECRET/B0SECRET/x"}
"""


def test_lint_warns_of_targets_the_operator_would_not_use(tmp_path: Any) -> None:
    manifest = tmp_path / "policy.yaml"
    manifest.write_text(LINTED)
    done = CliRunner().invoke(app, ["lint", str(manifest), "--webhook-allow", "http://hooks.internal:8080"])
    assert done.exit_code == 0, done.output
    warnings = [line for line in done.output.splitlines() if ": warning: " in line]
    assert warnings == [
        f"{manifest}:10: warning: RolloutPolicy careful: spec.notify[1].slack.urlSecretRef: notify target team: "
        "Secret slack-url has no label sluice.dev/analysis-credential=true, so the operator will not read it and "
        "sends nothing",
        f"{manifest}:13: warning: RolloutPolicy careful: spec.notify[2].webhook.url: notify target elsewhere: "
        "https://evil.example.com is not on the --webhook-allow list given (http://hooks.internal:8080), so the "
        "operator would send nothing to it",
    ]
    assert "SECRET" not in done.output
    labelled = LINTED.replace("metadata: {name: slack-url}",
                              "metadata: {name: slack-url, labels: {sluice.dev/analysis-credential: 'true'}}")
    manifest.write_text(labelled)
    done = CliRunner().invoke(app, ["lint", str(manifest)], env={"SLUICE_WEBHOOK_ALLOW": "https://hooks.slack.com"})
    warnings = [line.split(": warning: ")[1] for line in done.output.splitlines() if ": warning: " in line]
    assert warnings == [
        "RolloutPolicy careful: spec.notify[0].webhook.url: notify target deploys: http://hooks.internal:8080 is "
        "not on the --webhook-allow list given (https://hooks.slack.com), so the operator would send nothing to it",
        "RolloutPolicy careful: spec.notify[2].webhook.url: notify target elsewhere: https://evil.example.com is "
        "not on the --webhook-allow list given (https://hooks.slack.com), so the operator would send nothing to it",
    ]
    done = CliRunner().invoke(app, ["lint", str(manifest)], env={"SLUICE_WEBHOOK_ALLOW": ""})
    assert ": warning: " not in done.output, "no allowlist given: addresses are not judged"


def test_lint_knows_the_notify_fields(tmp_path: Any) -> None:
    manifest = tmp_path / "policy.yaml"
    manifest.write_text("""\
apiVersion: sluice.dev/v1alpha1
kind: RolloutPolicy
metadata: {name: careful}
spec:
  strategy: {canary: {steps: [{setWeight: 50}]}}
  notify:
    - name: both
      webhook: {url: "http://a.example.com/x", urlSecretRef: {name: s, key: url}}
    - name: both
      webhook: {url: "http://a.example.com/x"}
      slack: {url: "http://b.example.com/x"}
    - name: Bad_Name
      webhook: {url: "a.example.com/x"}
      events: [deployed]
""")
    done = CliRunner().invoke(app, ["lint", str(manifest)], env={"SLUICE_WEBHOOK_ALLOW": ""})
    assert done.exit_code == 1
    errors = [line.split(": error: ")[1] for line in done.output.splitlines() if ": error: " in line]
    prefix = "RolloutPolicy careful: spec.notify"
    for wanted in [f"{prefix}[0].webhook: a target needs exactly one of url or urlSecretRef",
                   f"{prefix}[1]: a notify target needs exactly one of webhook or slack",
                   f"{prefix}[2].name: 'Bad_Name' must be a DNS label",
                   f"{prefix}[2].webhook.url: 'a.example.com/x' must be an http(s) URL",
                   f"{prefix}[2].events[0]: Input should be 'started', 'step', 'paused', 'promoted', 'rolledBack', "
                   "'failed' or 'hook'"]:
        assert any(error.startswith(wanted) for error in errors), (wanted, errors)
    assert any("notify target names must be unique" in error for error in errors), errors


def test_lint_refuses_an_unquoted_on_that_kubectl_would_read_as_true(tmp_path: Any) -> None:
    manifest = tmp_path / "policy.yaml"  # `on:` as a GitHub Actions user would write it for `events`
    manifest.write_text(LINTED.replace("events: [promoted", "on: [promoted"))
    done = CliRunner().invoke(app, ["lint", str(manifest)], env={"SLUICE_WEBHOOK_ALLOW": ""})
    assert done.exit_code == 1
    assert f"{manifest}:11: error: RolloutPolicy careful: spec.notify[1].on: kubectl reads the unquoted key on as " \
        'true (YAML 1.1), so the API server never sees it: write "on":' in done.output.splitlines()


SIGNED = """\
apiVersion: sluice.dev/v1alpha1
kind: RolloutPolicy
metadata: {name: careful}
spec:
  strategy: {canary: {steps: [{setWeight: 50}]}}
  notify:
    - name: deploys
      webhook:
        url: "http://hooks.internal:8080/sluice"
        signingSecretRef: {name: hook-key, key: secret}
---
apiVersion: v1
kind: Secret
metadata: {name: hook-key}
stringData: {secret: "s3cr3t-key"}
"""


def test_lint_warns_of_a_signing_key_the_operator_would_not_read(tmp_path: Any) -> None:
    manifest = tmp_path / "policy.yaml"
    manifest.write_text(SIGNED)
    done = CliRunner().invoke(app, ["lint", str(manifest)], env={"SLUICE_WEBHOOK_ALLOW": ""})
    assert done.exit_code == 0, done.output
    assert [line for line in done.output.splitlines() if ": warning: " in line] == [
        f"{manifest}:10: warning: RolloutPolicy careful: spec.notify[0].webhook.signingSecretRef: notify target "
        "deploys: Secret hook-key, its signing key, has no label sluice.dev/analysis-credential=true, so the operator "
        "will not read it and sends nothing"]
    labelled = SIGNED.replace("metadata: {name: hook-key}",
                              "metadata: {name: hook-key, labels: {sluice.dev/analysis-credential: 'true'}}")
    manifest.write_text(labelled.replace("{secret: ", "{token: "))
    done = CliRunner().invoke(app, ["lint", str(manifest)], env={"SLUICE_WEBHOOK_ALLOW": ""})
    assert [line.split(": warning: ")[1] for line in done.output.splitlines() if ": warning: " in line] == [
        "RolloutPolicy careful: spec.notify[0].webhook.signingSecretRef: notify target deploys: Secret hook-key has "
        "no signing key under key secret, so nothing is sent"]
    manifest.write_text(labelled)
    done = CliRunner().invoke(app, ["lint", str(manifest)], env={"SLUICE_WEBHOOK_ALLOW": ""})
    assert done.exit_code == 0 and ": warning: " not in done.output, done.output
    assert "s3cr3t" not in done.output


def test_lint_refuses_a_signed_slack_target_once(tmp_path: Any) -> None:
    manifest = tmp_path / "policy.yaml"
    manifest.write_text(SIGNED.replace("webhook:", "slack:"))
    done = CliRunner().invoke(app, ["lint", str(manifest)], env={"SLUICE_WEBHOOK_ALLOW": ""})
    assert done.exit_code == 1
    assert [line for line in done.output.splitlines() if ": error: " in line] == [
        f"{manifest}:7: error: RolloutPolicy careful: spec.notify[0]: signingSecretRef is for webhook targets only: "
        "Slack does not check a signature"]

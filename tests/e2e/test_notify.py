"""Notifications on the real cluster: given a policy whose notify targets are HTTP receivers on this
machine (a JSON webhook that checks Sluice's signature with a key from a labelled Secret, a
Slack-compatible one, and one that is down), when a version is promoted and the next one rolled
back, then the receivers hear the story in order with the right fields, every webhook request
signed, and the receiver that is down changes nothing but a Warning on the Release."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Kubectl, Operator, wait_for
from tests.e2e.manifests import policy, release
from tests.e2e.test_canary import deploy_first, phase
from tests.e2e.test_tls import secret
from tests.unit.test_notify import Receiver, down_url, verified

pytestmark = pytest.mark.e2e

SLACK_PATH = "/services/T0E2E/B0E2E/SECRETPATH"
STEPS: list[dict[str, Any]] = [{"setWeight": 50}, {"analysis": {}}, {"setWeight": 100}]
SIGNING_KEY = b"e2e-signing-key-SECRETKEY"


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    hooks, chat = Receiver(), Receiver()
    yield hooks, chat
    hooks.stop()
    chat.stop()


def strict() -> dict[str, Any]:
    """The e2e error-rate metric, failing at its second bad measurement of three."""
    metric = policy("x", [], "")["spec"]["analysis"]["metrics"][0]
    return {"metrics": [{**metric, "failureLimit": 1}], "count": 3}


def story(receiver: Receiver, kinds: tuple[str, ...] = ("started", "promoted", "rolledBack")) -> list[tuple[str, str]]:
    return [(b["event"], b["version"]) for b in receiver.bodies if b["event"] in kinds]


def said(receiver: Receiver, event: str, version: str) -> dict[str, Any]:
    return next(b for b in receiver.bodies if b["event"] == event and b["version"] == version)


def warnings(kubectl: Kubectl, name: str, reason: str) -> list[str]:
    return [e["message"] for e in kubectl.events(name) if e["reason"] == reason and e["type"] == "Warning"]


def test_receivers_hear_a_promotion_then_a_rollback_and_one_that_is_down_changes_nothing(
        kubectl: Kubectl, operator: Operator, prometheus_url: str, receivers: tuple[Receiver, Receiver]) -> None:
    hooks, chat = receivers
    hooks.key = SIGNING_KEY  # it answers 401 to a request without a good Sluice-Signature
    dead = down_url()
    targets = [
        {"name": "deploy-log", "webhook": {"url": hooks.url + "/sluice",
                                           "signingSecretRef": {"name": "deploy-log-signing", "key": "key"}}},
        {"name": "team-slack", "slack": {"url": chat.url + SLACK_PATH},
         "events": ["started", "paused", "promoted", "rolledBack", "failed"]},
        {"name": "pager", "webhook": {"url": dead}},
    ]
    kubectl.apply([secret("deploy-log-signing", "key", SIGNING_KEY.decode()),
                   policy("fast", STEPS, prometheus_url, analysis=strict(), notify=targets)])
    namespace = kubectl.namespace
    started = time.monotonic()
    deploy_first(kubectl, "cart")
    kubectl.apply(release("cart", "1.1.0"))
    wait_for("1.1.0 to be promoted", lambda: (s := phase(kubectl, "cart", "Succeeded")()) and
             s["stableVersion"] == "1.1.0", 150)
    promoted_at = time.monotonic()
    kubectl.apply(release("cart", "1.2.0", error_rate=0.4))
    wait_for("1.2.0 to be rolled back", phase(kubectl, "cart", "RolledBack"), 150)
    rolled_back_at = time.monotonic()
    wanted = [("promoted", "1.0.0"), ("started", "1.1.0"), ("promoted", "1.1.0"), ("started", "1.2.0"),
              ("rolledBack", "1.2.0")]
    where = f"{namespace}/cart"
    headlines = [f":white_check_mark: {where}: 1.0.0 promoted", f":rocket: {where}: rollout of 1.1.0 started",
                 f":white_check_mark: {where}: 1.1.0 promoted", f":rocket: {where}: rollout of 1.2.0 started",
                 f":leftwards_arrow_with_hook: {where}: 1.2.0 rolled back"]
    wait_for("both receivers to hear the rollback", lambda: story(hooks) == wanted and
             [b["text"] for b in chat.bodies] == headlines, 30)

    # The webhook hears every event, in the order it happened, each once.
    events = [b["event"] for b in hooks.bodies]
    assert events.count("step") == 3 + 1, events  # three steps of 1.1.0, the first one of 1.2.0
    ids = [b["id"] for b in hooks.bodies]
    assert len(set(ids)) == len(ids)
    assert [int(i.rsplit("-", 1)[1]) for i in ids] == sorted(int(i.rsplit("-", 1)[1]) for i in ids)
    assert all(path == "/sluice" for _, path, _, _ in hooks.got)
    back = said(hooks, "rolledBack", "1.2.0")
    assert {k: back[k] for k in ("schemaVersion", "release", "namespace", "version", "stableVersion", "phase",
                                 "reason", "type")} == {
        "schemaVersion": 1, "release": "cart", "namespace": namespace, "version": "1.2.0", "stableVersion": "1.1.0",
        "phase": "RolledBack", "reason": "RolledBack", "type": "Warning"}
    assert back["message"].startswith("rolled back 1.2.0: ") and "all traffic is on 1.1.0" in back["message"]
    promoted = said(hooks, "promoted", "1.1.0")
    assert (promoted["phase"], promoted["stableVersion"], promoted["message"]) == \
        ("Succeeded", "1.1.0", "1.1.0 promoted to stable")
    begun = said(hooks, "started", "1.2.0")
    assert (begun["phase"], begun["stableVersion"], begun["reason"]) == ("Progressing", "1.1.0", "RolloutStarted")
    # The id is the Release's Event a user reads with kubectl, and the header carries it too.
    event = kubectl.get("event", back["id"])
    assert event is not None and event["reason"] == "RolledBack" and event["involvedObject"]["name"] == "cart"
    assert all(headers["Sluice-Event-Id"] == body["id"] for _, _, headers, body in hooks.got)
    # Every request is signed: the HMAC-SHA256 of the exact bytes received, with the Secret's key.
    assert len(hooks.requests) >= len(wanted)
    assert all(verified(SIGNING_KEY, raw, headers.get("Sluice-Signature")) for headers, raw in hooks.requests)
    assert not any(verified(b"another key", raw, headers.get("Sluice-Signature")) for headers, raw in hooks.requests)
    assert all("Sluice-Signature" not in headers for headers, _ in chat.requests), "Slack is never signed"

    # Slack hears only what it asked for, as text and section blocks.
    assert {b["blocks"][0]["type"] for b in chat.bodies} == {"section"}
    assert all(path == SLACK_PATH for _, path, _, _ in chat.got)
    slack_back = chat.bodies[-1]
    assert slack_back["text"] == f":leftwards_arrow_with_hook: {namespace}/cart: 1.2.0 rolled back"
    assert slack_back["blocks"][0]["text"]["text"].startswith(
        f":leftwards_arrow_with_hook: *cart* in `{namespace}`: 1.2.0 rolled back\nrolled back 1.2.0: ")
    assert [f["text"] for f in slack_back["blocks"][1]["fields"]] == [
        "*Version*\n1.2.0", "*Stable*\n1.1.0", "*Phase*\nRolledBack", "*Reason*\nRolledBack"]

    # The receiver that is down: the rollouts went on; the Release says so, once, and nothing more.
    status = kubectl.status("cart")
    assert [(h["version"], h["outcome"]) for h in status["history"]] == [
        ("1.0.0", "Succeeded"), ("1.1.0", "Succeeded"), ("1.2.0", "RolledBack")]
    failed = wait_for("the Warning about the target that is down",
                      lambda: warnings(kubectl, "cart", "NotificationFailed"), 60)
    port = dead.rsplit(":", 1)[1].split("/")[0]
    assert failed == [f"notify target pager: promoted of 1.0.0 could not be delivered to http://127.0.0.1:{port} "
                      "after 5 attempt(s): the connection failed (ConnectError); the rollout is not affected"]
    # An inline url is in the policy, and so in the copy of it a rollout keeps (status.policy); nowhere else.
    unpolicied = {key: value for key, value in status.items() if key != "policy"}
    assert "SECRETPATH" not in json.dumps(kubectl.events("cart")) + json.dumps(unpolicied)
    assert "SECRETKEY" not in json.dumps(kubectl.events("cart")) + json.dumps(status), "the key is never shown"
    assert "remote words" not in json.dumps(kubectl.events("cart")) + json.dumps(status)
    print(f"\nfirst version + promotion: {promoted_at - started:.1f}s, rollback: {rolled_back_at - promoted_at:.1f}s; "
          f"webhook got {len(hooks.got)} notifications, Slack {len(chat.got)}")


def test_an_operator_with_a_webhook_allowlist_sends_nothing_elsewhere_and_the_release_says_why(
        kubectl: Kubectl, operator: Operator, prometheus_url: str, receivers: tuple[Receiver, Receiver]) -> None:
    """Given an operator that allows notifications to one receiver, a target off the list and a
    target whose URL is in a Secret without the label get nothing, and the Release says why, once
    each; the rollout is unaffected. Labelled, the Secret's URL is used."""
    allowed, elsewhere = receivers
    operator.stop()
    scoped = Operator({**kubectl.env, "SLUICE_WEBHOOK_ALLOW": allowed.url})
    mark = scoped.log.stat().st_size if scoped.log.exists() else 0
    scoped.start()
    try:
        assert "notifications may go to: " + allowed.url in scoped.log.read_text()[mark:]
        targets = [{"name": "ok", "webhook": {"url": allowed.url + "/ok"}},
                   {"name": "off-list", "webhook": {"url": elsewhere.url + "/private/SECRETPATH"}},
                   {"name": "from-secret", "slack": {"urlSecretRef": {"name": "hook-url", "key": "url"}}}]
        kubectl.apply([secret("hook-url", "url", allowed.url + "/from-secret/SECRETPATH", labelled=False),
                       policy("fast", [{"setWeight": 50}, {"setWeight": 100}], prometheus_url, notify=targets)])
        deploy_first(kubectl, "ledger")
        wait_for("the allowed target's notification", lambda: allowed.got, 30)
        refused = wait_for("two refusals", lambda: len(w := warnings(kubectl, "ledger", "NotificationRefused")) == 2
                           and w, 30)
        namespace = kubectl.namespace
        assert sorted(refused) == sorted([
            # the watch cache holds labelled Secrets only: to the operator an unlabelled one is not there
            f"notify target from-secret: Secret hook-url not found in namespace {namespace}, or not marked for "
            "analysis: Sluice reads a Secret for a RolloutPolicy only if it has the label "
            "sluice.dev/analysis-credential=true "
            f"(kubectl label secret hook-url -n {namespace} sluice.dev/analysis-credential=true); nothing is sent "
            "to it, and the rollout is not affected",
            f"notify target off-list: its url goes to {elsewhere.url}, which is not on this operator's notification "
            f"allowlist; an operator administrator can allow it with --webhook-allow={elsewhere.url} (or "
            "SLUICE_WEBHOOK_ALLOW; the Helm value notify.allowedAddresses); nothing is sent to it, and the rollout "
            "is not affected",
        ])
        assert elsewhere.got == []
        assert [(path, b["event"], b["version"]) for _, path, _, b in allowed.got] == [("/ok", "promoted", "1.0.0")]

        kubectl.run("label", "secret", "hook-url", "sluice.dev/analysis-credential=true")
        kubectl.apply(release("ledger", "1.1.0"))
        wait_for("1.1.0 promoted", lambda: (s := phase(kubectl, "ledger", "Succeeded")()) and
                 s["stableVersion"] == "1.1.0", 90)
        wait_for("the labelled Secret's URL used", lambda: any(
            path == "/from-secret/SECRETPATH" and b["text"].endswith("1.1.0 promoted")
            for _, path, _, b in allowed.got), 30)
        assert elsewhere.got == []
        assert len(warnings(kubectl, "ledger", "NotificationRefused")) == 2, "once per cause, not per event"
    finally:
        scoped.stop()
        operator.start()

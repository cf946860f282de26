"""Bad input, applied as a user would: every generated invalid or hostile manifest set
(tests/e2e/hostile.py) is refused by the API server naming the field, or its Release shows
Stalled=True with a plain message within one pass, or (valid but odd input) it ships. Through all
of it the operator logs no traceback and no candidate that Sluice cannot judge carries traffic.

The cases run together: the fresh ones share one namespace (their objects are named hNNN...), the
mid-rollout ones another; one poll reads both namespaces and moves every case along. One
parametrized test per case then reports what that case saw.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.e2e import hostile
from tests.e2e.conftest import Kubectl, Operator
from tests.e2e.hostile import CONTINUES, REFUSED, SHIPS, STALLED, Case
from tests.e2e.manifests import IMAGE

pytestmark = pytest.mark.e2e

# A fresh case must be Stalled by the first status the operator writes ("in one pass"); the time
# allowed is for the burst: every case is applied at once, so the operator has ~100 first passes queued.
STALL_WITHIN = 45.0
MIDWAY_STALL_WITHIN = 30.0  # from the break (or from applying 1.1.0 when the input was bad from the start)
SHIP_WITHIN = 60.0  # a plain rolling update of one kwok pod
CONTINUE_FOR = 10.0  # a rollout that must go on: watched this long after the break
GRACE = 3.0  # from Stalled=True to the candidate's traffic gone (status is written before the act)
MIDWAY_SETUP = 90.0  # stable 1.0.0 Succeeded, then 1.1.0 at its analysis step
PLAIN_LENGTH = 1024
UNPLAIN = re.compile(r"Traceback|File \"|object at 0x|<class |\\x[0-9a-f]{2}")
CASES = hostile.cases("http://127.0.0.1:9090")  # ids only; the suite builds them with the real address
NAME = "app.kubernetes.io/name"
TRACK = "sluice.dev/track"


@dataclasses.dataclass
class Seen:
    """What one case saw, and why it did or did not meet its expectation."""

    case: Case
    outcome: str = ""  # refused / stalled / ships / continues, or what happened instead
    detail: str = ""
    problems: list[str] = dataclasses.field(default_factory=list)
    applied: float = 0.0  # when its manifests were applied
    started: float = 0.0  # when the clock for its outcome started (apply, or break mid-rollout)
    upgraded: bool = False  # mid-rollout: 1.1.0 applied over the stable 1.0.0
    decided_at: float | None = None
    stalled_at: float | None = None
    broken: bool = False  # mid-rollout: the input was broken (or was bad from the start and 1.1.0 applied)
    traffic: list[str] = dataclasses.field(default_factory=list)
    last: str = ""  # the last status seen, for the report
    first_status: str = ""  # the first status the operator wrote (fresh cases)
    first_status_at: float | None = None
    flapped: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome in self.case.expect and not self.problems and not self.traffic

    def decide(self, outcome: str, detail: str = "") -> None:
        if self.decided_at is None:
            self.outcome, self.detail, self.decided_at = outcome, detail, time.monotonic()

    def report(self) -> str:
        took = f" after {self.decided_at - self.started:.1f}s" if self.decided_at and self.started else ""
        lines = [f"{self.case.name} [{self.case.cls}] {self.case.title}: expected {'|'.join(self.case.expect)}, "
                 f"saw {self.outcome or 'nothing'}{took}"]
        if self.detail:
            lines.append(f"    {self.detail[:400]}")
        lines += [f"    problem: {p[:400]}" for p in self.problems]
        lines += [f"    traffic: {t}" for t in self.traffic[:3]]
        if not self.ok and self.last:
            lines.append(f"    last status: {self.last[:400]}")
        return "\n".join(lines)


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), None)


def _summary(status: dict[str, Any]) -> str:
    conditions = ", ".join(f"{c.get('type')}={c.get('status')}({c.get('reason')})"
                           for c in status.get("conditions") or [])
    return (f"phase={status.get('phase')} step={status.get('currentStep')} weight={status.get('canaryWeight')} "
            f"stable={status.get('stableVersion')} candidate={status.get('candidateVersion')} [{conditions}] "
            f"message={status.get('message')!r}") if status else "no status"


def _plain(message: str, hint: str) -> list[str]:
    problems = []
    if not message.strip():
        problems.append("the Stalled condition has no message")
    if len(message) > PLAIN_LENGTH:
        problems.append(f"the Stalled message is {len(message)} characters long: {message[:200]}...")
    if UNPLAIN.search(message):
        problems.append(f"the Stalled message is not plain: {message[:300]}")
    if hint and hint.lower() not in message.lower():
        problems.append(f"the Stalled message does not name {hint!r}: {message[:300]}")
    return problems


class Suite:
    def __init__(self, env: dict[str, str], prometheus: str) -> None:
        self.env = env
        suffix = uuid.uuid4().hex[:5]
        self.fresh = Kubectl(env, f"e2e-bad-input-{suffix}")
        self.midway = Kubectl(env, f"e2e-bad-midway-{suffix}")
        self.cases = hostile.cases(prometheus)
        assert [c.name for c in self.cases] == [c.name for c in CASES]
        self.seen = {case.name: Seen(case) for case in self.cases}
        self.log_tracebacks: list[str] = []
        self.rounds: list[float] = []
        self.applied_alone = 0

    def namespace(self, case: Case) -> Kubectl:
        return self.midway if case.midway else self.fresh

    # --- applying --------------------------------------------------------------------------

    def _apply(self, case: Case, manifests: list[dict[str, Any]]) -> None:
        seen = self.seen[case.name]
        seen.applied = seen.started = time.monotonic()
        done = self.namespace(case).apply(manifests, check=False)
        if done.returncode != 0:
            message = done.stderr.strip()
            seen.decide(REFUSED, message)
            if case.hint and case.hint.lower() not in message.lower():
                seen.problems.append(f"the refusal does not name {case.hint!r}")
            if seen.case.midway:
                seen.problems.append("a mid-rollout case's manifests were refused")
        elif REFUSED in case.expect and len(case.expect) == 1:
            seen.detail = "accepted by the API server"

    def _stable_first(self, case: Case) -> list[dict[str, Any]]:
        docs = copy.deepcopy(case.manifests)
        for doc in docs:
            if doc["kind"] == "Release":
                doc["spec"]["version"] = case.stable
                doc["spec"]["template"]["spec"]["containers"][0]["image"] = IMAGE.format(
                    name=doc["metadata"]["name"], version=case.stable)
        return docs

    def _apply_batch(self, batch: list[Case]) -> list[Case]:
        """Apply many cases in one kubectl (one process, not one per case) and attribute what it
        says to each case by object name; returns the cases it could not attribute (applied alone)."""
        docs = [(case, doc) for case in batch for doc in (self._stable_first(case) if case.midway else case.manifests)]
        now = time.monotonic()
        for case in batch:
            self.seen[case.name].applied = self.seen[case.name].started = now
        done = self.namespace(batch[0]).apply([doc for _, doc in docs], check=False)
        created = set(re.findall(r"^[\w.]+/([\w.-]+) (?:created|configured|unchanged)$", done.stdout, re.M))
        errors = done.stderr.strip().splitlines()
        unsure = []
        for case in batch:
            names = [doc["metadata"]["name"] for c, doc in docs if c is case]
            refusals = [e for e in errors if any(f'"{n}"' in e for n in names)]
            if refusals:
                self.seen[case.name].decide(REFUSED, " ".join(refusals))
                if case.hint and case.hint.lower() not in " ".join(refusals).lower():
                    self.seen[case.name].problems.append(f"the refusal does not name {case.hint!r}")
                if case.midway:
                    self.seen[case.name].problems.append("a mid-rollout case's manifests were refused")
            elif not all(n in created for n in names):
                unsure.append(case)
        return unsure

    def apply_all(self) -> None:
        for namespace in (self.fresh, self.midway):
            Kubectl(self.env).run("create", "namespace", namespace.namespace or "")
        batches = [self.cases[i:i + 20] for i in range(0, len(self.cases), 20)]
        batches = [[c for c in b if c.midway == midway] for b in batches for midway in (False, True)]
        with ThreadPoolExecutor(4) as pool:
            unsure = [c for found in pool.map(self._apply_batch, [b for b in batches if b]) for c in found]
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda c: self._apply(c, self._stable_first(c) if c.midway else c.manifests), unsure))
        self.applied_alone = len(unsure)
        for case in self.cases:
            if case.midway:  # its clock starts when the input breaks
                self.seen[case.name].started = 0.0

    def _break(self, case: Case, status: dict[str, Any]) -> None:
        """Mid-rollout: 1.1.0 runs its canary (or was bad from the start): break the input now."""
        seen = self.seen[case.name]
        kubectl = self.midway
        for doc in case.then:
            done = kubectl.apply(doc, check=False)
            if done.returncode != 0:
                seen.problems.append(f"breaking the input was refused: {done.stderr.strip()[:300]}")
        for kind, name in case.delete:
            kubectl.run("delete", kind, name, "--wait=false", check=False)
        seen.broken, seen.started = True, time.monotonic()
        seen.last = _summary(status)

    # --- observing -------------------------------------------------------------------------

    def _read(self, kubectl: Kubectl) -> dict[str, list[dict[str, Any]]]:
        done = kubectl.run("get", "releases.sluice.dev,endpointslices,pods,httproutes", "-o", "json", check=False)
        items = json.loads(done.stdout)["items"] if done.returncode == 0 else []
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for item in items:
            by_kind.setdefault(item["kind"], []).append(item)
        return by_kind

    def _traffic(self, objects: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
        """By Release name: where its candidate (or another Release's pods) get traffic now."""
        releases = {r["metadata"]["name"] for r in objects.get("Release", [])}
        pods = {p["metadata"]["name"]: p["metadata"].get("labels") or {} for p in objects.get("Pod", [])}
        found: dict[str, list[str]] = {}
        for piece in objects.get("EndpointSlice", []):
            service = (piece["metadata"].get("labels") or {}).get("kubernetes.io/service-name", "")
            if service not in releases:
                continue
            for endpoint in piece.get("endpoints") or []:
                if not (endpoint.get("conditions") or {}).get("ready"):
                    continue
                pod = (endpoint.get("targetRef") or {}).get("name", "")
                labels = pods.get(pod, {})
                if labels.get(NAME) == service and labels.get(TRACK) == "canary":
                    found.setdefault(service, []).append(f"Service {service} selects the candidate's pod {pod}")
                elif labels.get(NAME) not in (None, service):
                    found.setdefault(service, []).append(
                        f"Service {service} selects pod {pod} of Release {labels.get(NAME)}")
        for route in objects.get("HTTPRoute", []):
            for rule in route.get("spec", {}).get("rules") or []:
                for ref in rule.get("backendRefs") or []:
                    name = ref.get("name", "")
                    if name.endswith("-canary") and name[:-len("-canary")] in releases and ref.get("weight", 1) > 0:
                        found.setdefault(name[:-len("-canary")], []).append(
                            f"HTTPRoute {route['metadata']['name']} gives {ref.get('weight', 1)} to {name}")
        return found

    def _judge(self, case: Case, statuses: dict[str, dict[str, Any]], now: float) -> None:
        seen = self.seen[case.name]
        if seen.decided_at is not None and seen.outcome == REFUSED:
            return
        mine = {name: statuses.get(name) for name in case.judged}
        seen.last = "; ".join(f"{n}: {_summary(s or {})}" for n, s in mine.items())
        conditions = {n: _condition(s or {}, "Stalled") for n, s in mine.items()}
        stalled = {n: c for n, c in conditions.items() if c and c.get("status") == "True"}
        if not case.midway and not seen.first_status and any(mine.values()):
            seen.first_status, seen.first_status_at = seen.last, now
        if case.midway and not seen.broken:
            status = mine[case.name] or {}
            running = status.get("candidateVersion") == case.version and (status.get("currentStep") or 0) >= 1 \
                and status.get("phase") == "Progressing"
            bad_from_start = not case.then and not case.delete
            if stalled and not bad_from_start:
                seen.decide("stalled before the input was broken", _summary(status))
            elif not seen.upgraded and status.get("stableVersion") == case.stable \
                    and status.get("phase") == "Succeeded":
                self.midway.apply([d for d in case.manifests if d["kind"] == "Release"])
                seen.upgraded = True
                if bad_from_start:
                    seen.broken, seen.started = True, time.monotonic()
            elif running and seen.upgraded:
                self._break(case, status)
            elif now - seen.applied > MIDWAY_SETUP:
                seen.decide("the rollout never reached its analysis step", _summary(status))
            return
        if seen.decided_at is not None:
            if seen.outcome == STALLED and not stalled and not seen.flapped:
                seen.flapped = True
                seen.problems.append(f"Stalled=True did not hold; later: {seen.last}")
            return
        elapsed = now - seen.started
        within = MIDWAY_STALL_WITHIN if case.midway else STALL_WITHIN
        if stalled:
            messages = [c.get("message", "") for c in stalled.values()]
            named = [m for m in messages if case.hint.lower() in m.lower()] or messages
            others = [n for n in case.judged if n not in stalled]
            if elapsed < within and any((mine[n] or {}).get("phase") != "Succeeded" for n in others):
                return  # the other Releases of the case are still on their way
            seen.decide(STALLED, " | ".join(f"{n}: {c.get('reason')}: {c.get('message')}"
                                            for n, c in stalled.items()))
            seen.stalled_at = now
            seen.problems += _plain(named[0], case.hint)
            if elapsed > within:
                seen.problems.append(f"Stalled only after {elapsed:.0f}s")
            # Of Releases that collide, the first may start before the second exists: only one Stalls at once.
            if not case.midway and len(case.judged) == 1 and "Stalled=True" not in seen.first_status:
                seen.problems.append(f"not Stalled in its first status (a pass did something else first): "
                                     f"{seen.first_status}")
            return
        status = mine[case.judged[0]] or {}
        if CONTINUES in case.expect:
            if elapsed >= CONTINUE_FOR:
                if status.get("phase") in ("Progressing", "Succeeded"):
                    seen.decide(CONTINUES, _summary(status))
                else:
                    seen.decide(f"did not continue ({status.get('phase')})", _summary(status))
            return
        if all((s or {}).get("phase") == "Succeeded" and (s or {}).get("stableVersion") == case.version
               for s in mine.values()):
            seen.decide(SHIPS, _summary(status))
            return
        limit = SHIP_WITHIN if SHIPS in case.expect else within
        if elapsed > limit:
            seen.decide(f"nothing within {limit:.0f}s", seen.last)

    def poll(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = time.monotonic()
            self.rounds.append(now)
            for kubectl, midway in ((self.fresh, False), (self.midway, True)):
                objects = self._read(kubectl)
                statuses = {r["metadata"]["name"]: r.get("status") or {} for r in objects.get("Release", [])}
                traffic = self._traffic(objects)
                for case in self.cases:
                    if case.midway != midway:
                        continue
                    self._judge(case, statuses, now)
                    self._check_traffic(case, traffic, now)
            undecided = [s for s in self.seen.values() if s.decided_at is None]
            settling = [s for s in self.seen.values() if s.stalled_at and now - s.stalled_at < GRACE + 3]
            if not undecided and not settling:
                return
            if time.monotonic() > deadline - 1:
                for seen in undecided:
                    seen.decide("nothing (the suite's time ran out)", seen.last)
            time.sleep(0.5)

    def _check_traffic(self, case: Case, traffic: dict[str, list[str]], now: float) -> None:
        seen = self.seen[case.name]
        if CONTINUES in case.expect or seen.outcome == REFUSED:
            return
        # Mid-rollout, a candidate being judged may carry traffic; once Stalled it may not.
        if case.midway and (seen.stalled_at is None or now - seen.stalled_at < GRACE):
            return
        for name in case.judged:
            for what in traffic.get(name, []):
                if what not in seen.traffic:
                    seen.traffic.append(what)

    def tracebacks(self, log: str) -> tuple[dict[str, list[str]], list[str]]:
        """Tracebacks in the operator's log, by the case whose name the line before names."""
        by_case: dict[str, list[str]] = {}
        unattributed: list[str] = []
        lines = log.splitlines()
        for i, line in enumerate(lines):
            if not line.startswith("Traceback"):
                continue
            end = i + 1
            while end < len(lines) and (lines[end].startswith(" ") or lines[end].startswith("During handling")
                                        or not lines[end].strip() or lines[end].startswith("Traceback")):
                end += 1
            last = lines[end] if end < len(lines) else lines[-1]
            context = lines[i - 1] if i else ""
            names = re.findall(r"/(h\d{3}[-a-z0-9]*)", context)
            if names and names[0][:4] in self.seen:
                by_case.setdefault(names[0][:4], []).append(f"{context.strip()[:200]} -> {last.strip()[:300]}")
            else:
                unattributed.append(f"{context.strip()[:200]} -> {last.strip()[:300]}")
        return by_case, unattributed

    def noise(self, log: str) -> Counter[str]:
        return Counter(m[:4] for m in re.findall(r"e2e-bad-(?:input|midway)-\w+/(h\d{3})", log))

    def cleanup(self) -> None:
        for namespace in (self.fresh, self.midway):
            Kubectl(self.env).run("delete", "namespace", namespace.namespace or "", "--wait=false", check=False)


@pytest.fixture(scope="module")
def suite(env: dict[str, str], operator: Operator, prometheus_url: str) -> Any:
    mark = operator.log.stat().st_size
    started = time.monotonic()
    run = Suite(env, prometheus_url)
    try:
        run.apply_all()
        applied = time.monotonic() - started
        run.poll(MIDWAY_SETUP + MIDWAY_STALL_WITHIN + CONTINUE_FOR + 20)
        time.sleep(1)
        with operator.log.open("rb") as file:
            file.seek(mark)
            log = file.read().decode(errors="replace")
        by_case, unattributed = run.tracebacks(log)
        for name, found in by_case.items():
            run.seen[name].problems += [f"traceback in the operator log: {t}" for t in found]
        run.log_tracebacks = unattributed
        print(f"\napplied every case in {applied:.0f}s ({run.applied_alone} on their own); the last outcome came "
              f"{max(s.decided_at or 0 for s in run.seen.values()) - started:.0f}s after the start")
        _print_summary(run, time.monotonic() - started, run.noise(log))
        yield run
    finally:
        run.cleanup()


def _print_summary(run: Suite, took: float, noise: Counter[str]) -> None:
    print(f"\n=== bad input: {len(run.cases)} cases in {took:.0f}s ===")
    print(f"{'class':40} {'cases':>5} {'ok':>4}  outcomes")
    for cls, members in hostile.by_class(run.cases):
        outcomes = Counter(run.seen[c.name].outcome.split(" (")[0] for c in members)
        ok = sum(run.seen[c.name].ok for c in members)
        print(f"{cls:40} {len(members):>5} {ok:>4}  " + ", ".join(f"{k}: {v}" for k, v in outcomes.most_common()))
    overall = Counter(s.outcome.split(" (")[0] for s in run.seen.values())
    print("outcomes: " + ", ".join(f"{k}: {v}" for k, v in overall.most_common()))
    firsts = sorted(s.first_status_at - s.applied for s in run.seen.values() if s.first_status_at)
    if firsts:
        print(f"first status written {firsts[0]:.1f}s / {firsts[len(firsts) // 2]:.1f}s / {firsts[-1]:.1f}s "
              f"(min / median / max) after the apply, for {len(firsts)} fresh Releases; "
              f"{len(run.rounds)} polls of {(run.rounds[-1] - run.rounds[0]) / max(1, len(run.rounds) - 1):.1f}s")
    failing = [s for s in run.seen.values() if not s.ok]
    print(f"met their expectation: {len(run.seen) - len(failing)}/{len(run.seen)}")
    if noise:
        print("log lines per case, noisiest: " + ", ".join(f"{k}: {v}" for k, v in noise.most_common(8)))
    for seen in failing:
        print(seen.report())


@pytest.mark.parametrize("case", CASES, ids=[f"{c.name}-{c.cls}: {c.title}" for c in CASES])
def test_bad_input(suite: Suite, case: Case) -> None:
    seen = suite.seen[case.name]
    assert seen.ok, seen.report()


def test_no_traceback_in_the_operator_log(suite: Suite) -> None:
    assert not suite.log_tracebacks, "tracebacks in the operator log:\n" + "\n".join(suite.log_tracebacks)


def test_the_suite_covers_every_class_with_200_cases() -> None:
    assert len(CASES) >= 200
    expected = {REFUSED, STALLED, SHIPS, CONTINUES}
    assert {outcome for case in CASES for outcome in case.expect} == expected

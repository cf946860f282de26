"""The order of a reconcile pass (issue 7, item 7): decide, persist, act. Driven through the real
sluice.reconcile against a small in-memory object store standing in for the API server (unit
tests only; e2e tests use a real one), with faults injected at the status write and the act."""

from __future__ import annotations

import copy
import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes.client import ApiException

from sluice.kube.client import Conflict
from sluice.reconcile import Context, Refused, reconcile

Body = dict[str, Any]
T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
uids = itertools.count(1)


class Store:
    """Objects by (kind, namespace, name); Deployments become Ready at once."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Body] = {}
        self.writes: list[tuple[str, str]] = []  # (verb, kind/name) of every write, in order
        self.events: dict[str, Body] = {}
        self.fail_status_write = False
        self.fail_writes_after_status = False

    def put(self, body: Body) -> Body:
        body = copy.deepcopy(body)
        meta = body["metadata"]
        key = (body["kind"], meta.get("namespace", ""), meta["name"])
        old = self.objects.get(key)
        meta.setdefault("uid", old["metadata"]["uid"] if old else f"uid-{next(uids)}")
        meta["resourceVersion"] = str(next(uids))
        meta["generation"] = (old or {}).get("metadata", {}).get("generation", 0) + 1
        if body["kind"] == "Deployment":
            n = body["spec"]["replicas"]
            body["status"] = {"replicas": n, "readyReplicas": n, "updatedReplicas": n, "availableReplicas": n,
                              "observedGeneration": meta["generation"]}
        self.objects[key] = body
        return body

    # The Kube interface, as sluice.reconcile uses it.
    async def get(self, api_version: str, kind: str, name: str, namespace: str) -> Body | None:
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found else None

    async def list(self, api_version: str, kind: str, namespace: str | None = None,
                   label_selector: str | None = None) -> list[Body]:
        return []

    def _write(self, verb: str, kind: str, name: str) -> None:
        if self.fail_writes_after_status:
            raise RuntimeError("the operator died here")
        self.writes.append((verb, f"{kind}/{name}"))

    async def apply(self, body: Body) -> Body:
        self._write("apply", body["kind"], body["metadata"]["name"])
        current = self.objects.get((body["kind"], body["metadata"]["namespace"], body["metadata"]["name"]))
        merged = {**(current or {}), **copy.deepcopy(body)}
        return self.put(merged)

    async def create(self, body: Body) -> Body:
        key = (body["kind"], body["metadata"]["namespace"], body["metadata"]["name"])
        if key in self.objects:
            raise Conflict(body["metadata"]["name"])
        self._write("create", body["kind"], body["metadata"]["name"])
        return self.put(body)

    async def write(self, body: Body, exists: bool) -> Body:
        return await (self.apply(body) if exists else self.create(body))

    async def merge_patch(self, api_version: str, kind: str, name: str, namespace: str, patch: Body) -> Body:
        self._write("patch", kind, name)
        body = copy.deepcopy(self.objects[(kind, namespace, name)])
        body["spec"].update(patch.get("spec", {}))
        return self.put(body)

    async def json_patch(self, api_version: str, kind: str, name: str, namespace: str, ops: Any) -> Body:
        """Only what adoption sends: a resourceVersion test, then adds of whole fields."""
        self._write("json-patch", kind, name)
        body = copy.deepcopy(self.objects[(kind, namespace, name)])
        for op in ops:
            *parents, last = op["path"].strip("/").split("/")
            target = body
            for part in parents:
                target = target[part]
            if op["op"] == "test":
                if target.get(last) != op["value"]:
                    raise Conflict(name)
            else:
                assert op["op"] == "add", "no drift in these stories"
                target[last] = copy.deepcopy(op["value"])
        return self.put(body)

    async def replace(self, body: Body, status: bool = False) -> Body:
        key = (body["kind"], body["metadata"]["namespace"], body["metadata"]["name"])
        current = self.objects[key]
        if self.fail_status_write or current["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"]:
            raise Conflict(body["metadata"]["name"])
        self.writes.append(("status", body["metadata"]["name"]))
        updated = copy.deepcopy(current)
        updated["status"] = body["status"]
        updated["metadata"]["resourceVersion"] = str(next(uids))
        self.objects[key] = updated
        return updated

    async def dry_run_create(self, body: Body) -> Body:
        return copy.deepcopy(body)

    async def event(self, regarding: Body, type_: str, reason: str, message: str, name: str | None = None) -> bool:
        assert name, "outbox events are posted under their own name"
        self.events.setdefault(name, {"reason": reason, "message": message})
        return True


class Providers:
    async def get(self, policy: Any, namespace: str) -> Any:
        raise AssertionError("no analysis in these stories")


@pytest.fixture
def cluster() -> tuple[Store, Context, list[datetime]]:
    store = Store()
    clock = [T0]
    context = Context(kube=store, providers=Providers(), now=lambda: clock[0])  # type: ignore[arg-type]
    store.put({"apiVersion": "sluice.dev/v1alpha1", "kind": "RolloutPolicy",
               "metadata": {"name": "manual", "namespace": "shop"},
               "spec": {"strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]}}}})
    return store, context, clock


def release(store: Store, version: str) -> None:
    current = store.objects.get(("Release", "shop", "checkout"))
    body = {"apiVersion": "sluice.dev/v1alpha1", "kind": "Release",
            "metadata": {"name": "checkout", "namespace": "shop", **({"uid": current["metadata"]["uid"]}
                                                                     if current else {})},
            "spec": {"version": version, "replicas": 4, "policyRef": {"name": "manual"},
                     "template": {"spec": {"containers": [{"name": "app", "image": f"app:{version}"}]}}},
            "status": (current or {}).get("status")}
    store.put(body)


async def passes(context: Context, clock: list[datetime], count: int) -> None:
    for _ in range(count):
        clock[0] += timedelta(seconds=1)
        await reconcile(context, "shop", "checkout")


async def canary_waiting_for_promote(store: Store, context: Context, clock: list[datetime]) -> None:
    """1.0.0 stable, 1.1.0 at 50% by replica ratio, paused until promoted."""
    release(store, "1.0.0")
    await passes(context, clock, 3)
    release(store, "1.1.0")
    await passes(context, clock, 4)


def status(store: Store) -> Body:
    return store.objects[("Release", "shop", "checkout")]["status"]


def selector(store: Store) -> Body:
    return store.objects[("Service", "shop", "checkout")]["spec"]["selector"]


def request(store: Store, action: str) -> None:
    at = "2026-11-28T12:00:00Z"
    store.objects[("Release", "shop", "checkout")]["status"]["request"] = {"action": action, "at": at}


async def test_a_pass_whose_status_write_fails_acts_on_nothing(cluster: Any) -> None:
    store, context, clock = cluster
    await canary_waiting_for_promote(store, context, clock)
    assert status(store)["phase"] == "Paused" and "sluice.dev/track" not in selector(store)
    request(store, "abort")
    store.fail_status_write, store.writes = True, []
    with pytest.raises(Conflict):
        await passes(context, clock, 1)
    assert store.writes == [], "the rollback was not persisted, so nothing moved"
    store.fail_status_write = False
    await passes(context, clock, 1)
    assert store.writes[0] == ("status", "checkout"), "the decision is written before anything moves"
    assert status(store)["phase"] == "RolledBack" and selector(store)["sluice.dev/track"] == "stable"


async def test_a_pass_that_dies_after_persisting_a_rollback_is_finished_by_the_next(cluster: Any) -> None:
    store, context, clock = cluster
    await canary_waiting_for_promote(store, context, clock)
    request(store, "abort")
    store.fail_writes_after_status = True
    with pytest.raises(RuntimeError):
        await passes(context, clock, 1)
    assert status(store)["phase"] == "RolledBack"
    assert "sluice.dev/track" not in selector(store), "the act was lost: the canary still serves"
    assert not any(e["reason"] == "RolledBack" for e in store.events.values())
    store.fail_writes_after_status = False
    context.posted.clear()  # a new operator process
    await passes(context, clock, 2)
    assert selector(store)["sluice.dev/track"] == "stable"
    assert store.objects[("Deployment", "shop", "checkout-canary")]["spec"]["replicas"] == 0
    rolled_back = [e for e in store.events.values() if e["reason"] == "RolledBack"]
    assert len(rolled_back) == 1, "the persisted event is posted once, after the restart"


async def test_an_owned_name_taken_by_another_object_is_never_written(cluster: Any) -> None:
    store, context, clock = cluster
    store.put({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "checkout", "namespace": "shop",
               "ownerReferences": [{"kind": "Release", "name": "other", "uid": "someone-else",
                                    "controller": True}]}, "spec": {"selector": {"app": "other"}}})
    release(store, "1.0.0")
    await passes(context, clock, 2)
    assert [w for w in store.writes if w[0] != "status"] == []
    stalled = next(c for c in status(store)["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "NameConflict"
    assert "Service checkout already exists and belongs to Release other" in stalled["message"]


class Flaky:
    """Providers whose Secret is missing until `fixed`; then a Prometheus answering `value`."""

    def __init__(self) -> None:
        self.fixed, self.value = False, 0.01

    async def get(self, policy: Any, namespace: str) -> Any:
        from sluice.analysis.runner import Rejected
        if not self.fixed:
            raise Rejected(f"Secret prom-token with key token not found in namespace {namespace}")
        return self

    async def sources(self, policy: Any, namespace: str, names: tuple[str, ...]) -> Any:
        from sluice.analysis.runner import Sources
        return Sources(await self.get(policy, namespace))

    async def query(self, promql: str) -> float | None:
        return self.value


async def test_input_found_unusable_while_measuring_stays_stalled_until_fixed(cluster: Any) -> None:
    store, context, clock = cluster
    providers = Flaky()
    context.providers = providers
    store.put({"apiVersion": "sluice.dev/v1alpha1", "kind": "RolloutPolicy",
               "metadata": {"name": "manual", "namespace": "shop"},
               "spec": {"strategy": {"canary": {"steps": [{"setWeight": 50}, {"analysis": {}}, {"setWeight": 100}]}},
                        "analysis": {"interval": "1s", "count": 2, "metrics": [
                            {"name": "error-rate", "query": "q", "successCondition": "result < 0.05"}]}}})
    release(store, "1.0.0")
    await passes(context, clock, 3)
    release(store, "1.1.0")
    await passes(context, clock, 4)
    for _ in range(5):  # every pass, measuring or not, keeps it Stalled with the canary out of the Service
        await passes(context, clock, 1)
        stalled = next(c for c in status(store)["conditions"] if c["type"] == "Stalled")
        assert stalled["status"] == "True" and "Secret prom-token" in stalled["message"]
        assert selector(store)["sluice.dev/track"] == "stable"
    assert store.objects[("Deployment", "shop", "checkout-canary")]["spec"]["replicas"] == 2, "kept warm"
    providers.fixed = True
    await passes(context, clock, 8)
    assert status(store)["phase"] == "Succeeded" and status(store)["stableVersion"] == "1.1.0"


async def test_a_name_this_release_does_not_use_yet_is_left_alone_until_it_would(cluster: Any) -> None:
    store, context, clock = cluster
    store.put({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "checkout-canary", "namespace": "shop",
                            "ownerReferences": [{"kind": "Release", "name": "checkout-canary", "uid": "other",
                                                 "controller": True}]},
               "spec": {"replicas": 3, "template": {"metadata": {}, "spec": {}}}})
    release(store, "1.0.0")
    await passes(context, clock, 3)
    assert status(store)["phase"] == "Succeeded", "no rollout: the other Release's Deployment is not in the way"
    assert store.objects[("Deployment", "shop", "checkout-canary")]["spec"]["replicas"] == 3, "and never touched"
    release(store, "1.1.0")
    await passes(context, clock, 2)
    stalled = next(c for c in status(store)["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "NameConflict" and "Deployment checkout-canary" in stalled["message"]
    assert store.objects[("Deployment", "shop", "checkout-canary")]["spec"]["replicas"] == 3


# --- the `requires` gate: what runs in the other namespace, never what its status says ---------

def gated(store: Store) -> None:
    """Policy `manual` requires the same version to run in namespace staging first."""
    body = store.objects[("RolloutPolicy", "shop", "manual")]
    body["spec"]["requires"] = [{"namespace": "staging"}]


def staging(store: Store, version: str, image: str | None = None) -> None:
    """The same-named Release in namespace staging, under no policy (a plain rolling update)."""
    current = store.objects.get(("Release", "staging", "checkout"))
    store.put({"apiVersion": "sluice.dev/v1alpha1", "kind": "Release",
               "metadata": {"name": "checkout", "namespace": "staging",
                            **({"uid": current["metadata"]["uid"]} if current else {})},
               "spec": {"version": version, "replicas": 2,
                        "template": {"spec": {"containers": [{"name": "app", "image": image or f"app:{version}"}]}}},
               "status": (current or {}).get("status")})


async def staging_runs(store: Store, context: Context, version: str, image: str | None = None) -> None:
    staging(store, version, image)
    for _ in range(3):
        await reconcile(context, "staging", "checkout")
    assert store.objects[("Release", "staging", "checkout")]["status"]["stableVersion"] == version


def forge(store: Store, version: str) -> None:
    """What anyone who may patch releases/status in staging (`sluice promote` needs it) can write."""
    body = store.objects[("Release", "staging", "checkout")]
    body["status"] = {**(body.get("status") or {}), "phase": "Succeeded", "stableVersion": version,
                      "history": [{"version": version, "outcome": "Succeeded"}]}


async def forged_with_no_deployment(store: Store, context: Context) -> None:
    staging(store, "1.1.0")
    forge(store, "1.1.0")


async def forged_over_an_older_version(store: Store, context: Context) -> None:
    await staging_runs(store, context, "1.0.0")
    forge(store, "1.1.0")


async def a_look_alike_deployment(store: Store, context: Context) -> None:
    """A Deployment made by hand with the right name, version annotation and image, and a status
    that says so: not Sluice's for that Release, so it proves nothing."""
    staging(store, "1.1.0")
    forge(store, "1.1.0")
    template = {"metadata": {"annotations": {"sluice.dev/version": "1.1.0"}},
                "spec": {"containers": [{"name": "app", "image": "app:1.1.0"}]}}
    store.put({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "checkout", "namespace": "staging"},
               "spec": {"replicas": 2, "template": template}})


async def another_build_of_the_version(store: Store, context: Context) -> None:
    await staging_runs(store, context, "1.1.0", image="app:1.1.0-debug")


async def our_image_set_by_hand(store: Store, context: Context) -> None:
    """Staging declares another build of 1.1.0; someone sets our image on its Deployment by hand
    (`kubectl set image`: the template-hash annotation stays). Staging's Sluice would put its own
    image back; until then the gate must not take the hand edit for a tried artifact."""
    await staging_runs(store, context, "1.1.0", image="app:1.1.0-debug")
    deployment = store.objects[("Deployment", "staging", "checkout")]
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = "app:1.1.0"


async def still_rolling_out(store: Store, context: Context) -> None:
    await staging_runs(store, context, "1.1.0")
    deployment = store.objects[("Deployment", "staging", "checkout")]
    deployment["status"].update({"availableReplicas": 1, "readyReplicas": 1})


GATE_CLOSED = {
    "forged status, no Deployment": (forged_with_no_deployment, "Deployment checkout in namespace staging does "
                                                                "not exist"),
    "forged status, the Deployment runs 1.0.0": (forged_over_an_older_version, "Deployment checkout in namespace "
                                                                             "staging runs 1.0.0, not 1.1.0"),
    "a look-alike Deployment": (a_look_alike_deployment, "Deployment checkout in namespace staging is not managed "
                                                         "by Sluice for Release checkout there"),
    "another image under the same version": (another_build_of_the_version, "Deployment checkout in namespace "
                                             "staging runs image app:1.1.0-debug in container app, not app:1.1.0"),
    "our image set by hand over the declared one": (our_image_set_by_hand, "Deployment checkout in namespace staging "
                                                    "runs image app:1.1.0 in container app, but Release checkout in "
                                                    "namespace staging declares app:1.1.0-debug: the Deployment was "
                                                    "changed behind Sluice's back"),
    "not fully available": (still_rolling_out, "Deployment checkout in namespace staging has not finished rolling "
                                               "out 1.1.0: 1 of 2 replicas are available"),
}


@pytest.mark.parametrize("given, why", GATE_CLOSED.values(), ids=GATE_CLOSED.keys())
async def test_requires_is_not_opened_by_what_staging_merely_says(cluster: Any, given: Any, why: str) -> None:
    store, context, clock = cluster
    gated(store)
    release(store, "1.0.0")
    await passes(context, clock, 3)
    await given(store, context)
    release(store, "1.1.0")
    await passes(context, clock, 3)
    assert status(store)["phase"] == "Pending"
    assert status(store)["message"] == f"waiting to roll out 1.1.0: 1.1.0 is not running in namespace staging yet: " \
                                       f"{why} (requires)"
    assert ("Deployment", "shop", "checkout-canary") not in store.objects, "no candidate pod was started"


async def test_requires_opens_once_staging_really_runs_the_version(cluster: Any) -> None:
    store, context, clock = cluster
    gated(store)
    release(store, "1.0.0")
    await passes(context, clock, 3)
    await staging_runs(store, context, "1.0.0")
    release(store, "1.1.0")
    await passes(context, clock, 2)
    assert status(store)["phase"] == "Pending" and "runs 1.0.0, not 1.1.0" in status(store)["message"]
    await staging_runs(store, context, "1.1.0")
    await passes(context, clock, 3)
    assert status(store)["phase"] == "Paused", "the gate opened: the canary runs and waits for its promote"
    assert store.objects[("Deployment", "shop", "checkout-canary")]["spec"]["replicas"] == 2


# --- names Sluice writes that are taken: refused, unless the object itself grants adoption ----------

def foreign(kind: str, name: str, annotations: Body | None = None, owner: Body | None = None,
            selector: Body | None = None) -> Body:
    """An object someone else made, with a name Sluice writes."""
    meta: Body = {"name": name, "namespace": "shop", "annotations": annotations or {}}
    if owner:
        meta["ownerReferences"] = [owner]
    if kind == "Service":
        return {"apiVersion": "v1", "kind": kind, "metadata": meta,
                "spec": {"selector": selector or {"app": "legacy"}, "ports": [{"port": 8080}]}}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta,
            "spec": {"replicas": 3, "selector": selector or {"matchLabels": {"app": "legacy"}},
                     "template": {"metadata": {"labels": {"app": "legacy"}}, "spec": {}}}}


ROLLOUT = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "legacy", "uid": "u-legacy",
           "controller": True}
GRANT = {"sluice.dev/adopt": "checkout"}
SLUICE_SELECTOR = {"matchLabels": {"app.kubernetes.io/name": "checkout", "sluice.dev/track": "stable"}}

REFUSED = {
    "a Service nobody manages": (
        foreign("Service", "checkout"),
        "Service checkout already exists and is not managed by Sluice; Sluice owns Services named <release>, "
        "<release>-canary and <release>-preview, so rename Release checkout or that Service, or let Sluice adopt "
        "it: kubectl annotate service checkout sluice.dev/adopt=checkout"),
    "a Deployment nobody manages": (
        foreign("Deployment", "checkout", selector=SLUICE_SELECTOR),
        "Deployment checkout already exists and is not managed by Sluice"),
    "another controller's Service, even with the grant": (
        foreign("Service", "checkout", GRANT, ROLLOUT),
        "Service checkout already exists and belongs to Rollout legacy (an object another controller "
        "manages is never adopted)"),
    "a grant to another Release": (
        foreign("Service", "checkout", {"sluice.dev/adopt": "payments"}),
        "Service checkout already exists and its sluice.dev/adopt annotation grants it to Release payments, "
        "not checkout"),
    "a Deployment whose selector cannot become Sluice's": (
        foreign("Deployment", "checkout", GRANT),
        'Deployment checkout cannot be adopted: its selector {"matchLabels": {"app": "legacy"}} is not Sluice\'s '
        '{"matchLabels": {"app.kubernetes.io/name": "checkout", "sluice.dev/track": "stable"}}'),
}


@pytest.mark.parametrize("existing, message", REFUSED.values(), ids=REFUSED.keys())
async def test_an_object_sluice_may_not_take_is_never_written(cluster: Any, existing: Body, message: str) -> None:
    store, context, clock = cluster
    before = store.put(existing)
    release(store, "1.0.0")
    await passes(context, clock, 3)
    stalled = next(c for c in status(store)["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "NameConflict"
    assert stalled["message"].startswith(message), stalled["message"]
    assert [w for w in store.writes if w[0] != "status"] == [], "nothing at all is written"
    assert store.objects[existing["kind"], "shop", existing["metadata"]["name"]] == before, "and it is untouched"


async def test_an_unowned_service_whose_writer_grants_it_is_adopted(cluster: Any) -> None:
    store, context, clock = cluster
    store.put(foreign("Service", "checkout", {"sluice.dev/adopt": "checkout", "team": "shop"}))
    release(store, "1.0.0")
    await passes(context, clock, 3)
    assert status(store)["phase"] == "Succeeded"
    service = store.objects[("Service", "shop", "checkout")]
    uid = store.objects[("Release", "shop", "checkout")]["metadata"]["uid"]
    assert [(o["kind"], o["name"], o["uid"], o["controller"]) for o in service["metadata"]["ownerReferences"]] == \
        [("Release", "checkout", uid, True)]
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "checkout", "sluice.dev/track": "stable"}
    assert next(w for w in store.writes if w[0] != "status") == ("json-patch", "Service/checkout"), \
        "taken over only if unchanged since it was read, and its ports replaced whole"
    adopted = [e["message"] for e in store.events.values() if e["reason"] == "Adopted"]
    assert adopted == ["adopting Service checkout: its sluice.dev/adopt annotation names this Release, which now "
                       "controls it"]
    release(store, "1.1.0")
    await passes(context, clock, 4)
    assert status(store)["phase"] == "Paused", "the rollout goes on as with a Service Sluice made itself"
    assert len([e for e in store.events.values() if e["reason"] == "Adopted"]) == 1


async def test_a_granted_deployment_with_sluices_selector_is_adopted(cluster: Any) -> None:
    store, context, clock = cluster
    store.put(foreign("Deployment", "checkout", GRANT, selector=SLUICE_SELECTOR))
    release(store, "1.0.0")
    await passes(context, clock, 3)
    deployment = store.objects[("Deployment", "shop", "checkout")]
    assert status(store)["phase"] == "Succeeded"
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == \
        store.objects[("Release", "shop", "checkout")]["metadata"]["uid"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "app:1.0.0"


async def test_an_httproute_another_controller_manages_is_not_written(cluster: Any) -> None:
    store, context, clock = cluster
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
             "metadata": {"name": "shop", "namespace": "shop", "ownerReferences": [ROLLOUT]},
             "spec": {"rules": [{"backendRefs": [{"name": "checkout", "port": 80}]}]}}
    before = store.put(route)
    release(store, "1.0.0")
    store.objects[("Release", "shop", "checkout")]["spec"]["trafficRouting"] = {"gatewayAPI": {"httpRoute": "shop"}}
    await passes(context, clock, 2)
    stalled = next(c for c in status(store)["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "NameConflict"
    assert stalled["message"].startswith("HTTPRoute shop belongs to Rollout legacy, which would undo the weights")
    assert [w for w in store.writes if w[0] != "status"] == []
    assert store.objects[("HTTPRoute", "shop", "shop")] == before


async def test_a_write_the_api_server_refuses_is_a_stalled_condition_until_one_succeeds(cluster: Any) -> None:
    """Given a cluster whose Service range is full, when a Release's first pass creates its
    Service, then the pass fails with one plain refusal (the loop retries with backoff), the
    next pass shows it as Stalled with the API server's sentence, and once the Service can be
    created the condition clears."""
    store, context, clock = cluster
    full = ApiException(status=500, reason="Internal Server Error")
    full.body = json.dumps({"kind": "Status", "message": "Internal error occurred: failed to allocate a "
                            "serviceIP: range is full"})
    create = store.create

    async def refusing(body: Body) -> Body:
        if body["kind"] == "Service":
            raise full
        return await create(body)

    store.create = refusing  # type: ignore[method-assign]
    release(store, "1.0.0")
    with pytest.raises(Refused, match="refused writing the Services of checkout and its traffic weights: "
                                      "Internal error occurred: failed to allocate a serviceIP: range is full"):
        await passes(context, clock, 1)
    with pytest.raises(Refused):
        await passes(context, clock, 1)
    stalled = next(c for c in status(store)["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "RefusedByAPIServer"
    assert "range is full; retrying with backoff" in stalled["message"]
    store.create = create  # type: ignore[method-assign]
    await passes(context, clock, 2)
    stalled = next(c for c in status(store)["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "False" and status(store)["phase"] == "Succeeded"

"""Node view, metrics health, lifecycle reviews, store ordering and the Prometheus reader."""

from __future__ import annotations

from datetime import timedelta

from aigc_api import status as st
from aigc_api.lease import WorkerStatus
from aigc_operator import lifecycle
from aigc_operator.gpu_metrics import QUERIES, MetricsReading, NodeSample, PrometheusSampler
from aigc_operator.store import NodeStore, PlacedLoad, TaskStore
from aigc_operator.telemetry import Telemetry
from aigc_operator.view import MISSING_AGE_FACTOR, build_node_states, metrics_health
from aigc_policy.snapshot import Resident
from operator_fakes import make_node, make_task, utc
from prometheus_client import generate_latest

NOW = utc(2026, 1, 2, 3, 4, 5)


def nodes() -> NodeStore:
    store = NodeStore(("aigc.edge.io/gpu-node", "true"), "aigc.edge.io/gpu-class")
    store.observe(make_node("edge-0", "a100"))
    store.observe(make_node("edge-1", "l4"))
    store.observe(make_node("edge-2", "l4", ready=False))
    plain = make_node("cpu-0", "")
    plain["metadata"]["labels"] = {}
    store.observe(plain)
    return store


def test_node_store_selects_ready_gpu_nodes() -> None:
    store = nodes()
    assert [n.name for n in store.usable()] == ["edge-0", "edge-1"]
    assert not store.is_usable("edge-2") and not store.is_usable("cpu-0")
    store.observe(make_node("edge-1", "l4"), deleted=True)
    assert [n.name for n in store.usable()] == ["edge-0"]


def test_metrics_health_cases() -> None:
    names = ["edge-0", "edge-1"]
    assert metrics_health(names, None, False, 120, 0).reason == "MetricsNotConfigured"
    down = metrics_health(names, MetricsReading(up=False, taken_at=0, error="refused"), True, 120, 0)
    assert not down.source_up and down.node_ages["edge-0"] == MISSING_AGE_FACTOR * 120
    reading = MetricsReading(up=True, taken_at=100.0, nodes={"edge-0": NodeSample(age_s=10)})
    fresh = metrics_health(names, reading, True, 120, 105.0)
    assert fresh.reason == "MetricsFresh" and fresh.node_ages["edge-0"] == 15.0
    assert fresh.stale_nodes == frozenset({"edge-1"})
    stale = metrics_health(names, reading, True, 120, 300.0)
    assert stale.reason == "MetricsStale"


def test_shadow_load_and_worker_reports() -> None:
    health = metrics_health(["edge-0", "edge-1"], MetricsReading(up=True, taken_at=0, nodes={}), True, 120, 0)
    worker = WorkerStatus(
        node="edge-0",
        holder="w",
        address="",
        renew_time=NOW - timedelta(seconds=5),
        resident=(Resident("sd15", ("edge-0",)),),
        free_at=NOW + timedelta(seconds=10),
    )
    reported = NOW.timestamp() - 5
    loads = [
        PlacedLoad(
            ("edge-0",), "sd15", 2.0, reported - 10, frozenset({0})
        ),  # claimed before the report: in free_at
        PlacedLoad(("edge-0",), "sd15", 3.0, reported - 10, frozenset()),  # not claimed yet: shadow
        PlacedLoad(
            ("edge-0", "edge-1"), "sdxl", 4.0, reported + 1, frozenset({0, 1})
        ),  # placed after the report
        PlacedLoad(("edge-1",), "sd15", 2.0, NOW.timestamp(), frozenset()),
    ]
    states = {
        s.name: s for s in build_node_states(nodes().usable(), {"edge-0": worker}, loads, health, NOW, False)
    }
    assert states["edge-0"].free_at == NOW.timestamp() + 10 + 3 + 4
    assert states["edge-0"].inflight == 3
    # Unreported placements make their model resident (the worker is loading it).
    assert states["edge-0"].resident == [
        Resident("sd15", ("edge-0",)),
        Resident("sdxl", ("edge-0", "edge-1")),
    ]
    # No report: everything placed counts, from its decision time on (the gang task is done by now).
    assert states["edge-1"].free_at == NOW.timestamp() + 2 and states["edge-1"].inflight == 2
    only_workers = build_node_states(nodes().usable(), {"edge-0": worker}, [], health, NOW, True)
    assert [s.name for s in only_workers] == ["edge-0"]
    dead = WorkerStatus(node="edge-0", holder="w", address="", renew_time=NOW - timedelta(minutes=5))
    assert build_node_states(nodes().usable(), {"edge-0": dead}, [], health, NOW, True) == []


def placed(attempt: int = 1, nodes: tuple[str, ...] = ("edge-0",)) -> dict:
    body = make_task("t")
    record = st.PlacementRecord(attempt, nodes, 20, "eft", "v", NOW, 0, 1000)
    patch = st.placement_patch(body, record, NOW, ("True", "MetricsFresh", ""))
    body["status"] = patch["status"]
    return body


def review(body: dict, now=NOW, usable=lambda n: True, max_attempts: int = 3) -> lifecycle.Review:  # noqa: ANN001
    return lifecycle.review(body, now, usable, timedelta(seconds=30), timedelta(seconds=60), max_attempts)


def test_lifecycle_reviews() -> None:
    body = placed()
    keep = review(body)
    assert keep.action == lifecycle.KEEP and keep.next_check == NOW + timedelta(seconds=60)
    assert review(body, now=NOW + timedelta(seconds=61)).reason == st.CLAIM_TIMEOUT
    assert review(body, usable=lambda n: False).reason == st.NODE_LOST
    last = placed(attempt=3)
    verdict = review(last, usable=lambda n: False)
    assert verdict.action == lifecycle.FAIL and verdict.reason == st.MAX_ATTEMPTS_EXCEEDED
    body["status"]["failure"] = {
        "attempt": 1,
        "reason": st.OUT_OF_MEMORY,
        "message": "oom",
        "retryable": True,
    }
    assert review(body).action == lifecycle.REPLACE
    body["status"]["failure"]["retryable"] = False
    assert review(body) == lifecycle.Review(lifecycle.FAIL, st.OUT_OF_MEMORY, "attempt 1: oom")
    body["status"]["phase"] = st.SUCCEEDED
    assert review(body).action == lifecycle.KEEP


def test_lifecycle_claim_liveness_comes_from_the_worker_lease() -> None:
    body = placed()
    claim = st.claim_patch(body, attempt=1, rank=0, holder="w0", now=NOW)
    body["status"] = {**body["status"], **claim["status"]}
    later = NOW + timedelta(minutes=5)  # claim heartbeat 5 minutes old, TTL 30 s

    def verdict(lease: WorkerStatus | None) -> lifecycle.Review:
        leases = {} if lease is None else {"edge-0": lease}
        ttl, timeout = timedelta(seconds=30), timedelta(seconds=60)
        return lifecycle.review(body, later, lambda n: True, ttl, timeout, 3, leases.get)

    fresh = WorkerStatus("edge-0", "w0", "", later - timedelta(seconds=2), lease_seconds=6)
    keep = verdict(fresh)
    assert keep.action == lifecycle.KEEP and keep.next_check == later + timedelta(seconds=4)
    assert verdict(None).reason == st.CLAIM_EXPIRED
    assert verdict(
        WorkerStatus("edge-0", "w0", "", later - timedelta(seconds=7), lease_seconds=6)
    ).reason == (st.CLAIM_EXPIRED)
    assert verdict(WorkerStatus("edge-0", "w1", "", later, lease_seconds=6)).reason == st.CLAIM_EXPIRED


def test_node_view_caps_lease_duration_at_the_ttl() -> None:
    health = metrics_health(["edge-0", "edge-1"], None, False, 30.0, 0.0)
    worker = WorkerStatus("edge-0", "w", "", NOW - timedelta(seconds=12), lease_seconds=30)
    assert [
        s.name for s in build_node_states(nodes().usable(), {"edge-0": worker}, [], health, NOW, True)
    ] == ["edge-0"]
    capped = build_node_states(
        nodes().usable(), {"edge-0": worker}, [], health, NOW, True, lease_ttl=timedelta(seconds=10)
    )
    assert capped == []


def test_task_store_queue_order_and_reviews() -> None:
    store = TaskStore()
    late = make_task("late", created="2026-01-02T03:04:09Z")
    early = make_task("early", created="2026-01-02T03:04:01Z")
    store.observe(late)
    store.observe(early)
    assert store.take_pending(1, now=0) == ["ns/early"]
    assert store.take_pending(5, now=0) == ["ns/late"]  # early is taken (write in flight)
    store.done("ns/early", placed=False, defer_until=50.0)
    store.done("ns/late", placed=False)
    assert store.take_pending(5, now=10) == ["ns/late"]
    store.done("ns/late", placed=False)
    assert sorted(store.take_pending(5, now=60)) == ["ns/early", "ns/late"]
    store.done("ns/early", placed=True)
    assert not store.is_pending("ns/early")
    body = placed()
    body["metadata"]["resourceVersion"] = "999999"
    store.observe(body)
    assert not store.is_pending("ns/t") and [k for k, _ in store.due_for_review(0)] == ["ns/t"]
    store.set_review("ns/t", 100.0)
    assert store.due_for_review(50.0) == []
    assert [load.nodes for load in store.placed_loads()] == [("edge-0",)]


def test_task_store_reviews_only_what_is_due_and_follows_reschedules() -> None:
    store = TaskStore()
    for name in ("a", "b", "c"):
        body = placed()
        body["metadata"]["name"] = name
        store.observe(body)
    assert sorted(k for k, _ in store.due_for_review(0.0)) == ["ns/a", "ns/b", "ns/c"]  # new: due now
    assert sorted(k for k, _ in store.due_for_review(0.0)) == ["ns/a", "ns/b", "ns/c"]  # until rescheduled
    store.set_review("ns/a", 100.0)
    store.set_review("ns/b", 50.0)
    store.set_review("ns/c", 500.0)
    assert [k for k, _ in store.due_for_review(60.0)] == ["ns/b"]
    store.set_review("ns/b", 200.0)  # the older entry for b is now stale
    assert [k for k, _ in store.due_for_review(150.0)] == ["ns/a"]
    store.request_replacement("ns/a", "test")  # queued for a new attempt: not reviewed meanwhile
    assert [k for k, _ in store.due_for_review(300.0)] == ["ns/b"]
    store.review_all_now()
    assert sorted(k for k, _ in store.due_for_review(0.0)) == ["ns/b", "ns/c"]
    store.forget("ns/c")
    assert [k for k, _ in store.due_for_review(1000.0)] == ["ns/b"]

def test_task_store_keeps_only_the_resource_version_of_finished_tasks() -> None:
    store = TaskStore()
    body = placed()
    body["metadata"]["resourceVersion"] = "10"
    store.observe(body)
    done = placed()
    done["metadata"]["resourceVersion"] = "12"
    done["status"]["phase"] = st.SUCCEEDED
    assert store.observe(done)
    assert store.get("ns/t") is None and len(store) == 1  # known, counted, no body kept
    assert list(store.placed_loads()) == [] and store.due_for_review(1e12) == []
    stale = placed()
    stale["metadata"]["resourceVersion"] = "11"  # an older event after the finish: ignored
    assert not store.observe(stale) and store.get("ns/t") is None and not store.is_pending("ns/t")
    store.forget("ns/t")
    assert len(store) == 0

def test_task_store_keeps_no_managed_fields_and_leaves_the_event_body_alone() -> None:
    store = TaskStore()
    body = make_task("m")
    body["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
    store.observe(body)
    kept = store.get("ns/m")
    assert kept is not None and "managedFields" not in kept["metadata"]
    assert kept["metadata"]["resourceVersion"] == body["metadata"]["resourceVersion"]
    assert kept["spec"] == body["spec"] and "managedFields" in body["metadata"]


def test_prometheus_reader_normalises_hostname_labels(monkeypatch) -> None:  # noqa: ANN001
    answers = {
        QUERIES["age_s"]: [
            {"metric": {"node": "edge-0"}, "value": [0, "12.5"]},
            {"metric": {}, "value": [0, "1"]},
        ],
        QUERIES["util_pct"]: [{"metric": {"node": "edge-0"}, "value": [0, "87"]}],
        QUERIES["fb_free_mib"]: [{"metric": {"node": "edge-0"}, "value": [0, "1024"]}],
        QUERIES["fb_used_mib"]: [],
    }
    sampler = PrometheusSampler("http://127.0.0.1:1", timeout_s=0.2)
    monkeypatch.setattr(sampler._client, "custom_query", lambda q: answers[q])
    reading = sampler.sample()
    assert reading.up and reading.nodes == {"edge-0": NodeSample(12.5, 87.0, 1024.0, None)}
    assert (
        "label_replace" in QUERIES["age_s"]
        and '"Hostname"' in QUERIES["age_s"]
        and '"hostname"' in QUERIES["age_s"]
    )
    down = PrometheusSampler("http://127.0.0.1:1", timeout_s=0.2).sample()
    assert not down.up and down.error


def test_node_metrics_age_series_follow_the_nodes_in_use() -> None:
    telemetry = Telemetry()
    telemetry.set_node_metrics_ages({"edge-0": 1.0, "edge-1": 80.0})
    telemetry.set_node_metrics_ages({"edge-0": 2.0})
    text = generate_latest(telemetry.registry).decode()
    assert 'aigc_scheduler_node_metrics_age_seconds{node="edge-0"} 2.0' in text
    assert 'node="edge-1"' not in text

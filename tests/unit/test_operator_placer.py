"""The placement loop against an in-memory API: guarded writes, fallback, failures, re-placement."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from aigc_api import conditions as cond
from aigc_api import status as st
from aigc_api.catalog import load_catalog
from aigc_api.clock import format_time, utcnow
from aigc_api.lease import WorkerStatus
from aigc_operator import placer as placer_mod
from aigc_operator.events import EventRecorder
from aigc_operator.gpu_metrics import MetricsReading, NodeSample
from aigc_operator.placer import Executors, Placer
from aigc_operator.policy_loader import load_policies
from aigc_operator.settings import OperatorSettings
from aigc_operator.store import NodeStore, TaskStore
from aigc_operator.telemetry import Telemetry
from aigc_policy.scenario import load_scenario
from operator_fakes import FakeApi, make_node, make_task

REPO = Path(__file__).resolve().parents[2]
PERF = load_scenario(str(REPO / "manifests" / "perf-profile.yaml")).perf
CATALOG = load_catalog(REPO / "manifests" / "model-catalog.yaml")


def make_placer(api: FakeApi, policy: str = "eft", prometheus: bool = True, **overrides: object) -> Placer:
    options: dict[str, object] = {"require_worker": False, "metrics_port": 0, **overrides}
    settings = OperatorSettings(
        policy=policy, prometheus_url="http://prometheus:9090" if prometheus else None, **options
    )
    executors = Executors(api=ThreadPoolExecutor(2), decide=ThreadPoolExecutor(1))
    nodes = NodeStore(settings.gpu_label_pair, settings.gpu_class_label)
    for name, cls in (("edge-0", "a100"), ("edge-1", "l4"), ("edge-2", "jetson-orin")):
        nodes.observe(make_node(name, cls))
    placer = Placer(
        settings,
        TaskStore(),
        nodes,
        api,  # type: ignore[arg-type]
        executors,
        Telemetry(),
        EventRecorder(api.post_event, executors.api),
        load_policies(policy, "eft"),
        PERF,
        CATALOG,
    )
    placer.reading = MetricsReading(
        up=True,
        taken_at=time.monotonic(),
        nodes={n: NodeSample(age_s=3.0) for n in ("edge-0", "edge-1", "edge-2")},
    )
    return placer


def submit(api: FakeApi, placer: Placer, body: dict) -> str:
    placer.tasks.observe(api.add(body))
    return f"{body['metadata']['namespace']}/{body['metadata']['name']}"


def run(coro):  # noqa: ANN001, ANN201
    return asyncio.run(coro)


async def batch(placer: Placer) -> bool:
    """One batch with its writes finished (the loop itself does not wait for them)."""
    more = await placer.place_batch()
    await placer.drain_writes()
    return more


def counter(placer: Placer, name: str, **labels: str) -> float:
    return placer.telemetry.registry.get_sample_value(name, labels) or 0.0


def test_places_each_task_once_with_policy_record() -> None:
    api = FakeApi()
    placer = make_placer(api)
    keys = [submit(api, placer, make_task(f"t{i}", model="sd-turbo", steps=4)) for i in range(5)]
    while run(batch(placer)):
        pass
    for key in keys:
        body = api.objects[key]
        placement = st.parse_placement(body)
        assert placement is not None and placement.attempt == 1 and placement.policy == "eft"
        assert placement.fallback_reason is None and placement.inputs_age_millis >= 3000
        assert cond.condition_is(body["status"]["conditions"], cond.METRICS_AVAILABLE, cond.TRUE)
    assert len(api.patches) == 5 and placer.tasks.pending_count == 0
    assert counter(placer, "aigc_scheduler_schedule_attempts_total", result="scheduled") == 5


def test_shadow_load_spreads_a_burst() -> None:
    api = FakeApi()
    placer = make_placer(api)
    for i in range(12):
        submit(api, placer, make_task(f"t{i}", model="sd15", steps=50))
    run(batch(placer))
    used = {st.parse_placement(b).nodes for b in api.objects.values()}
    assert len({n for gang in used for n in gang}) >= 2


def test_node_view_is_reused_between_batches_and_rebuilt_when_capacity_frees(monkeypatch) -> None:  # noqa: ANN001
    builds: list[int] = []
    real_build = placer_mod.build_node_states

    def counting_build(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        builds.append(1)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(placer_mod, "build_node_states", counting_build)
    monkeypatch.setattr(placer_mod, "VIEW_REFRESH_S", 1000.0)
    monkeypatch.setattr(placer_mod, "VIEW_FREED_S", 0.0)
    api = FakeApi()
    placer = make_placer(api)
    for i in range(6):  # one batch each: the second to sixth reuse the view the previous one left
        submit(api, placer, make_task(f"t{i}", model="sd15", steps=50))
        run(batch(placer))
    assert len(builds) == 1
    used = [st.parse_placement(b).nodes for b in api.objects.values()]
    assert len({n for gang in used for n in gang}) >= 2  # the reused view still saw each placement
    placer.capacity_freed()
    submit(api, placer, make_task("t6", model="sd15", steps=50))
    run(batch(placer))
    assert len(builds) == 2

def test_conflict_rereads_and_never_double_places() -> None:
    api = FakeApi()
    placer = make_placer(api)
    key = submit(api, placer, make_task("t0"))
    api.conflict_next.add(key)
    run(batch(placer))
    assert api.patches == [] and placer.tasks.is_pending(key)
    assert counter(placer, "aigc_scheduler_schedule_attempts_total", result="conflict") == 1
    run(batch(placer))
    assert [k for k, _ in api.patches] == [key]
    assert st.parse_placement(api.objects[key]).attempt == 1
    # A stale copy of the task (older resourceVersion) cannot be placed again.
    stale = make_task("t0")
    stale["metadata"]["resourceVersion"] = "1"
    assert not placer.tasks.observe(stale)


def test_unknown_model_fails_fast() -> None:
    api = FakeApi()
    placer = make_placer(api)
    key = submit(api, placer, make_task("t0", model="no-such-model"))
    run(batch(placer))
    body = api.objects[key]
    assert st.phase_of(body) == st.FAILED and body["status"]["failure"]["reason"] == st.UNKNOWN_MODEL


def test_prometheus_down_falls_back_and_says_so() -> None:
    api = FakeApi()
    placer = make_placer(api)
    placer.reading = MetricsReading(up=False, taken_at=time.monotonic(), error="ConnectionError: refused")
    key = submit(api, placer, make_task("t0"))
    run(batch(placer))
    body = api.objects[key]
    assert st.parse_placement(body).fallback_reason == "PrometheusUnavailable"
    metrics = cond.find_condition(body["status"]["conditions"], cond.METRICS_AVAILABLE)
    assert metrics["status"] == cond.FALSE and metrics["reason"] == "PrometheusUnavailable"
    assert counter(placer, "aigc_scheduler_fallback_decisions_total", reason="PrometheusUnavailable") == 1


def test_stale_everywhere_falls_back_stale_node_is_flagged() -> None:
    api = FakeApi()
    placer = make_placer(api)
    placer.reading = MetricsReading(
        up=True, taken_at=time.monotonic(), nodes={"edge-0": NodeSample(age_s=600)}
    )
    submit(api, placer, make_task("t0"))
    run(batch(placer))
    body = next(iter(api.objects.values()))
    assert st.parse_placement(body).fallback_reason == "MetricsStale"
    placer.reading = MetricsReading(
        up=True,
        taken_at=time.monotonic(),
        nodes={"edge-0": NodeSample(age_s=600), "edge-1": NodeSample(age_s=1)},
    )
    key = submit(api, placer, make_task("t1", model="sdxl", width=1024, height=1024, steps=20, gangSizes=[1]))
    run(batch(placer))
    body = api.objects[key]
    placement = st.parse_placement(body)
    assert placement.fallback_reason is None
    metrics = cond.find_condition(body["status"]["conditions"], cond.METRICS_AVAILABLE)
    assert (metrics["status"] == cond.FALSE) == ("edge-0" in placement.nodes)


def test_missing_policy_uses_fallback() -> None:
    api = FakeApi()
    placer = make_placer(api, policy="eat:/nonexistent/policy.onnx")
    assert placer.policies.primary is None and placer.policies.error
    key = submit(api, placer, make_task("t0"))
    run(batch(placer))
    assert st.parse_placement(api.objects[key]).fallback_reason == "PolicyUnavailable"


def test_a_cluster_the_policy_cannot_encode_goes_to_the_fallback_until_it_can() -> None:
    """The shipped EAT encoder takes 2..64 nodes. With one node Ready (workers still starting, the
    rest lost), its batches raised and the tasks they had taken were never placed (CI, stop 20)."""
    api = FakeApi()
    placer = make_placer(api, policy="eat")
    for name, cls in (("edge-1", "l4"), ("edge-2", "jetson-orin")):
        placer.nodes.observe(make_node(name, cls, ready=False))
    keys = [submit(api, placer, make_task(f"t{i}", model="sd-turbo", steps=4)) for i in range(2)]
    while run(batch(placer)):
        pass
    for key in keys:
        placement = st.parse_placement(api.objects[key])
        assert placement.nodes == ("edge-0",) and placement.policy == "eft"
        assert placement.fallback_reason == "PolicyFailed"
    assert counter(placer, "aigc_scheduler_policy_failures_total", policy="eat") == 1
    assert placer.fallback_reason_now() == "PolicyFailed"

    for name, cls in (("edge-1", "l4"), ("edge-2", "jetson-orin")):
        placer.nodes.observe(make_node(name, cls))
    key = submit(api, placer, make_task("t2", model="sd-turbo", steps=4))
    run(batch(placer))
    placement = st.parse_placement(api.objects[key])
    assert placement.policy == "eat" and placement.fallback_reason is None
    assert placer.fallback_reason_now() is None


def test_a_batch_no_policy_can_decide_goes_back_to_the_queue(monkeypatch) -> None:  # noqa: ANN001
    api = FakeApi()
    placer = make_placer(api, policy="eat:/nonexistent/policy.onnx")  # the fallback decides every batch

    def broken(snap):  # noqa: ANN001, ANN202
        raise RuntimeError("injected")

    monkeypatch.setattr(placer.policies.fallback.scheduler, "decide", broken)
    keys = [submit(api, placer, make_task(f"t{i}", model="sd-turbo", steps=4)) for i in range(2)]
    with pytest.raises(RuntimeError, match="injected"):
        run(placer.place_batch())
    assert placer.tasks.pending_count == 2 and placer.tasks.has_takeable(time.time())
    monkeypatch.undo()
    while run(batch(placer)):
        pass
    assert all(st.parse_placement(api.objects[key]) is not None for key in keys)


def test_unplaceable_task_does_not_block_the_queue() -> None:
    """Runnable by the profile (sdxl 1024 k=4 on a100/l4) but not on these 3 nodes: it waits."""
    api = FakeApi()
    placer = make_placer(api, batch_size=1)
    blocked = submit(
        api, placer, make_task("a-big", model="sdxl", width=1024, height=1024, steps=20, gangSizes=[4])
    )
    ok = submit(api, placer, make_task("b-ok", created="2026-01-02T03:04:06Z"))
    while run(batch(placer)):
        pass
    assert st.parse_placement(api.objects[ok]) is not None
    blocked_body = api.objects[blocked]
    assert (
        cond.find_condition(blocked_body["status"]["conditions"], cond.SCHEDULED)["reason"] == "Unschedulable"
    )
    assert st.phase_of(blocked_body) == st.PENDING
    assert placer.tasks.is_pending(blocked)


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ({"gangSizes": [8]}, "no GPU class of the perf profile (a100, l4, jetson-orin) supports model sdxl"),
        ({"gangSizes": [3]}, "gang size(s) [3] are not among the supported 1,2,4,8"),
    ],
)
def test_task_no_gpu_class_can_ever_run_fails_fast(spec: dict, why: str) -> None:
    api = FakeApi()
    placer = make_placer(api)
    doomed = submit(api, placer, make_task("doomed", model="sdxl", steps=20, **spec))
    ok = submit(api, placer, make_task("ok", created="2026-01-02T03:04:06Z"))
    while run(batch(placer)):
        pass
    run(placer.drain_writes())
    body = api.objects[doomed]
    failure = body["status"]["failure"]
    assert st.phase_of(body) == st.FAILED and failure["reason"] == st.UNSCHEDULABLE, body["status"]
    assert why in failure["message"] and not failure["retryable"]
    assert cond.find_condition(body["status"]["conditions"], cond.SCHEDULED)["reason"] == st.UNSCHEDULABLE
    assert st.parse_placement(api.objects[ok]) is not None and not placer.tasks.is_pending(doomed)


def _claim(api: FakeApi, key: str, rank: int, when: str | None = None) -> None:
    body = api.objects[key]
    patch = st.claim_patch(
        body, attempt=st.parse_placement(body).attempt, rank=rank, holder=f"w{rank}", now=utcnow()
    )
    if when:
        patch["status"]["claims"][-1]["heartbeatTime"] = when
    api.patch_task_status(*key.split("/"), patch)


def test_expired_claim_is_replaced_then_fails_after_max_attempts() -> None:
    api = FakeApi()
    placer = make_placer(api, max_attempts=2, heartbeat_ttl_s=30.0)
    key = submit(api, placer, make_task("t0"))
    run(batch(placer))
    first = st.parse_placement(api.objects[key]).nodes
    old = format_time(utcnow() - timedelta(seconds=120))
    _claim(api, key, 0, old)
    placer.tasks.observe(api.get_task("ns", "t0"))
    run(placer.review())
    assert placer.tasks.replacement_reason(key).startswith(st.CLAIM_EXPIRED)
    run(batch(placer))
    body = api.objects[key]
    assert st.parse_placement(body).attempt == 2 and body["status"]["claims"] == []
    # No Lease known (heartbeat fallback): the node whose holder went silent is avoided for a TTL.
    assert first[0] not in st.parse_placement(body).nodes
    assert "ClaimExpired" in cond.find_condition(body["status"]["conditions"], cond.SCHEDULED)["message"]
    _claim(api, key, 0, old)
    placer.tasks.observe(api.get_task("ns", "t0"))
    run(placer.review())
    body = api.objects[key]
    assert st.phase_of(body) == st.FAILED and body["status"]["failure"]["reason"] == st.MAX_ATTEMPTS_EXCEEDED


def _leases(holders: dict[str, str], renewed_ago_s: float = 0.0, seconds: int = 6) -> dict:
    when = utcnow() - timedelta(seconds=renewed_ago_s)
    return {n: WorkerStatus(n, h, "", when, lease_seconds=seconds) for n, h in holders.items()}


def test_claims_live_on_their_workers_lease_not_on_per_claim_heartbeats() -> None:
    api = FakeApi()
    placer = make_placer(api, require_worker=True, heartbeat_ttl_s=10.0)
    holders = {"edge-0": "w-edge-0", "edge-1": "w-edge-1", "edge-2": "w-edge-2"}
    placer.workers = _leases(holders)
    key = submit(api, placer, make_task("t0"))
    run(batch(placer))
    node = st.parse_placement(api.objects[key]).nodes[0]
    body = api.objects[key]
    claim = st.claim_patch(body, attempt=1, rank=0, holder=holders[node], now=utcnow())
    claim["status"]["claims"][-1]["heartbeatTime"] = format_time(utcnow() - timedelta(minutes=5))
    placer.tasks.observe(api.patch_task_status("ns", "t0", claim))
    run(placer.review())
    assert placer.tasks.replacement_reason(key) is None  # stale heartbeat, live Lease: kept
    # The worker dies: its Lease goes stale, the claim expires with it, and the task never goes
    # back to that node, whose Lease still names the dead holder.
    placer.workers = {**placer.workers, **_leases({node: holders[node]}, renewed_ago_s=7.0)}
    placer.tasks.review_all_now()
    run(placer.review())
    assert placer.tasks.replacement_reason(key).startswith(st.CLAIM_EXPIRED)
    run(batch(placer))
    second = st.parse_placement(api.objects[key])
    assert second.attempt == 2 and node not in second.nodes


def test_lost_node_replaces_and_worker_failure_is_honoured() -> None:
    api = FakeApi()
    placer = make_placer(api)
    key = submit(api, placer, make_task("t0"))
    run(batch(placer))
    first = st.parse_placement(api.objects[key]).nodes
    placer.nodes.observe(make_node(first[0], "a100" if first[0] == "edge-0" else "l4", ready=False))
    placer.tasks.review_all_now()
    run(placer.review())
    run(batch(placer))
    second = st.parse_placement(api.objects[key])
    assert second.attempt == 2 and first[0] not in second.nodes
    body = api.objects[key]
    fail = st.attempt_failed_patch(
        body, attempt=2, reason="BadPrompt", message="nsfw", now=utcnow(), retryable=False
    )
    placer.tasks.observe(api.patch_task_status("ns", "t0", fail))
    run(placer.review())
    assert st.phase_of(api.objects[key]) == st.FAILED


@pytest.mark.parametrize("require_worker", [True, False])
def test_require_worker(require_worker: bool) -> None:
    api = FakeApi()
    placer = make_placer(api, require_worker=require_worker)
    key = submit(api, placer, make_task("t0"))
    run(batch(placer))
    assert (st.parse_placement(api.objects[key]) is None) == require_worker

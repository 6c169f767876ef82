"""The worker loop against an in-memory API: claims, results, every failure path, restarts.

Each test drives the loop by hand (resync, accept, run) so the order of events is deterministic.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
import torch
from aigc_api import status as st
from aigc_api.catalog import load_catalog
from aigc_worker.cache import ModelCache
from aigc_worker.execution import Executor, GangSettings, Outcome
from aigc_worker.metrics import WorkerMetrics
from aigc_worker.parallel.rendezvous import open_store
from aigc_worker.pipelines import Placement, load_model
from aigc_worker.results import DirectoryStore
from aigc_worker.service import WORKER_RESTARTED, ServiceConfig, Worker
from aigc_worker.tinymodels import CATALOG_FILE, tiny_model_name, write_tiny_models
from PIL import Image
from worker_fakes import ApiError, FakeTasks, task_spec

NS = "jobs"
SD15 = tiny_model_name("sd15")
TURBO = tiny_model_name("sd-turbo")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    write_tiny_models(out, kinds=("sd15", "sd-turbo"))
    return out


def make_worker(
    api: FakeTasks,
    models_dir: Path,
    results: Path,
    node: str = "edge-0",
    holder: str | None = None,
    gang_timeout_s: float = 3.0,
    catalog_path: Path | None = None,
) -> Worker:
    catalog = load_catalog(catalog_path or models_dir / CATALOG_FILE)
    cache = ModelCache(1.0, lambda entry: load_model(entry, Placement()))
    store = open_store("127.0.0.1", gang_timeout_s)
    gang = GangSettings("gloo", gang_timeout_s, store)
    executor = Executor(catalog, cache, DirectoryStore(results), WorkerMetrics(), gang, node)
    config = ServiceConfig(
        node=node,
        holder=holder or f"pod-{node}",
        address="127.0.0.1:9200",
        rendezvous=f"127.0.0.1:{store.port}",
        lease_namespace="aigc-system",
        rendezvous_timeout_s=gang_timeout_s,
    )
    worker = Worker(api, executor, config, on_queue=lambda _n: None)
    gang.wait_for_rendezvous = worker.wait_for_rendezvous
    return worker


def serve_once(worker: Worker) -> None:
    worker.resync()
    worker.accept_new()
    while worker.run_next():
        pass


def submit(api: FakeTasks, name: str, model: str, nodes: tuple[str, ...] = ("edge-0",), **spec) -> None:
    api.create(NS, name, task_spec(model, **spec))
    api.place(NS, name, nodes, steps=spec.get("steps", 4))


def status(api: FakeTasks, name: str) -> dict:
    return api.get(NS, name)["status"]


def test_task_succeeds_with_png_result_and_worker_lease(models_dir: Path, tmp_path: Path) -> None:
    api = FakeTasks()
    submit(api, "t1", SD15)
    worker = make_worker(api, models_dir, tmp_path / "results")
    serve_once(worker)
    result = status(api, "t1")
    assert result["phase"] == st.SUCCEEDED and result["claims"][0]["holder"] == "pod-edge-0"
    path = Path(result["result"]["uri"].removeprefix("file://"))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == result["result"]["sha256"]
    meta = Image.open(path).text
    assert meta["model"] == SD15 and meta["seed"] == "7" and '"nodes": ["edge-0"]' in meta["placement"]
    assert {"startedTime", "finishedTime", "runMillis"} <= set(result["timings"])
    worker.publish_lease()
    lease = api.leases["aigc-worker-edge-0"]
    assert SD15 in lease["metadata"]["annotations"]["aigc.edge.io/resident-models"]


def test_failures_have_reasons_and_the_worker_keeps_serving(models_dir: Path, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt"
    corrupt_catalog = tmp_path / "catalog.yaml"
    text = (models_dir / CATALOG_FILE).read_text()
    import shutil

    shutil.copytree(models_dir / SD15, corrupt)
    for weights in corrupt.rglob("*.safetensors"):
        weights.write_bytes(b"not a safetensors file")
    corrupt_catalog.write_text(
        text + f"- name: broken\n  source: file://{corrupt}\n  pipeline: sd15\n  vramGb: 0.1\n"
    )

    api = FakeTasks()
    worker = make_worker(api, models_dir, tmp_path / "results", catalog_path=corrupt_catalog)
    submit(api, "unknown", "no-such-model")
    submit(api, "corrupt", "broken")
    serve_once(worker)
    submit(api, "oom", SD15)
    unet = worker.executor.cache.get(worker.executor.catalog.get(SD15))[0].denoiser

    def out_of_memory(*_args) -> None:  # stand-in for a real CUDA OOM during generation
        raise torch.OutOfMemoryError("CUDA out of memory (stand-in)")

    hook = unet.register_forward_pre_hook(out_of_memory)
    serve_once(worker)
    hook.remove()
    submit(api, "after", SD15)
    serve_once(worker)

    reasons = {
        name: (status(api, name).get("failure") or {}).get("reason") for name in ("unknown", "corrupt", "oom")
    }
    assert reasons == {"unknown": st.UNKNOWN_MODEL, "corrupt": st.MODEL_LOAD_FAILED, "oom": st.OUT_OF_MEMORY}
    assert status(api, "oom")["failure"]["retryable"] is True
    assert not worker.executor.cache.is_resident(SD15) or status(api, "after")["phase"] == st.SUCCEEDED
    assert status(api, "after")["phase"] == st.SUCCEEDED


def test_a_rank_is_claimed_by_one_worker_only(models_dir: Path, tmp_path: Path) -> None:
    api = FakeTasks()
    submit(api, "t", TURBO)
    first = make_worker(api, models_dir, tmp_path / "a", holder="pod-a")
    second = make_worker(api, models_dir, tmp_path / "b", holder="pod-b")  # e.g. a replacement pod
    for worker in (first, second):
        worker.resync()
    threads = [threading.Thread(target=w.accept_new) for w in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claims = status(api, "t")["claims"]
    assert len(claims) == 1
    assert len(first._held) + len(second._held) == 1


def test_missing_gang_member_fails_the_attempt_cleanly(models_dir: Path, tmp_path: Path) -> None:
    api = FakeTasks()
    submit(api, "as-rank0", SD15, nodes=("edge-0", "edge-9"))
    submit(api, "as-rank1", SD15, nodes=("edge-9", "edge-0"))
    serve_once(make_worker(api, models_dir, tmp_path / "r", gang_timeout_s=2.0))
    for name in ("as-rank0", "as-rank1"):
        failure = status(api, name)["failure"]
        assert failure["reason"] == st.RENDEZVOUS_FAILED and failure["retryable"] is True, failure


def test_restarted_worker_resumes_a_solo_rank_and_fails_a_gang_rank(models_dir: Path, tmp_path: Path) -> None:
    api = FakeTasks()
    submit(api, "solo", TURBO)
    submit(api, "gang", TURBO, nodes=("edge-0", "edge-1"))
    killed = make_worker(api, models_dir, tmp_path / "r")
    killed.resync()
    killed.accept_new()  # claimed both, then the process dies before running them
    assert {c["holder"] for c in status(api, "solo")["claims"] + status(api, "gang")["claims"]} == {
        "pod-edge-0"
    }

    restarted = make_worker(api, models_dir, tmp_path / "r")  # same pod name, new process
    restarted.recover()
    serve_once(restarted)
    assert status(api, "solo")["phase"] == st.SUCCEEDED
    assert status(api, "gang")["failure"]["reason"] == WORKER_RESTARTED


class _IdleExecutor:
    def run(self, run):  # noqa: ANN001, ANN201
        raise AssertionError("not run in this test")

    def resident_models(self) -> list[str]:
        return []


class _CountingTasks(FakeTasks):
    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, int] = {}

    def get(self, namespace: str, name: str) -> dict:
        self.calls["get"] = self.calls.get("get", 0) + 1
        return super().get(namespace, name)

    def json_patch_status(self, namespace: str, name: str, ops: list) -> dict:
        self.calls["json_patch"] = self.calls.get("json_patch", 0) + 1
        return super().json_patch_status(namespace, name, ops)


def test_heartbeat_renews_the_lease_not_every_queued_claim() -> None:
    """Claims live on the worker Lease (aigc_api.status.claim_deadline): a heartbeat period costs
    O(1) API calls however many solo ranks are queued; queued gang ranks, watched by their peers,
    are still renewed. The Lease lasts ~3 heartbeat periods."""
    api = _CountingTasks()
    config = ServiceConfig(
        node="edge-0",
        holder="pod-edge-0",
        address="a:1",
        rendezvous="127.0.0.1:1",
        lease_namespace="aigc-system",
        heartbeat_s=2.0,
    )
    worker = Worker(api, _IdleExecutor(), config, on_queue=lambda _n: None)  # type: ignore[arg-type]
    for i in range(20):
        submit(api, f"solo-{i}", SD15)
    submit(api, "gang", SD15, nodes=("edge-0", "edge-1"))
    worker.resync()
    worker.accept_new()
    assert len(worker._held) == 21
    api.calls.clear()
    worker.heartbeat()
    assert api.calls == {"get": 1, "json_patch": 1}  # the gang rank only
    lease = api.leases["aigc-worker-edge-0"]
    assert lease["spec"]["leaseDurationSeconds"] == 6 and lease["spec"]["holderIdentity"] == "pod-edge-0"
    assert lease["metadata"]["annotations"]["aigc.edge.io/queue-length"] == "21"
    # A queued rank re-placed elsewhere is dropped from the queue without any API call.
    api.place(NS, "solo-3", ("edge-1",), steps=4, attempt=2)
    worker.resync()
    api.calls.clear()
    worker.heartbeat()
    assert len(worker._held) == 20 and api.calls == {"get": 1, "json_patch": 1}
    # A claim of ours this incarnation never took on (its write's answer was lost) is taken on,
    # since our Lease keeps it alive: it must run, not hang.
    submit(api, "orphan", SD15)
    body = api.get(NS, "orphan")
    api.merge_patch_status(
        NS,
        "orphan",
        st.claim_patch(
            body, attempt=1, rank=0, holder="pod-edge-0", now=st.parse_placement(body).decision_time
        ),
    )
    worker.resync()
    worker.accept_new()
    assert ("jobs", "orphan") in worker._held


class _FlakyTasks(FakeTasks):
    """Reads fail while `unavailable` calls are left: an API server down or refusing (403)."""

    def __init__(self) -> None:
        super().__init__()
        self.unavailable = 0

    def get(self, namespace: str, name: str) -> dict:
        if self.unavailable:
            self.unavailable -= 1
            raise ApiError(403, "RBAC warming up")
        return super().get(namespace, name)


class _OutageDuringRun:
    """Fails its rank, and the API server goes away while the rank runs."""

    def __init__(self, api: _FlakyTasks) -> None:
        self.api = api

    def run(self, run):  # noqa: ANN001, ANN201
        self.api.unavailable = 2
        return Outcome(st.WORKER_ERROR, "stand-in failure", retryable=False)

    def resident_models(self) -> list[str]:
        return []


def test_api_outage_neither_drops_a_queued_rank_nor_loses_its_outcome() -> None:
    """Finding 7: a held rank whose pre-run read fails stays queued (it was dropped, and with its
    claim alive on our Lease the task hung); an outcome write is retried until it lands."""
    api = _FlakyTasks()
    config = ServiceConfig("edge-0", "pod-edge-0", "a:1", None, "aigc-system", heartbeat_s=2.0)
    worker = Worker(api, _OutageDuringRun(api), config, on_queue=lambda _n: None)  # type: ignore[arg-type]
    submit(api, "t0", SD15)
    worker.resync()
    worker.accept_new()
    api.unavailable = 1
    assert not worker.run_next()
    assert ("jobs", "t0") in worker._held
    assert worker.run_next()  # the outcome write fails twice on its first read, then lands
    assert status(api, "t0")["failure"]["reason"] == st.WORKER_ERROR


def test_ranks_are_taken_on_in_placement_order_not_listing_order(tmp_path, models_dir) -> None:
    """An idle worker starts the first rank it takes on; taking a later gang's rank first could
    start it ahead of an earlier gang on the same nodes and deadlock the two gangs."""
    api = FakeTasks()
    api.create(NS, "placed-second", task_spec(SD15))
    api.create(NS, "placed-first", task_spec(SD15))  # listed after, placed before
    api.place(NS, "placed-first", ("edge-0", "edge-1"), steps=4)
    api.place(NS, "placed-second", ("edge-1", "edge-0"), steps=4)
    worker = make_worker(api, models_dir, tmp_path, node="edge-0")
    taken: list[str] = []
    claim = worker.claims.claim
    worker.claims.claim = lambda namespace, name, *args: taken.append(name) or claim(namespace, name, *args)
    worker.resync()
    worker.accept_new()
    assert taken == ["placed-first", "placed-second"]

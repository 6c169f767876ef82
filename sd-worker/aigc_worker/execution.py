"""Running one claimed rank of a task: model from the warm cache, alone or in a gang, image stored.

Every way a rank can fail ends as an `Outcome` with a CamelCase reason, never as an exception out
of `Executor.run`, so the worker reports it and goes on serving the next task.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch
from aigc_api import status as st
from aigc_api.catalog import ModelCatalog
from aigc_api.spec import GenerationRequest
from torch.distributed import TCPStore

from aigc_worker.cache import ModelCache, ModelTooLarge
from aigc_worker.metrics import WorkerMetrics
from aigc_worker.parallel.layout import GangLayoutError
from aigc_worker.parallel.rendezvous import GANG_MEMBER_LOST, GangError, is_collective_failure, joined_gang
from aigc_worker.pipelines import ImageJob, LoadedModel, ModelLoadError, gang_layout, generate
from aigc_worker.results import ResultStore, StoredImage, encode_png, result_key

log = logging.getLogger(__name__)

MODEL_TOO_LARGE = "ModelTooLarge"
UNSUPPORTED_GANG = "UnsupportedGangLayout"


@dataclass(frozen=True, slots=True)
class RankRun:
    """One rank of one placement attempt, as the worker claimed it."""

    namespace: str
    name: str
    uid: str
    attempt: int
    rank: int
    nodes: tuple[str, ...]
    steps: int
    request: GenerationRequest
    policy: str = ""

    @property
    def gang_size(self) -> int:
        return len(self.nodes)

    @property
    def seed(self) -> int:
        """The spec's seed, or one derived from the task's uid (stable across attempts)."""
        if self.request.seed is not None:
            return self.request.seed
        return int.from_bytes(hashlib.sha256(self.uid.encode()).digest()[:4], "big")


@dataclass
class Outcome:
    reason: str | None = None  # None: success
    message: str = ""
    retryable: bool | None = None  # None: aigc_api's default for the reason
    result: StoredImage | None = None
    load_seconds: float | None = None
    step_seconds: float | None = None
    run_seconds: float = 0.0

    @property
    def succeeded(self) -> bool:
        return self.reason is None


@dataclass
class GangSettings:
    backend: str = "gloo"
    timeout_s: float = 120.0
    store: TCPStore | None = None  # this worker's own store, used when it is rank 0
    # Blocks until rank 0's host:port is published (or raises GangError) for ranks > 0.
    wait_for_rendezvous: Callable[[RankRun], str] = field(default=lambda run: "")
    # None while the attempt is current and every member's claim is alive, else why not. Unset:
    # members wait for each other at most `timeout_s`.
    gang_problem: Callable[[RankRun], str | None] | None = None


class Executor:
    def __init__(
        self,
        catalog: ModelCatalog,
        cache: ModelCache[LoadedModel],
        store: ResultStore,
        metrics: WorkerMetrics,
        gang: GangSettings,
        node: str,
    ) -> None:
        self.catalog = catalog
        self.cache = cache
        self.store = store
        self.metrics = metrics
        self.gang = gang
        self.node = node

    def resident_models(self) -> list[str]:
        return self.cache.resident

    def run(self, run: RankRun) -> Outcome:
        start = time.perf_counter()
        try:
            outcome = self._run(run)
        except torch.OutOfMemoryError as exc:
            self._free_memory(run.request.model)
            outcome = Outcome(st.OUT_OF_MEMORY, f"out of memory on {self.node}: {exc}")
        except ModelLoadError as exc:
            outcome = Outcome(st.MODEL_LOAD_FAILED, str(exc))
        except ModelTooLarge as exc:
            outcome = Outcome(MODEL_TOO_LARGE, str(exc), retryable=True)
        except GangLayoutError as exc:
            outcome = Outcome(UNSUPPORTED_GANG, str(exc), retryable=False)
        except GangError as exc:
            retryable = True if exc.reason == GANG_MEMBER_LOST else None
            outcome = Outcome(exc.reason, str(exc), retryable=retryable)
        except Exception as exc:
            log.exception("rank %d of %s/%s failed", run.rank, run.namespace, run.name)
            reason = GANG_MEMBER_LOST if is_collective_failure(exc) else st.WORKER_ERROR
            outcome = Outcome(reason, f"{type(exc).__name__}: {exc}", retryable=True)
        outcome.run_seconds = time.perf_counter() - start
        self.metrics.set_resident(self.cache.resident, list(self.catalog.names))
        self.metrics.tasks.labels("succeeded" if outcome.succeeded else "failed").inc()
        if not outcome.succeeded:
            self.metrics.failures.labels(outcome.reason).inc()
        return outcome

    def _run(self, run: RankRun) -> Outcome:
        entry = self.catalog.get(run.request.model)
        if entry is None:
            return Outcome(st.UNKNOWN_MODEL, f"model {run.request.model!r} is not in this worker's catalog")
        self.metrics.busy.set(1)
        try:
            model, load_seconds = self.cache.get(entry)
            if load_seconds is not None:
                self.metrics.load_seconds.labels(entry.name).observe(load_seconds)
            job = ImageJob(
                prompt=run.request.prompt,
                negative_prompt=run.request.negative_prompt,
                width=run.request.width,
                height=run.request.height,
                steps=run.steps,
                seed=run.seed,
                guidance_scale=run.request.guidance_scale,
            )
            if run.gang_size == 1:
                generated = generate(model, job)
            else:
                generated = self._generate_in_gang(run, model, job)
        finally:
            self.metrics.busy.set(0)
        self.metrics.step_seconds.labels(entry.name, f"{job.width}x{job.height}", str(run.gang_size)).observe(
            generated.step_seconds
        )
        outcome = Outcome(load_seconds=load_seconds, step_seconds=generated.step_seconds)
        if generated.image is not None:
            metadata = {
                "prompt": job.prompt,
                "negative_prompt": job.negative_prompt,
                "seed": job.seed,
                "steps": job.steps,
                "guidance_scale": model.kind.default_guidance
                if job.guidance_scale is None
                else job.guidance_scale,
                "model": entry.name,
                "task": f"{run.namespace}/{run.name}",
                "placement": {"attempt": run.attempt, "nodes": list(run.nodes), "policy": run.policy},
            }
            png = encode_png(generated.image, metadata)
            outcome.result = self.store.put(result_key(run.namespace, run.name, run.attempt), png)
        return outcome

    def _generate_in_gang(self, run: RankRun, model: LoadedModel, job: ImageJob):  # noqa: ANN202
        layout = gang_layout(model, job, run.gang_size, run.rank)
        own_store = self.gang.store if run.rank == 0 else None
        if run.rank == 0 and own_store is None:
            raise GangError(st.RENDEZVOUS_FAILED, "rank 0 has no rendezvous store")
        address = "" if run.rank == 0 else self.gang.wait_for_rendezvous(run)
        namespace = f"{run.uid}/{run.attempt}"
        with joined_gang(
            layout,
            own_store,
            address,
            namespace,
            self.gang.backend,
            self.gang.timeout_s,
            still_wanted=None if self.gang.gang_problem is None else partial(self.gang.gang_problem, run),
        ) as gang:
            return generate(model, job, gang)

    def _free_memory(self, model: str) -> None:
        if self.cache.is_resident(model):
            self.cache.evict(model)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

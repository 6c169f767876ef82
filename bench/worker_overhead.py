"""Worker overhead: a warm task through the whole worker loop vs the same diffusers call directly.

    PYTHONPATH=policy:operator:sd-worker python bench/worker_overhead.py [--repeats 15] [--steps 4] [--size 64]

The worker path is everything a real task pays on the node: seeing the placement, claiming the
rank, marking Running, the warm-cache lookup, generation (with its step-timing callback), PNG
encoding with metadata, the atomic result write, metrics and the Succeeded patch. The API server is
the in-memory one of the tests, so network latency to a real API server is not counted. Runs are
interleaved (direct, worker, direct, ...) so load from other processes hits both alike; the report
is the median of per-pair ratios. Target: <= 1.05.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from aigc_api.catalog import load_catalog  # noqa: E402
from aigc_worker.cache import ModelCache  # noqa: E402
from aigc_worker.execution import Executor, GangSettings  # noqa: E402
from aigc_worker.metrics import WorkerMetrics  # noqa: E402
from aigc_worker.pipelines import Placement, load_model  # noqa: E402
from aigc_worker.results import DirectoryStore  # noqa: E402
from aigc_worker.service import ServiceConfig, Worker  # noqa: E402
from aigc_worker.tinymodels import CATALOG_FILE, tiny_model_name, write_tiny_models  # noqa: E402
from worker_fakes import FakeTasks, task_spec  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--kind", default="sd15")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="worker-overhead-"))
    write_tiny_models(work / "models", kinds=(args.kind,))
    catalog = load_catalog(work / "models" / CATALOG_FILE)
    name = tiny_model_name(args.kind)
    cache = ModelCache(1.0, lambda entry: load_model(entry, Placement()))
    executor = Executor(
        catalog, cache, DirectoryStore(work / "results"), WorkerMetrics(), GangSettings(), "edge-0"
    )
    api = FakeTasks()
    config = ServiceConfig("edge-0", "pod-edge-0", "127.0.0.1:9200", None, "aigc-system")
    worker = Worker(api, executor, config, on_queue=lambda _n: None)
    direct_pipeline = load_model(catalog.get(name), Placement()).pipeline  # its own copy, equally warm

    def direct() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            direct_pipeline(
                prompt="a photo of the cat",
                width=args.size,
                height=args.size,
                num_inference_steps=args.steps,
                guidance_scale=7.5,
                generator=torch.Generator().manual_seed(7),
                output_type="np",
            )
        return time.perf_counter() - start

    def through_worker(index: int) -> float:
        task = f"bench-{index}"
        api.create("bench", task, task_spec(name, steps=args.steps, size=args.size))
        api.place("bench", task, ("edge-0",), steps=args.steps)
        start = time.perf_counter()
        worker.resync()
        worker.accept_new()
        worker.run_next()
        seconds = time.perf_counter() - start
        assert api.get("bench", task)["status"]["phase"] == "Succeeded"
        return seconds

    direct(), through_worker(-1)  # warm both paths (first-call costs, model load)
    ratios, direct_s, worker_s = [], [], []
    for index in range(args.repeats):
        d, w = direct(), through_worker(index)
        direct_s.append(d)
        worker_s.append(w)
        ratios.append(w / d)
    print(f"model {name}, {args.size}x{args.size}, {args.steps} steps, {args.repeats} pairs")
    print(
        f"direct median {statistics.median(direct_s) * 1000:.1f} ms, worker median {statistics.median(worker_s) * 1000:.1f} ms"
    )
    print(f"median ratio worker/direct = {statistics.median(ratios):.3f} (target <= 1.05)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

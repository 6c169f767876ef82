"""`aigc-edge worker profile`: measure this node into a scenario `classes` entry.

Per model (from the catalog) it measures the load time, then per resolution the warm seconds per
denoising step (median over repeats, after one warm-up image), and writes

    classes: {<class>: {vram_gb, step_s: {model: {"WxH": {k: s}}}, load_s: {model: {k: s}}}}

k = 1 is measured on this node alone. For k > 1 start the same command on k nodes at once with
`--world-size k --rank r --rendezvous host:port` (rank 0 binds the port): they generate as one
gang, exactly as the worker does, and rank 0 writes the file with the gang's step time.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
import yaml
from aigc_api.catalog import ModelCatalog

from aigc_worker.parallel.rendezvous import joined_gang, open_store, parse_address
from aigc_worker.pipelines import ImageJob, Placement, gang_layout, generate, load_model


def device_memory_gb(placement: Placement) -> float:
    if placement.device.startswith("cuda"):
        return torch.cuda.get_device_properties(torch.device(placement.device)).total_memory / 2**30
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def profile_node(
    catalog: ModelCatalog,
    placement: Placement,
    sizes: list[tuple[int, int]],
    steps: int,
    repeats: int,
    models: list[str] | None = None,
    world_size: int = 1,
    rank: int = 0,
    rendezvous: str = "",
    backend: str = "gloo",
    timeout_s: float = 120.0,
) -> dict:
    wanted = [e for e in catalog if models is None or e.name in models]
    step_s: dict[str, dict[str, dict[int, float]]] = {}
    load_s: dict[str, dict[int, float]] = {}
    store = None
    if world_size > 1 and rank == 0:
        host, port = parse_address(rendezvous)
        store = open_store(host, timeout_s, port)
    for entry in wanted:
        start = time.perf_counter()
        model = load_model(entry, placement)
        load_s[entry.name] = {world_size: round(time.perf_counter() - start, 4)}
        for width, height in sizes:
            job = ImageJob("a profiling prompt", "", width, height, steps, seed=0)
            samples = []
            for repeat in range(repeats + 1):
                if world_size == 1:
                    generated = generate(model, job)
                else:
                    layout = gang_layout(model, job, world_size, rank)
                    namespace = f"profile/{entry.name}/{width}x{height}/{repeat}"
                    with joined_gang(layout, store, rendezvous, namespace, backend, timeout_s) as gang:
                        generated = generate(model, job, gang)
                if repeat:  # the first image pays one-off warm-up costs
                    samples.append(generated.step_seconds)
            step_s.setdefault(entry.name, {})[f"{width}x{height}"] = {
                world_size: round(statistics.median(samples), 5)
            }
        del model
    return {"vram_gb": round(device_memory_gb(placement), 1), "step_s": step_s, "load_s": load_s}


def write_class(out: Path, class_name: str, measured: dict) -> None:
    out.write_text(yaml.safe_dump({"classes": {class_name: measured}}, sort_keys=False))

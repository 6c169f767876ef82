"""A small heterogeneous perf model and random snapshots for the policy tests (no scenario files)."""

from __future__ import annotations

import numpy as np
from aigc_policy.perf import GpuClass, ModelSpec, TablePerfModel
from aigc_policy.quality import EatLogCurve
from aigc_policy.snapshot import ClusterSnapshot
from aigc_policy.synthetic import random_snapshot


def _gpu(name: str, vram: float, speed: float) -> GpuClass:
    sizes = {(512, 512): 1.0, (768, 768): 2.2, (1024, 1024): 4.0}
    speedup = {1: 1.0, 2: 0.55, 4: 0.35, 8: 0.25}
    step = {
        model: {res: {k: base * speed * f * s for k, s in speedup.items()} for res, f in sizes.items()}
        for model, base in (("sd15", 0.05), ("sdxl", 0.15))
    }
    load = {model: {1: 8.0 * speed, 2: 10.0 * speed, 4: 14.0 * speed, 8: 18.0 * speed} for model in step}
    return GpuClass(name, vram, step, load)


def make_perf(reuse: str = "per-node") -> TablePerfModel:
    classes = {c.name: c for c in (_gpu("big", 80.0, 1.0), _gpu("mid", 24.0, 2.0), _gpu("small", 10.0, 4.0))}
    models = {
        "sd15": ModelSpec("sd15", 4.0, EatLogCurve(30), 10, 40),
        "sdxl": ModelSpec("sdxl", 12.0, EatLogCurve(40), 15, 50),
    }
    return TablePerfModel(classes, models, reuse)


def snapshots(seed: int, n_nodes: int, n_tasks: int, count: int, reuse: str = "per-node") -> list[ClusterSnapshot]:
    rng = np.random.default_rng(seed)
    perf = make_perf(reuse)
    return [random_snapshot(rng, perf, n_nodes, n_tasks) for _ in range(count)]

"""JSON (de)serialisation of ClusterSnapshot, for recorded-snapshot fixtures and debugging.

A snapshot refers to a live PerfModel (scenario tables, or the operator's profiled tables).
`snapshot_to_dict` records the answers that model gives for everything the snapshot can ask
(its GPU classes, models, task shapes, every gang size and step count), and `RecordedPerf` replays
them, so a recorded snapshot is self-contained and decodes to the same features.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aigc_policy.snapshot import GANG_SIZES, ClusterSnapshot, NodeState, PerfModel, Resident, TaskSpec

FORMAT_VERSION = 1


class RecordedPerf:
    """A PerfModel answering from recorded tables; asking outside them raises KeyError."""

    def __init__(self, tables: dict[str, Any]) -> None:
        self.reuse: str = tables["reuse"]
        self._class_vram: dict[str, float] = tables["class_vram_gb"]
        self._link: dict[str, float | None] = tables["link_mbps"]
        self._model_vram: dict[str, float] = tables["model_vram_gb"]
        self._quality = {(m, int(s)): q for m, s, q in tables["quality"]}
        self._load = {(c, m, int(k)): v for c, m, k, v in tables["load_seconds"]}
        self._step = {(c, m, int(w), int(h), int(k)): (ok, v) for c, m, w, h, k, ok, v in tables["step_seconds"]}

    def step_seconds(self, gpu_class: str, model: str, width: int, height: int, k: int) -> float:
        return self._step[(gpu_class, model, width, height, k)][1]

    def load_seconds(self, gpu_class: str, model: str, k: int) -> float:
        return self._load[(gpu_class, model, k)]

    def quality(self, model: str, steps: int) -> float:
        return self._quality[(model, steps)]

    def model_vram_gb(self, model: str) -> float:
        return self._model_vram[model]

    def class_vram_gb(self, gpu_class: str) -> float:
        return self._class_vram[gpu_class]

    def supports(self, gpu_class: str, model: str, width: int, height: int, k: int) -> bool:
        return self._step[(gpu_class, model, width, height, k)][0]

    def link_mbps(self, gpu_class: str) -> float | None:
        return self._link[gpu_class]


def _perf_tables(snap: ClusterSnapshot) -> dict[str, Any]:
    perf: PerfModel = snap.perf
    classes = sorted({n.gpu_class for n in snap.nodes})
    models = sorted({t.model for t in snap.queue} | {r.model for n in snap.nodes for r in n.resident})
    shapes = sorted({(t.model, t.width, t.height) for t in snap.queue})
    max_steps = max((t.max_steps for t in snap.queue), default=1)
    steps = []
    for c in classes:
        for m, w, h in shapes:
            for k in GANG_SIZES:
                ok = bool(perf.supports(c, m, w, h, k))
                steps.append([c, m, w, h, k, ok, float(perf.step_seconds(c, m, w, h, k)) if ok else 0.0])
    return {
        "reuse": perf.reuse,
        "class_vram_gb": {c: float(perf.class_vram_gb(c)) for c in classes},
        "link_mbps": {c: perf.link_mbps(c) for c in classes},
        "model_vram_gb": {m: float(perf.model_vram_gb(m)) for m in models},
        "quality": [[m, s, float(perf.quality(m, s))] for m in models for s in range(1, max_steps + 1)],
        "load_seconds": [
            [c, m, k, float(perf.load_seconds(c, m, k))] for c in classes for m in models for k in GANG_SIZES
        ],
        "step_seconds": steps,
    }


def snapshot_to_dict(snap: ClusterSnapshot) -> dict[str, Any]:
    return {
        "format": FORMAT_VERSION,
        "now": snap.now,
        "has_future_events": snap.has_future_events,
        "gang_sizes": list(snap.gang_sizes),
        "queue": [asdict(t) for t in snap.queue],
        "nodes": [asdict(n) for n in snap.nodes],
        "perf": _perf_tables(snap),
    }


def _task(d: dict[str, Any]) -> TaskSpec:
    gangs = d.get("gang_sizes")
    return TaskSpec(**{**d, "gang_sizes": None if gangs is None else tuple(gangs)})


def _node(d: dict[str, Any]) -> NodeState:
    resident = [Resident(r["model"], tuple(r["group"])) for r in d["resident"]]
    return NodeState(**{**d, "resident": resident})


def snapshot_from_dict(d: dict[str, Any]) -> ClusterSnapshot:
    if d.get("format") != FORMAT_VERSION:
        raise ValueError(f"unsupported snapshot format {d.get('format')!r}")
    return ClusterSnapshot(
        now=d["now"],
        queue=[_task(t) for t in d["queue"]],
        nodes=[_node(n) for n in d["nodes"]],
        perf=RecordedPerf(d["perf"]),
        gang_sizes=tuple(d["gang_sizes"]),
        has_future_events=d["has_future_events"],
    )


def save_snapshot(snap: ClusterSnapshot, path: Path) -> None:
    path.write_text(json.dumps(snapshot_to_dict(snap), indent=1))


def load_snapshot(path: Path) -> ClusterSnapshot:
    return snapshot_from_dict(json.loads(path.read_text()))

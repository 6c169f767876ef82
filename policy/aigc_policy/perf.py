"""`TablePerfModel`: the snapshot.PerfModel protocol backed by a scenario's class tables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aigc_policy.quality import QualityCurve

Resolution = tuple[int, int]
_UNKNOWN = -1.0  # cache miss marker (never a valid time)


@dataclass(frozen=True)
class GpuClass:
    name: str
    vram_gb: float
    step_s: Mapping[str, Mapping[Resolution, Mapping[int, float]]]  # model -> (w, h) -> k -> s/step
    load_s: Mapping[str, Mapping[int, float]]  # model -> k -> seconds
    link_mbps: float | None = None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    vram_gb: float
    curve: QualityCurve
    min_steps: int
    max_steps: int


@dataclass(eq=False)
class TablePerfModel:
    """Lookups are memoised: the simulator prices a placement on every decision."""

    classes: Mapping[str, GpuClass]
    models: Mapping[str, ModelSpec]
    reuse: str = "per-node"
    _steps: dict[tuple[str, str, int, int, int], float | None] = field(default_factory=dict, repr=False)
    _quality: dict[tuple[str, int], float] = field(default_factory=dict, repr=False)

    def step_seconds(self, gpu_class: str, model: str, width: int, height: int, k: int) -> float:
        seconds = self._steps.get((gpu_class, model, width, height, k), _UNKNOWN)
        if seconds is _UNKNOWN:
            seconds = self._lookup_step(gpu_class, model, width, height, k)
        if seconds is None:
            raise KeyError(f"class {gpu_class} cannot run {model} at {width}x{height} with k={k}")
        return seconds

    def load_seconds(self, gpu_class: str, model: str, k: int) -> float:
        by_k = self.classes[gpu_class].load_s.get(model, {})
        if k in by_k:
            return by_k[k]
        smaller = [kk for kk in by_k if kk <= k]
        return by_k[max(smaller)] if smaller else 0.0

    def quality(self, model: str, steps: int) -> float:
        key = (model, steps)
        q = self._quality.get(key)
        if q is None:
            q = self._quality[key] = self.models[model].curve(steps)
        return q

    def model_vram_gb(self, model: str) -> float:
        return self.models[model].vram_gb

    def class_vram_gb(self, gpu_class: str) -> float:
        return self.classes[gpu_class].vram_gb

    def supports(self, gpu_class: str, model: str, width: int, height: int, k: int) -> bool:
        seconds = self._steps.get((gpu_class, model, width, height, k), _UNKNOWN)
        if seconds is _UNKNOWN:
            seconds = self._lookup_step(gpu_class, model, width, height, k)
        return seconds is not None

    def link_mbps(self, gpu_class: str) -> float | None:
        return self.classes[gpu_class].link_mbps

    def _lookup_step(self, gpu_class: str, model: str, width: int, height: int, k: int) -> float | None:
        key = (gpu_class, model, width, height, k)
        try:
            return self._steps[key]
        except KeyError:
            seconds = self._steps[key] = self._resolve_step(gpu_class, model, width, height, k)
            return seconds

    def _resolve_step(self, gpu_class: str, model: str, width: int, height: int, k: int) -> float | None:
        cls = self.classes.get(gpu_class)
        spec = self.models.get(model)
        if cls is None or spec is None or spec.vram_gb > cls.vram_gb:
            return None
        tables = {res: by_k[k] for res, by_k in cls.step_s.get(model, {}).items() if k in by_k}
        if not tables:
            return None
        if (width, height) in tables:
            return tables[(width, height)]
        # Unlisted resolution: scale the entry nearest in pixel count linearly with pixels.
        area = width * height
        (w0, h0), seconds = min(tables.items(), key=lambda item: abs(item[0][0] * item[0][1] - area))
        return seconds * area / (w0 * h0)

"""Quality curves q(model, steps) in [0, 1], one pluggable curve per model.

`eat-reference` is EAT's CLIP-score fit as coded (eat-spec §3.5): it peaks at 0.2837 for
30 steps and drops to a constant above 30, so numbers compare with the paper. `eat-log` keeps
the log shape but rescales it to [0, 1] and to the model's own peak step count, and never
drops past the peak. `table` interpolates measured points (few-step distilled models).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

EAT_PEAK_STEPS = 30
EAT_MIN_STEPS = 5
EAT_PEAK_QUALITY = 0.16 * math.log(EAT_PEAK_STEPS) / math.log(6) - 0.02


class QualityCurve(Protocol):
    def __call__(self, steps: float) -> float: ...


def _eat_log(steps: float) -> float:
    return 0.16 * math.log(steps) / math.log(6) - 0.02


@dataclass(frozen=True)
class EatReferenceCurve:
    above_peak: float = 0.27  # Simu; the Real system used 0.25

    def __call__(self, steps: float) -> float:
        if steps < EAT_MIN_STEPS:
            return 0.0
        if steps > EAT_PEAK_STEPS:
            return self.above_peak
        return _eat_log(steps)


@dataclass(frozen=True)
class EatLogCurve:
    peak_steps: float = EAT_PEAK_STEPS

    def __call__(self, steps: float) -> float:
        scaled = steps * EAT_PEAK_STEPS / self.peak_steps
        if scaled < EAT_MIN_STEPS:
            return 0.0
        return min(1.0, _eat_log(scaled) / EAT_PEAK_QUALITY)


@dataclass(frozen=True)
class TableCurve:
    points: tuple[tuple[float, float], ...]  # (steps, quality), steps ascending

    def __call__(self, steps: float) -> float:
        pts = self.points
        if steps < pts[0][0]:
            return 0.0
        for (s0, q0), (s1, q1) in zip(pts, pts[1:], strict=False):
            if steps <= s1:
                return q0 + (q1 - q0) * (steps - s0) / (s1 - s0)
        return pts[-1][1]


def _table(spec: Mapping[str, Any]) -> QualityCurve:
    raw = spec.get("points")
    if not isinstance(raw, Mapping) or not raw:
        raise ValueError("quality kind 'table' needs a non-empty 'points' mapping {steps: quality}")
    points = tuple(sorted((float(s), float(q)) for s, q in raw.items()))
    if any(not 0.0 <= q <= 1.0 for _, q in points):
        raise ValueError("quality table values must lie in [0, 1]")
    return TableCurve(points)


CURVE_KINDS: dict[str, Callable[[Mapping[str, Any]], QualityCurve]] = {
    "eat-reference": lambda spec: EatReferenceCurve(float(spec.get("above_peak", 0.27))),
    "eat-log": lambda spec: EatLogCurve(float(spec.get("peak_steps", EAT_PEAK_STEPS))),
    "table": _table,
}


def make_curve(spec: Mapping[str, Any]) -> QualityCurve:
    kind = spec.get("kind")
    if kind not in CURVE_KINDS:
        raise ValueError(f"unknown quality kind {kind!r} (known: {', '.join(CURVE_KINDS)})")
    return CURVE_KINDS[kind](spec)

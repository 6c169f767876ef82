"""Trace replay: JSON Lines, one task per line, streamed (docs/trace-format.md).

Every line is validated as it is read; the first bad one raises TraceError naming the file
and the line, so a million-task trace replays in flat memory and fails precisely.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from aigc_policy.scenario import Scenario
from aigc_policy.snapshot import GANG_SIZES, TaskSpec

FIELDS = {
    "arrival_s", "model", "width", "height", "steps", "min_steps", "max_steps", "deadline_s",
    "min_quality", "gang_sizes", "priority", "id",
}
REQUIRED = ("arrival_s", "model", "width", "height")


class TraceError(ValueError):
    """A trace line that cannot be replayed; the message starts with file:line."""


class TraceWorkload:
    """Replays a trace file; the same tasks for every seed (the file is the episode)."""

    def __init__(self, path: str | Path, scenario: Scenario) -> None:
        self.path = Path(path)
        self.scenario = scenario
        self.label = f"trace {self.path.name}"
        if not self.path.is_file():
            raise TraceError(f"{self.path}: no such trace file")

    def tasks(self, seed: int) -> Iterator[TaskSpec]:
        last = 0.0
        with self.path.open(encoding="utf-8") as lines:
            for lineno, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    task = parse_task(line, lineno, self.scenario)
                except (ValueError, TypeError) as exc:
                    raise TraceError(f"{self.path}:{lineno}: {exc}") from None
                if task.arrival_s < last:
                    raise TraceError(
                        f"{self.path}:{lineno}: arrival_s {task.arrival_s} goes back in time (previous {last})"
                    )
                last = task.arrival_s
                yield task


def parse_task(line: str, lineno: int, scenario: Scenario) -> TaskSpec:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"malformed JSON ({exc.msg})") from None
    if not isinstance(raw, Mapping):
        raise ValueError("a trace line must be a JSON object")
    unknown = sorted(set(raw) - FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(FIELDS))})")
    missing = [f for f in REQUIRED if f not in raw]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    model = raw["model"]
    if model not in scenario.models:
        raise ValueError(f"unknown model {model!r} (scenario {scenario.name} has {', '.join(scenario.models)})")
    arrival = _number(raw, "arrival_s", minimum=0.0)
    width, height = _int(raw, "width"), _int(raw, "height")
    for name, value in (("width", width), ("height", height)):
        if value <= 0 or value % 8:
            raise ValueError(f"{name} must be a positive multiple of 8, got {value}")
    lo, hi = _steps(raw, scenario.models[model].min_steps, scenario.models[model].max_steps)
    deadline = None if raw.get("deadline_s") is None else _number(raw, "deadline_s", minimum=0.0, strict=True)
    quality = None if raw.get("min_quality") is None else _number(raw, "min_quality", minimum=0.0)
    if quality is not None and quality > 1.0:
        raise ValueError(f"min_quality must be in [0, 1], got {quality}")
    return TaskSpec(
        id=str(raw.get("id", f"line{lineno}")),
        arrival_s=arrival,
        model=model,
        width=width,
        height=height,
        min_steps=lo,
        max_steps=hi,
        deadline_s=deadline,
        min_quality=quality,
        gang_sizes=_gangs(raw.get("gang_sizes")),
        priority=0 if raw.get("priority") is None else _int(raw, "priority"),
    )


def _number(raw: Mapping[str, Any], name: str, minimum: float, strict: bool = False) -> float:
    value = raw[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum:g}, got {value}")
    return float(value)


def _int(raw: Mapping[str, Any], name: str) -> int:
    value = raw[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return value


def _steps(raw: Mapping[str, Any], default_lo: int, default_hi: int) -> tuple[int, int]:
    if raw.get("steps") is not None:
        steps = _int(raw, "steps")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        return steps, steps
    lo = default_lo if raw.get("min_steps") is None else _int(raw, "min_steps")
    hi = default_hi if raw.get("max_steps") is None else _int(raw, "max_steps")
    if not 1 <= lo <= hi:
        raise ValueError(f"need 1 <= min_steps <= max_steps, got {lo}..{hi}")
    return lo, hi


def _gangs(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or any(k not in GANG_SIZES or isinstance(k, bool) for k in value):
        raise ValueError(f"gang_sizes must be null or a non-empty list from {list(GANG_SIZES)}, got {value!r}")
    return tuple(value)

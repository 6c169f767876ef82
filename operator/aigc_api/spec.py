"""AIGCTask `spec` -> the scheduler's TaskSpec and the worker's generation request.

The CRD schema already rejects malformed specs; these parsers re-check what they rely on so a
task that slipped past validation (older CRD, hand-made dict in a test) fails with a clear reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from aigc_policy.snapshot import TaskSpec

from aigc_api.clock import parse_time

DEFAULT_SIZE = 512
GUIDANCE_MAX = Decimal(30)


class SpecError(ValueError):
    """The spec cannot be interpreted; `field` is the JSON path of the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What a worker needs to render the image (the prompt text never reaches the scheduler)."""

    model: str
    prompt: str
    negative_prompt: str
    width: int
    height: int
    guidance_milli: int | None  # None: the pipeline's default
    seed: int | None  # None: the worker derives one and records it in the result

    @property
    def guidance_scale(self) -> float | None:
        return None if self.guidance_milli is None else self.guidance_milli / 1000


def task_id(body: dict[str, Any]) -> str:
    meta = body["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


def parse_guidance_milli(value: int | str | None) -> int | None:
    """`guidance: 7` or `guidance: "7.5"` -> 7000 / 7500 (integers only: no floats in spec)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise SpecError("spec.guidance", "must be an integer or a decimal string")
    try:
        number = Decimal(value) if isinstance(value, str) else Decimal(int(value))
    except (InvalidOperation, ValueError, TypeError):
        raise SpecError("spec.guidance", f"{value!r} is not a decimal number") from None
    if not number.is_finite() or number < 0 or number > GUIDANCE_MAX:
        raise SpecError("spec.guidance", f"{value!r} is outside 0..{GUIDANCE_MAX}")
    milli = number * 1000
    if milli != milli.to_integral_value():
        raise SpecError("spec.guidance", f"{value!r} has more than 3 decimals")
    return int(milli)


def step_range(spec: dict[str, Any]) -> tuple[int, int]:
    if "steps" in spec:
        steps = int(spec["steps"])
        return steps, steps
    if "minSteps" in spec and "maxSteps" in spec:
        low, high = int(spec["minSteps"]), int(spec["maxSteps"])
        if low > high:
            raise SpecError("spec.minSteps", "must not exceed maxSteps")
        return low, high
    raise SpecError("spec", "set either steps or both minSteps and maxSteps")


def parse_task_spec(body: dict[str, Any]) -> TaskSpec:
    """The scheduler's view of an AIGCTask object; arrival is its creationTimestamp (epoch seconds)."""
    spec = body.get("spec") or {}
    if not spec.get("model"):
        raise SpecError("spec.model", "is required")
    created = parse_time(body["metadata"].get("creationTimestamp"))
    qos = spec.get("qos") or {}
    min_steps, max_steps = step_range(spec)
    deadline = qos.get("deadlineSeconds")
    min_quality = qos.get("minQualityMilli")
    gang_sizes = spec.get("gangSizes")
    return TaskSpec(
        id=task_id(body),
        arrival_s=created.timestamp() if created else 0.0,
        model=spec["model"],
        width=int(spec.get("width", DEFAULT_SIZE)),
        height=int(spec.get("height", DEFAULT_SIZE)),
        min_steps=min_steps,
        max_steps=max_steps,
        deadline_s=None if deadline is None else float(deadline),
        min_quality=None if min_quality is None else int(min_quality) / 1000,
        gang_sizes=None if not gang_sizes else tuple(sorted(int(k) for k in gang_sizes)),
        priority=int(qos.get("priority", 0)),
    )


def parse_generation_request(body: dict[str, Any]) -> GenerationRequest:
    spec = body.get("spec") or {}
    seed = spec.get("seed")
    return GenerationRequest(
        model=spec["model"],
        prompt=spec["prompt"],
        negative_prompt=spec.get("negativePrompt", ""),
        width=int(spec.get("width", DEFAULT_SIZE)),
        height=int(spec.get("height", DEFAULT_SIZE)),
        guidance_milli=parse_guidance_milli(spec.get("guidance")),
        seed=None if seed is None else int(seed),
    )

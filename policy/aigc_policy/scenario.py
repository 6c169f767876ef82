"""Scenario files: node classes with latency tables, models, nodes, arrivals and task mix.

The format is documented in docs/scenario-format.md; `aigc-edge worker profile` writes the
`classes` part of it. `load_scenario` takes a packaged name (policy/aigc_policy/scenarios/) or
a path, validates everything up front and raises ScenarioError with the file in the message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from aigc_policy.errors import yaml_problem
from aigc_policy.perf import GpuClass, ModelSpec, Resolution, TablePerfModel
from aigc_policy.quality import make_curve
from aigc_policy.snapshot import GANG_SIZES

REUSE_MODES = ("per-node", "exact-group")
ARRIVAL_KINDS = ("poisson", "bernoulli", "bursty", "diurnal", "slotted")
TOP_KEYS = {
    "name", "description", "reuse", "visible_queue", "gang_sizes", "classes", "models", "nodes",
    "episode", "arrivals", "tasks", "bugs", "failures",
}
TASK_KEYS = {
    "weight", "model", "sizes", "steps", "steps_draw", "deadline_s", "min_quality", "gang_sizes",
    "gang_draw", "priority", "work_scale", "input_mbit", "output_mbit",
}
# Reference-code defects a scenario may reproduce on purpose; all off (fixed) by default.
BUG_FLAGS: dict[str, Any] = {
    "rate_override": None,  # EAT: the train scripts ran at 0.5/s whatever rate they asked for
    "reseed_every_reset": None,  # EAT: every episode re-seeded with 233, one trace forever
    "clock_starts_at_1": False,  # EAT: the initial queue arrives at 0 while the clock starts at 1
    "position_tied_work": False,  # LAD-TS: work, steps and result size fixed by position in the slot
    "fixed_origin_order": False,  # LAD-TS: base stations always decided in index order 0..N-1
}
MIN_NODES, MAX_NODES = 2, 64

Range = tuple[float, float]


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class TaskTemplate:
    """One entry of the task mix; ranges are (lo, hi) drawn uniformly per task."""

    weight: float
    model: str
    sizes: tuple[Resolution, ...]
    steps: tuple[int, int]  # range the scheduler may choose in
    steps_draw: tuple[int, int] | None  # exogenous fixed step demand drawn per task
    deadline_s: Range | None
    min_quality: Range | None
    gang_sizes: tuple[int, ...] | None
    gang_draw: tuple[int, ...] | None
    priority: tuple[int, ...]
    work_scale: Range
    input_mbit: Range
    output_mbit: Range


@dataclass(frozen=True)
class NodeSpec:
    name: str
    gpu_class: str
    resident: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    perf: TablePerfModel
    nodes: tuple[NodeSpec, ...]
    gang_sizes: tuple[int, ...]
    visible_queue: int | None
    episode_tasks: int | None
    arrivals: Mapping[str, Any]
    tasks: tuple[TaskTemplate, ...]
    bugs: Mapping[str, Any] = field(default_factory=lambda: dict(BUG_FLAGS))
    failures: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def models(self) -> Mapping[str, ModelSpec]:
        return self.perf.models

    def runnable_anywhere(self, model: str, width: int, height: int, k_options: Sequence[int]) -> bool:
        classes = {n.gpu_class for n in self.nodes}
        return any(self.perf.supports(c, model, width, height, k) for c in classes for k in k_options)


def packaged_names() -> list[str]:
    root = resources.files("aigc_policy") / "scenarios"
    return sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.name.endswith(".yaml"))


def load_scenario(name_or_path: str, *, nodes: int | None = None, rate: float | None = None) -> Scenario:
    """A packaged scenario by name, or a YAML file by path; optionally rescaled and re-rated."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ScenarioError(f"{name_or_path}: no such scenario file")
        text, source = path.read_text(), str(path)
    else:
        resource = resources.files("aigc_policy") / "scenarios" / f"{name_or_path}.yaml"
        if not resource.is_file():
            known = ", ".join(packaged_names())
            raise ScenarioError(f"unknown scenario {name_or_path!r} (packaged: {known}; or give a .yaml path)")
        text, source = resource.read_text(), f"scenario {name_or_path}"
    try:
        data = yaml.safe_load(text)
        scenario = _parse(data, source)
        if nodes is not None:
            scenario = replace(scenario, nodes=scale_nodes(scenario.nodes, nodes))
        if rate is not None:
            scenario = replace(scenario, arrivals=with_rate(scenario.arrivals, rate))
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{source}: {yaml_problem(exc)}") from None
    except (ValueError, TypeError, KeyError) as exc:
        if isinstance(exc, ScenarioError):
            raise
        raise ScenarioError(f"{source}: {exc}") from None
    return scenario


def parse_rates(text: str, flag: str) -> list[float]:
    """'0.05,0.11' -> [0.05, 0.11], arrival rates (tasks/s) given with a command-line `flag`."""
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ScenarioError(f"{flag} must be a number or a comma-separated list of numbers, got {text!r}") from None
    if not rates or any(not math.isfinite(r) or r <= 0 for r in rates):
        raise ScenarioError(f"{flag} values must be positive numbers, got {text!r}")
    return rates


def with_rate(arrivals: Mapping[str, Any], rate: float) -> dict[str, Any]:
    if not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"rate must be a positive number, got {rate}")
    return {**arrivals, "rate": rate}


def scale_nodes(nodes: Sequence[NodeSpec], count: int) -> tuple[NodeSpec, ...]:
    """`count` nodes with the class proportions of `nodes` (largest remainder, each class >= 1)."""
    if not MIN_NODES <= count <= MAX_NODES:
        raise ValueError(f"--nodes must be in {MIN_NODES}..{MAX_NODES}, got {count}")
    by_class: dict[str, list[NodeSpec]] = {}
    for n in nodes:
        by_class.setdefault(n.gpu_class, []).append(n)
    total = len(nodes)
    quotas = {c: count * len(ns) / total for c, ns in by_class.items()}
    counts = {c: max(1 if count >= len(by_class) else 0, math.floor(q)) for c, q in quotas.items()}
    by_remainder = sorted(by_class, key=lambda c: (counts[c] - quotas[c], list(by_class).index(c)))
    i = 0
    while sum(counts.values()) < count:
        counts[by_remainder[i % len(by_remainder)]] += 1
        i += 1
    while sum(counts.values()) > count:
        biggest = max(counts, key=lambda c: (counts[c] - quotas[c], counts[c]))
        counts[biggest] -= 1
    scaled = []
    for cls, ns in by_class.items():
        for j in range(counts[cls]):
            scaled.append(NodeSpec(f"{cls}-{j}", cls, ns[j % len(ns)].resident))
    return tuple(scaled)


def _parse(data: Any, source: str) -> Scenario:
    if not isinstance(data, Mapping):
        raise ValueError("a scenario is a YAML mapping")
    _no_unknown(data, TOP_KEYS, "top level")
    reuse = data.get("reuse", "per-node")
    if reuse not in REUSE_MODES:
        raise ValueError(f"reuse must be one of {REUSE_MODES}, got {reuse!r}")
    models = {name: _model(name, spec) for name, spec in _mapping(data, "models").items()}
    classes = {name: _gpu_class(name, spec, models) for name, spec in _mapping(data, "classes").items()}
    gang_sizes = tuple(int(k) for k in data.get("gang_sizes", GANG_SIZES))
    if not gang_sizes or any(k not in GANG_SIZES for k in gang_sizes):
        raise ValueError(f"gang_sizes must be a non-empty subset of {GANG_SIZES}")
    node_specs = _nodes(data.get("nodes"), classes, models)
    episode = data.get("episode") or {}
    episode_tasks = episode.get("tasks")
    arrivals = dict(data.get("arrivals") or {})
    if arrivals.get("kind") not in ARRIVAL_KINDS:
        raise ValueError(f"arrivals.kind must be one of {ARRIVAL_KINDS}")
    if episode_tasks is None and arrivals["kind"] != "slotted":
        raise ValueError("episode.tasks is required unless arrivals are slotted")
    bugs = dict(BUG_FLAGS)
    for key, value in (data.get("bugs") or {}).items():
        if key not in BUG_FLAGS:
            raise ValueError(f"unknown bug flag {key!r} (known: {', '.join(BUG_FLAGS)})")
        bugs[key] = value
    tasks = tuple(_task(i, spec, models, gang_sizes) for i, spec in enumerate(data.get("tasks") or []))
    if not tasks:
        raise ValueError("tasks (the task mix) must list at least one entry")
    visible = data.get("visible_queue")
    return Scenario(
        name=str(data.get("name", source)),
        description=str(data.get("description", "")).strip(),
        perf=TablePerfModel(classes, models, reuse),
        nodes=node_specs,
        gang_sizes=gang_sizes,
        visible_queue=None if visible is None else int(visible),
        episode_tasks=None if episode_tasks is None else int(episode_tasks),
        arrivals=arrivals,
        tasks=tasks,
        bugs=bugs,
        failures=dict(data.get("failures") or {}),
        source=source,
    )


def _mapping(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    if not isinstance(value, Mapping) or not value:
        raise ValueError(f"{key} must be a non-empty mapping")
    return value


def _no_unknown(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)} in {where}")


def _model(name: str, spec: Mapping[str, Any]) -> ModelSpec:
    _no_unknown(spec, {"vram_gb", "quality", "steps"}, f"model {name}")
    lo, hi = (int(s) for s in spec.get("steps", (30, 30)))
    if not 1 <= lo <= hi:
        raise ValueError(f"model {name}: steps must be [lo, hi] with 1 <= lo <= hi")
    return ModelSpec(name, float(spec["vram_gb"]), make_curve(spec["quality"]), lo, hi)


def parse_resolution(text: str) -> Resolution:
    w, _, h = str(text).lower().partition("x")
    return int(w), int(h)


def _gpu_class(name: str, spec: Mapping[str, Any], models: Mapping[str, ModelSpec]) -> GpuClass:
    _no_unknown(spec, {"vram_gb", "step_s", "load_s", "link_mbps"}, f"class {name}")
    step_s: dict[str, dict[Resolution, dict[int, float]]] = {}
    for model, by_res in (spec.get("step_s") or {}).items():
        if model not in models:
            raise ValueError(f"class {name}: step_s names unknown model {model!r}")
        step_s[model] = {
            parse_resolution(res): {int(k): _positive(s, f"class {name} step_s") for k, s in by_k.items()}
            for res, by_k in by_res.items()
        }
    load_s: dict[str, dict[int, float]] = {}
    for model, by_k in (spec.get("load_s") or {}).items():
        if model not in models:
            raise ValueError(f"class {name}: load_s names unknown model {model!r}")
        by_k = by_k if isinstance(by_k, Mapping) else {1: by_k}
        load_s[model] = {int(k): float(s) for k, s in by_k.items()}
    link = spec.get("link_mbps")
    return GpuClass(name, float(spec["vram_gb"]), step_s, load_s, None if link is None else float(link))


def _positive(value: Any, where: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError(f"{where}: times must be > 0, got {value}")
    return number


def _nodes(raw: Any, classes: Mapping[str, GpuClass], models: Mapping[str, ModelSpec]) -> tuple[NodeSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise ValueError("nodes must be a non-empty list of {class, count, resident}")
    specs: list[NodeSpec] = []
    for entry in raw:
        _no_unknown(entry, {"class", "count", "resident", "name"}, "nodes entry")
        cls = entry["class"]
        if cls not in classes:
            raise ValueError(f"nodes: unknown class {cls!r}")
        resident = tuple(entry.get("resident") or ())
        if any(m not in models for m in resident):
            raise ValueError(f"nodes: resident names an unknown model in {resident}")
        count = int(entry.get("count", 1))
        seen = sum(1 for s in specs if s.gpu_class == cls)
        for i in range(count):
            name = entry.get("name") if count == 1 and entry.get("name") else f"{cls}-{seen + i}"
            specs.append(NodeSpec(name, cls, resident))
    return tuple(specs)


def _range(value: Any, where: str) -> Range:
    if isinstance(value, list | tuple):
        lo, hi = (float(v) for v in value)
    else:
        lo = hi = float(value)
    if lo > hi:
        raise ValueError(f"{where}: range [{lo}, {hi}] is empty")
    return lo, hi


def _task(i: int, spec: Mapping[str, Any], models: Mapping[str, ModelSpec], gang_sizes: tuple[int, ...]) -> TaskTemplate:
    where = f"tasks[{i}]"
    _no_unknown(spec, TASK_KEYS, where)
    model = spec.get("model")
    if model not in models:
        raise ValueError(f"{where}: unknown model {model!r}")
    steps = spec.get("steps")
    if steps is None:
        steps_range = (models[model].min_steps, models[model].max_steps)
    elif isinstance(steps, int):
        steps_range = (steps, steps)
    else:
        steps_range = (int(steps[0]), int(steps[1]))
    draw = spec.get("steps_draw")
    sizes = tuple((int(w), int(h)) for w, h in spec.get("sizes", [[512, 512]]))
    optional = {key: None if spec.get(key) is None else _range(spec[key], f"{where}.{key}")
                for key in ("deadline_s", "min_quality")}
    gangs = spec.get("gang_sizes")
    gang_draw = spec.get("gang_draw")
    for ks in (gangs, gang_draw):
        if ks is not None and any(int(k) not in gang_sizes for k in ks):
            raise ValueError(f"{where}: gang sizes {ks} outside the scenario's {gang_sizes}")
    priority = spec.get("priority", 0)
    return TaskTemplate(
        weight=float(spec.get("weight", 1.0)),
        model=model,
        sizes=sizes,
        steps=steps_range,
        steps_draw=None if draw is None else (int(draw[0]), int(draw[1])),
        deadline_s=optional["deadline_s"],
        min_quality=optional["min_quality"],
        gang_sizes=None if gangs is None else tuple(int(k) for k in gangs),
        gang_draw=None if gang_draw is None else tuple(int(k) for k in gang_draw),
        priority=tuple(priority) if isinstance(priority, list) else (int(priority),),
        work_scale=_range(spec.get("work_scale", 1.0), f"{where}.work_scale"),
        input_mbit=_range(spec.get("input_mbit", 0.0), f"{where}.input_mbit"),
        output_mbit=_range(spec.get("output_mbit", 0.0), f"{where}.output_mbit"),
    )

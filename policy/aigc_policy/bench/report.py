"""Bench output: results.json, a Markdown table and PNG plots."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aigc_policy.sim.metrics import ResponseHistogram

TABLE_COLUMNS = (
    ("mean_response_s", "mean resp (s)", "{:.2f}"),
    ("ci95_mean_response_s", "±95% CI", "{:.2f}"),
    ("p95_response_s", "p95 (s)", "{:.2f}"),
    ("p99_response_s", "p99 (s)", "{:.2f}"),
    ("mean_wait_s", "wait (s)", "{:.2f}"),
    ("mean_service_s", "service (s)", "{:.2f}"),
    ("slo_attainment", "SLO", "{:.3f}"),
    ("mean_quality", "quality", "{:.3f}"),
    ("cold_starts", "cold/ep", "{:.1f}"),
    ("utilisation", "util", "{:.3f}"),
)


def markdown_table(rows: Mapping[str, Mapping[str, float]]) -> str:
    header = "| policy | " + " | ".join(title for _, title, _ in TABLE_COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(TABLE_COLUMNS)
    lines = [header, rule]
    for name, metrics in rows.items():
        cells = [_cell(metrics.get(key), fmt) for key, _, fmt in TABLE_COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: float | None, fmt: str) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(_finite(payload), indent=2, sort_keys=False) + "\n")


def _finite(value: Any) -> Any:
    """JSON has no NaN: metrics of a policy that completed nothing become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def plot_cdf(path: Path, histograms: Mapping[str, ResponseHistogram], title: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, hist in histograms.items():
        if hist.total:
            xs, ys = hist.cdf()
            ax.step(xs, ys, where="post", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("response time (s)")
    ax.set_ylabel("fraction of tasks")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_vs_rate(path: Path, rates: list[float], per_rate: Mapping[str, Mapping[str, Mapping[str, float]]],
                 title: str) -> None:
    plt = _pyplot()
    panels = (("mean_response_s", "mean response (s)"), ("p95_response_s", "p95 response (s)"),
              ("slo_attainment", "SLO attainment"), ("mean_quality", "mean quality"))
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    names = list(next(iter(per_rate.values())))
    for ax, (key, label) in zip(axes.flat, panels, strict=True):
        for name in names:
            ax.plot(rates, [per_rate[_rate_key(r)][name][key] for r in rates], marker="o", label=name)
        ax.set_xlabel("arrival rate (tasks/s)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _rate_key(rate: float) -> str:
    return f"{rate:g}"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt

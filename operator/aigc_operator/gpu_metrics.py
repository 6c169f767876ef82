"""GPU metrics per node from Prometheus (dcgm-exporter), normalised and aged.

dcgm-exporter names the node in `Hostname` (releases) or `hostname` (master since 2026-05); both
are copied into a `node` label. Sample age comes from `timestamp()` evaluated by Prometheus, so
the operator's clock does not matter. Calls are blocking: run `sample()` in a thread.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

NODE_LABEL = "node"


def by_node(series: str) -> str:
    """`series` (a selector or an expression over one) with a `node` label copied from Hostname or hostname."""
    inner = f'label_replace({series}, "{NODE_LABEL}", "$1", "Hostname", "(.+)")'
    return f'label_replace({inner}, "{NODE_LABEL}", "$1", "hostname", "(.+)")'


QUERIES = {
    # timestamp() must take the selector itself: over any other expression (label_replace
    # included) it returns the evaluation time, and every age would read 0.
    "age_s": f"max by ({NODE_LABEL}) (time() - {by_node('timestamp(DCGM_FI_DEV_GPU_UTIL)')})",
    "util_pct": f"avg by ({NODE_LABEL}) ({by_node('DCGM_FI_DEV_GPU_UTIL')})",
    "fb_free_mib": f"sum by ({NODE_LABEL}) ({by_node('DCGM_FI_DEV_FB_FREE')})",
    "fb_used_mib": f"sum by ({NODE_LABEL}) ({by_node('DCGM_FI_DEV_FB_USED')})",
}


@dataclass(frozen=True, slots=True)
class NodeSample:
    age_s: float  # at `MetricsReading.taken_at`
    util_pct: float | None = None
    fb_free_mib: float | None = None
    fb_used_mib: float | None = None


@dataclass(frozen=True, slots=True)
class MetricsReading:
    up: bool
    taken_at: float  # time.monotonic() of the sample
    nodes: dict[str, NodeSample] = field(default_factory=dict)
    error: str | None = None


class PrometheusSampler:
    def __init__(self, url: str, timeout_s: float) -> None:
        retry = Retry(total=1, backoff_factor=0.2, status_forcelist=(502, 503, 504), allowed_methods=None)
        self._client = PrometheusConnect(url=url, disable_ssl=False, retry=retry, timeout=timeout_s)

    def sample(self) -> MetricsReading:
        taken_at = time.monotonic()
        try:
            columns = {name: self._query(q) for name, q in QUERIES.items()}
        except Exception as exc:  # connection refused, timeout, HTTP 5xx, bad JSON: all mean "down"
            return MetricsReading(up=False, taken_at=taken_at, error=f"{type(exc).__name__}: {exc}"[:300])
        nodes = {
            node: NodeSample(
                age_s=max(0.0, age),
                util_pct=columns["util_pct"].get(node),
                fb_free_mib=columns["fb_free_mib"].get(node),
                fb_used_mib=columns["fb_used_mib"].get(node),
            )
            for node, age in columns["age_s"].items()
        }
        return MetricsReading(up=True, taken_at=taken_at, nodes=nodes)

    def _query(self, query: str) -> dict[str, float]:
        values: dict[str, float] = {}
        for series in self._client.custom_query(query):
            node, value = _node_value(series)
            if node is not None and value is not None:
                values[node] = value
        return values


def _node_value(series: object) -> tuple[str | None, float | None]:
    """(node, value) of one instant-vector series; None for what is not a finite number, so a
    malformed or NaN series is treated as missing (stale) instead of failing the whole sample
    or reading as fresh (max(0, nan) == 0)."""
    if not isinstance(series, dict) or not isinstance(series.get("metric"), dict):
        return None, None
    node = series["metric"].get(NODE_LABEL)
    pair = series.get("value")
    if not isinstance(node, str) or not node or not isinstance(pair, list | tuple) or len(pair) != 2:
        return None, None
    try:
        value = float(pair[1])
    except (TypeError, ValueError):
        return node, None
    return node, value if math.isfinite(value) else None

"""Prometheus stopped for AIGC_REL_PROM_OUTAGE_S (make test: 20 s; bench: 60 s), then started again:
every task is still scheduled (by the fallback policy while it is down), placements carry
MetricsAvailable=True before, False during and True after, and the operator's fallback counter
moves by exactly the placements made during the outage."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from aigc_operator.devcluster import LocalCluster
from aigc_operator.stack import OperatorOptions, WorkerOptions
from fake_dcgm import FakeDcgm
from harness import burst_docs, condition, float_env, int_env, metric_value, report, scenario, wait_for

pytestmark = pytest.mark.e2e

WAVE = int_env("AIGC_REL_PROM_WAVE", 40)
OUTAGE_S = float_env("AIGC_REL_PROM_OUTAGE_S", 20.0)
FALLBACK = "aigc_scheduler_fallback_decisions_total"
SOURCE_UP = "aigc_scheduler_metrics_source_up"
NODE_AGE = "aigc_scheduler_node_metrics_age_seconds"
FRESH_S = 5.0  # well inside the operator's 30 s TTL


def test_prometheus_outage(rel_cluster: LocalCluster, tmp_path: Path) -> None:
    dcgm = FakeDcgm([f"edge-{i}" for i in range(rel_cluster.info.nodes)]).start()
    rel_cluster.add_scrape_target("dcgm", dcgm.address)
    operator = OperatorOptions(policy="eat-greedy", metrics_poll_s=1.0, metrics_ttl_s=30.0)
    stopped = False
    try:
        with scenario(rel_cluster, tmp_path, "rel-prom", operator, WorkerOptions(time_scale=0.05)) as sc:

            def op_metric(name: str, **labels: str) -> float:
                return metric_value(sc.stack.operator_metrics(), name, **labels)

            def wave(tag: str) -> dict[str, dict]:
                names = sc.tasks.create(burst_docs(f"prom-{tag}", sc.namespace, WAVE))
                return sc.tasks.wait_terminal(names, timeout=120)

            def newest_sample_ages() -> list[float]:
                text = sc.stack.operator_metrics()
                names = [f"edge-{i}" for i in range(rel_cluster.info.nodes)]
                if not all(f'{NODE_AGE}{{node="{n}"}}' in text for n in names):
                    return []
                return [metric_value(text, NODE_AGE, node=n) for n in names]

            def metrics_conditions(bodies: dict[str, dict]) -> dict[str, int]:
                out: dict[str, int] = {}
                for body in bodies.values():
                    c = condition(body, "MetricsAvailable")
                    key = f"{c.get('status')}/{c.get('reason')}"
                    out[key] = out.get(key, 0) + 1
                return out

            wait_for(lambda: op_metric(SOURCE_UP) == 1.0, 60, "the operator's first good Prometheus sample")
            before = wave("before")
            fallback_0 = op_metric(FALLBACK)

            sc.cluster.stop_component("prometheus")
            stopped = True
            down_at = time.monotonic()
            wait_for(lambda: op_metric(SOURCE_UP) == 0.0, 30, "metrics_source_up to drop to 0")
            during = wave("during")
            fallback_1 = op_metric(FALLBACK)
            fallback_unavailable = op_metric(FALLBACK, reason="PrometheusUnavailable")
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
            outage_s = time.monotonic() - down_at

            sc.cluster.start_component("prometheus")
            stopped = False
            recovered = time.monotonic()
            wait_for(lambda: op_metric(SOURCE_UP) == 1.0, 60, "metrics_source_up back to 1")
            recovery_s = time.monotonic() - recovered
            # fresh again once Prometheus has scraped the exporter after its restart (a fixed 3 s
            # was too short on a loaded machine: the whole "after" wave came out MetricsStale)
            wait_for(lambda: newest_sample_ages() and max(newest_sample_ages()) < FRESH_S, 60,
                     f"every node's GPU sample younger than {FRESH_S:.0f} s after the restart")
            after = wave("after")
            fallback_2 = op_metric(FALLBACK)

            everything = {**before, **during, **after}
            result = sc.audit(everything, 3 * WAVE)
            figures = {
                "tasks": 3 * WAVE,
                "succeeded": result.succeeded,
                "lost": result.lost,
                "placed_twice": result.placed_twice,
                "executed_twice": result.executed_twice,
                "outage_s": round(outage_s, 1),
                "source_up_again_after_s": round(recovery_s, 1),
                "metrics_condition_before": metrics_conditions(before),
                "metrics_condition_during": metrics_conditions(during),
                "metrics_condition_after": metrics_conditions(after),
                "fallback_before": fallback_0,
                "fallback_during_delta": fallback_1 - fallback_0,
                "fallback_after_delta": fallback_2 - fallback_1,
                "fallback_prometheus_unavailable": fallback_unavailable,
            }
            report("prometheus-outage", figures)
            assert result.zero_loss_and_duplicates() and result.succeeded == 3 * WAVE, result
            assert all(condition(b, "MetricsAvailable")["status"] == "True" for b in before.values())
            assert all(
                condition(b, "MetricsAvailable") == {**condition(b, "MetricsAvailable"), "status": "False"}
                and condition(b, "MetricsAvailable")["reason"] == "PrometheusUnavailable"
                for b in during.values()
            ), figures
            assert all(condition(b, "MetricsAvailable")["status"] == "True" for b in after.values()), figures
            assert fallback_1 - fallback_0 == WAVE, figures
            assert fallback_2 == fallback_1, figures
    finally:
        if stopped:
            rel_cluster.start_component("prometheus")
        rel_cluster.remove_scrape_target("dcgm")
        dcgm.close()

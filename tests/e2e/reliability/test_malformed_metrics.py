"""Malformed GPU metrics served by a fake dcgm-exporter and scraped by the real Prometheus (NaN,
infinities, huge values, missing labels, unparseable text, clashing labels, nothing): the operator
never crashes, keeps placing (policy or fallback), and never places on a node that is down even
while the exporter reports that node as fresh and idle. Sizes: AIGC_REL_METRICS_TASKS (48)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from aigc_api.clock import utcnow
from aigc_operator.devcluster import LocalCluster
from aigc_operator.stack import OperatorOptions, WorkerOptions
from fake_dcgm import MODES, FakeDcgm
from harness import burst_docs, condition, figures_of, int_env, report, scenario, set_node_ready

pytestmark = pytest.mark.e2e

TASKS = int_env("AIGC_REL_METRICS_TASKS", 48)
DOWN_NODE = "edge-3"
MODE_S = 3.0  # > one scrape interval (2 s) so that Prometheus sees every mode


def test_malformed_metrics(rel_cluster: LocalCluster, tmp_path: Path) -> None:
    nodes = [f"edge-{i}" for i in range(rel_cluster.info.nodes)]
    dcgm = FakeDcgm(nodes).start()
    rel_cluster.add_scrape_target("dcgm", dcgm.address)
    set_node_ready(rel_cluster, DOWN_NODE, False)
    down_at = utcnow()
    operator = OperatorOptions(policy="eat-greedy", metrics_poll_s=1.0, metrics_ttl_s=10.0)
    up_nodes = [n for n in nodes if n != DOWN_NODE]
    try:
        with scenario(
            rel_cluster, tmp_path, "rel-metrics", operator, WorkerOptions(time_scale=0.05), up_nodes
        ) as sc:
            names: list[str] = []
            docs = burst_docs("metrics", sc.namespace, TASKS)
            per_mode = max(1, TASKS // len(MODES))
            for i, mode in enumerate(MODES):
                dcgm.mode = mode
                names += sc.tasks.create(docs[i * per_mode : (i + 1) * per_mode])
                time.sleep(MODE_S)
            dcgm.mode = "ok"
            names += sc.tasks.create(docs[len(MODES) * per_mode :])
            bodies = sc.tasks.wait_terminal(names, timeout=180)
            result = sc.audit(bodies, TASKS)
            assert sc.watch is not None and sc.stack.operator is not None
            on_down = sc.watch.placements_on(DOWN_NODE, down_at)
            conditions: dict[str, int] = {}
            for body in bodies.values():
                c = condition(body, "MetricsAvailable")
                key = f"{c.get('status')}/{c.get('reason')}"
                conditions[key] = conditions.get(key, 0) + 1
            report(
                "malformed-metrics",
                figures_of(
                    result,
                    scrapes_by_mode=dcgm.scrapes,
                    metrics_conditions=conditions,
                    placed_on_down_node=len(on_down),
                    operator_restarts=sc.stack.operator.starts - 1,
                ),
            )
            assert sc.stack.operator.alive() and sc.stack.operator.starts == 1, sc.stack.operator.log_tail()
            assert result.zero_loss_and_duplicates() and result.succeeded == TASKS, (result, sc.logs_tail())
            assert not on_down, on_down
            assert all(dcgm.scrapes.get(mode) for mode in MODES), dcgm.scrapes
    finally:
        rel_cluster.remove_scrape_target("dcgm")
        dcgm.close()
        set_node_ready(rel_cluster, DOWN_NODE, True)

"""A node marked NotReady, and another deleted, while tasks run on them: nothing is placed on them
afterwards, the tasks that were there are re-placed (NodeLost) and finish elsewhere.
Sizes: AIGC_REL_NODE_BURST (80)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from aigc_api import status as st
from aigc_api.clock import utcnow
from aigc_operator.devcluster import LocalCluster
from aigc_operator.stack import OperatorOptions, WorkerOptions
from harness import (
    Scenario,
    burst_docs,
    figures_of,
    int_env,
    report,
    restore_nodes,
    running_on,
    scenario,
    set_node_ready,
    wait_for,
)

pytestmark = pytest.mark.e2e

BURST = int_env("AIGC_REL_NODE_BURST", 80)
# The operator learns of a node change through its watch; placements decided before that are allowed.
WATCH_GRACE = timedelta(seconds=2)


def _active_on(sc: Scenario, node: str) -> list[dict]:
    """Tasks not finished whose current placement uses `node` (claimed, queued or running there)."""
    return [
        b
        for b in sc.tasks.list()
        if not st.is_terminal(b) and node in getattr(st.parse_placement(b), "nodes", ())
    ]


def _busiest(sc: Scenario, candidates: list[str]) -> tuple[str, list[dict]] | None:
    """The candidate node with the most unfinished tasks placed on it, once one has a task running."""
    ledger = sc.ledger()
    ranked = sorted(((len(_active_on(sc, n)), n) for n in candidates if running_on(ledger, n)), reverse=True)
    if not ranked or ranked[0][0] < 2:
        return None
    return ranked[0][1], _active_on(sc, ranked[0][1])


def _lose_node(sc: Scenario, candidates: list[str], how: str) -> str:
    names = sc.tasks.create(burst_docs(f"node-{how}", sc.namespace, BURST))
    node, victims = wait_for(lambda: _busiest(sc, candidates), 90, "a node with 2 tasks, one running", 0.2)
    lost_at = utcnow()
    if how == "notready":
        set_node_ready(sc.cluster, node, False)
    else:
        sc.cluster.kubectl("delete", "node", node, "--wait=false")
    bodies = sc.tasks.wait_terminal(names, timeout=240)
    assert sc.watch is not None
    late = sc.watch.placements_on(node, lost_at + WATCH_GRACE)
    victim_uids = {v["metadata"]["uid"] for v in victims}
    victim_bodies = [b for b in bodies.values() if b["metadata"]["uid"] in victim_uids]
    result = sc.audit(bodies, BURST)
    figures = figures_of(
        result,
        node=node,
        placed_on_lost_node_after=len(late),
        victims=len(victim_bodies),
        victims_replaced=sum(1 for b in victim_bodies if int(st.status_of(b)["attempts"]) >= 2),
        victims_succeeded=sum(1 for b in victim_bodies if st.phase_of(b) == st.SUCCEEDED),
    )
    report(f"node-{how}", figures)
    assert result.zero_loss_and_duplicates() and result.succeeded == BURST, (result, sc.logs_tail())
    assert not late, late
    # the one running may finish before the operator sees the node go; the others are re-placed
    assert figures["victims_succeeded"] == len(victim_bodies), figures
    assert figures["victims_replaced"] >= len(victim_bodies) - 1 >= 1, figures
    return node


def test_node_notready_then_deleted(rel_cluster: LocalCluster, tmp_path: Path) -> None:
    operator = OperatorOptions(policy="eat-greedy")
    try:
        with scenario(rel_cluster, tmp_path, "rel-node", operator, WorkerOptions(time_scale=1.0)) as sc:
            nodes = [f"edge-{i}" for i in range(rel_cluster.info.nodes)]
            lost = _lose_node(sc, nodes, "notready")
            set_node_ready(rel_cluster, lost, True)
            _lose_node(sc, [n for n in nodes if n != lost], "deleted")
    finally:
        restore_nodes(rel_cluster)

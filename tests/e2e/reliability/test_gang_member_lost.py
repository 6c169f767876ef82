"""A gang member's worker SIGKILLed mid-generation, with the real executor (tiny random pipelines,
torch.distributed gloo over loopback) on two fake nodes: every rank's attempt fails, the partial
gang publishes no result, the task is re-placed and Succeeds once the member is back, and no rank
runs twice within one attempt."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aigc_api import status as st
from aigc_operator.demo import tiny_catalog
from aigc_operator.devcluster import LocalCluster
from aigc_operator.devharness import wait_for
from aigc_operator.stack import OperatorOptions, WorkerOptions
from harness import Scenario, figures_of, int_env, report, scenario, task_doc

pytestmark = pytest.mark.e2e

NODES = ("edge-0", "edge-1")
# Tiny sd15 at 64 px: 0.04-0.1 s a step per rank, so denoising lasts seconds and the kill lands in it.
STEPS = int_env("AIGC_REL_GANG_STEPS", 100)
GANG_TIMEOUT_S = 30  # --gang-timeout: bounds forming the gang and every collective
WORKER_FLAGS = ("--device", "cpu", "--local-files-only", "--gang-timeout", str(GANG_TIMEOUT_S))


def ledger_events(sc: Scenario, uid: str, ev: str, attempt: int) -> dict[int, dict[str, Any]]:
    """Ledger lines of one kind for one attempt, by rank."""
    return {
        e["rank"]: e for e in sc.ledger() if e["uid"] == uid and e["ev"] == ev and e["attempt"] == attempt
    }


def wait_ledger(check: Callable[[], bool], timeout: float, what: str, sc: Scenario) -> None:
    try:
        wait_for(check, timeout, what, interval=0.1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{sc.logs_tail()}") from exc


# Rank 0 also hosts the gang's rendezvous store and publishes the image; rank 1 is a plain peer.
@pytest.mark.parametrize("victim_rank", [1, 0], ids=["peer-killed", "rank0-killed"])
def test_gang_member_lost_mid_generation(
    rel_cluster: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, victim_rank: int
) -> None:
    # One torch thread per worker: each stands for one GPU on a 2-core machine.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    catalog = tiny_catalog(tmp_path)
    operator = OperatorOptions(policy="eat-greedy", catalog=catalog)
    workers = WorkerOptions(simulate=None, catalog=catalog, extra=WORKER_FLAGS)
    with scenario(rel_cluster, tmp_path, f"rel-gang-r{victim_rank}", operator, workers, nodes=NODES) as sc:
        doc = task_doc("gang-0", sc.namespace, model="sd15", size=64, steps=(STEPS, STEPS), gang_sizes=[2])
        [name] = sc.tasks.create([doc])
        uid = next(b["metadata"]["uid"] for b in sc.tasks.list() if b["metadata"]["name"] == name)
        wait_ledger(lambda: len(ledger_events(sc, uid, "generate", 1)) == 2, 90, "gang generating", sc)

        survivor_rank = 1 - victim_rank
        victim = ledger_events(sc, uid, "generate", 1)[victim_rank]["node"]
        killed_at = time.monotonic()
        sc.stack.workers[victim].kill()
        wait_ledger(
            lambda: survivor_rank in ledger_events(sc, uid, "end", 1),
            GANG_TIMEOUT_S + 15,
            "survivor failed",
            sc,
        )
        survivor_failed_s = time.monotonic() - killed_at
        sc.restart_worker(victim, workers)

        bodies = sc.tasks.wait_terminal([name], timeout=60)
        result = sc.audit(bodies, 1)
        body = bodies[name]
        placement = st.parse_placement(body)
        first_ends = ledger_events(sc, uid, "end", 1)
        report(
            f"gang-member-lost (rank {victim_rank} killed)",
            figures_of(
                result,
                victim=victim,
                survivor_failed_s=round(survivor_failed_s, 1),
                survivor_reason=first_ends[survivor_rank]["reason"],
                final_attempt=placement.attempt if placement else None,
                final_nodes=list(placement.nodes) if placement else None,
                drained_s=round(time.monotonic() - killed_at, 1),
            ),
        )
        assert st.phase_of(body) == st.SUCCEEDED, (st.status_of(body), sc.logs_tail())
        assert placement is not None and placement.attempt >= 2, st.status_of(body)
        # The survivor failed the attempt (no hang), the killed rank never ended, nothing of
        # attempt 1 was published.
        survivor_end = first_ends[survivor_rank]
        assert not survivor_end["ok"] and survivor_end["reason"] == "GangMemberLost", first_ends
        assert victim_rank not in first_ends and result.interrupted == 1, sc.ledger()
        assert not list((tmp_path / "results").rglob(f"{name}-attempt1.png"))
        final_ends = ledger_events(sc, uid, "end", placement.attempt)
        assert sorted(final_ends) == [0, 1] and all(e["ok"] for e in final_ends.values()), final_ends
        assert result.zero_loss_and_duplicates() and result.executed_twice == 0, result

"""The operator SIGKILLed at random moments (>= 10 times) while a burst is in flight, restarted
each time: nothing lost, nothing placed twice, nothing executed twice.

Tasks keep arriving during the campaign so that kills land while the operator starts, lists,
decides and writes; workers keep claiming and running throughout. Sizes: AIGC_REL_BURST (200),
AIGC_REL_OPERATOR_KILLS (10)."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
from aigc_operator.devcluster import LocalCluster
from aigc_operator.stack import OperatorOptions, WorkerOptions
from harness import burst_docs, figures_of, float_env, int_env, report, scenario

pytestmark = pytest.mark.e2e

BURST = int_env("AIGC_REL_BURST", 200)
KILLS = int_env("AIGC_REL_OPERATOR_KILLS", 10)
ALIVE_S = (float_env("AIGC_REL_ALIVE_MIN_S", 1.0), float_env("AIGC_REL_ALIVE_MAX_S", 6.0))
SEED = int_env("AIGC_REL_SEED", 8)


def test_operator_sigkill_campaign(rel_cluster: LocalCluster, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    operator = OperatorOptions(policy="eat-greedy")
    with scenario(rel_cluster, tmp_path, "rel-opkill", operator, WorkerOptions(time_scale=0.05)) as sc:
        t0 = time.monotonic()
        docs = burst_docs("opkill", sc.namespace, BURST)
        first = len(docs) // 4
        names = sc.tasks.create(docs[:first])
        campaign_s = KILLS * sum(ALIVE_S) / 2

        def trickle() -> None:
            rest = docs[first:]
            gap = campaign_s / max(1, len(rest))
            for doc in rest:
                names.extend(sc.tasks.create([doc]))
                time.sleep(gap)

        feeder = threading.Thread(target=trickle, daemon=True)
        feeder.start()
        assert sc.stack.operator is not None
        alive_times = []
        for _ in range(KILLS):
            alive = rng.uniform(*ALIVE_S)
            time.sleep(alive)
            assert sc.stack.operator.alive(), sc.stack.operator.log_tail()
            sc.stack.operator.kill()
            alive_times.append(round(alive, 2))
            time.sleep(rng.uniform(0.0, 1.0))
            sc.stack.operator.start()
        feeder.join()
        bodies = sc.tasks.wait_terminal(names, timeout=240)
        drained_s = time.monotonic() - t0
        result = sc.audit(bodies, BURST)
        report(
            "operator-sigkill",
            figures_of(
                result,
                kills=len(alive_times),
                operator_starts=sc.stack.operator.starts,
                alive_s=alive_times,
                drain_s=round(drained_s, 1),
            ),
        )
        assert len(alive_times) >= KILLS
        assert result.zero_loss_and_duplicates(), (result, sc.logs_tail())
        assert result.succeeded == BURST, result
        assert result.interrupted == 0 and result.re_executions == 0 and result.max_attempts_seen == 1, result

"""kube-apiserver restarted (down AIGC_REL_APISERVER_DOWN_S, default 5 s) with a burst in flight:
the same operator and worker processes reconnect, the rest of the burst is created after the
restart, everything finishes, nothing is placed or executed twice and nothing is re-run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from aigc_operator.devcluster import LocalCluster
from aigc_operator.stack import OperatorOptions, WorkerOptions
from harness import burst_docs, figures_of, float_env, int_env, report, scenario

pytestmark = pytest.mark.e2e

BURST = int_env("AIGC_REL_APISERVER_BURST", 200)
DOWN_S = float_env("AIGC_REL_APISERVER_DOWN_S", 5.0)


def test_apiserver_restart(rel_cluster: LocalCluster, tmp_path: Path) -> None:
    # The claim TTL must outlast the outage plus the reconnect, else re-placement is correct.
    operator = OperatorOptions(policy="eat-greedy", heartbeat_ttl_s=30.0, claim_timeout_s=60.0)
    with scenario(rel_cluster, tmp_path, "rel-apiserver", operator, WorkerOptions(time_scale=0.3)) as sc:
        half = BURST // 2
        names = sc.tasks.create(burst_docs("api", sc.namespace, half))
        time.sleep(3)
        t0 = time.monotonic()
        sc.cluster.stop_component("kube-apiserver")
        time.sleep(DOWN_S)
        sc.cluster.start_component("kube-apiserver")
        restart_s = time.monotonic() - t0
        names += sc.tasks.create(burst_docs("api", sc.namespace, BURST - half, start=half))
        bodies = sc.tasks.wait_terminal(names, timeout=240)
        result = sc.audit(bodies, BURST)
        report(
            "apiserver-restart",
            figures_of(
                result,
                apiserver_down_s=round(restart_s, 1),
                watch_reconnects=sc.watch.reconnects if sc.watch else None,
                **sc.process_figures(),
            ),
        )
        assert sc.same_processes_throughout(), sc.logs_tail()
        assert result.zero_loss_and_duplicates() and result.succeeded == BURST, (
            result,
            sc.why_waiting(bodies),
            sc.logs_tail(),
        )
        assert result.re_executions == 0 and result.interrupted == 0, result

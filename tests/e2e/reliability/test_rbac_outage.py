"""The operator's AIGCTask ClusterRoleBinding deleted across an API-server restart, so every
reconnect of its watch is refused (403) for AIGC_REL_RBAC_OUTAGE_S (default 65 s: longer than
kopf's own ~54 s retry schedule), then restored. The same operator process resumes watching
without a restart (docs/reliability.md, finding 8), and every task, including the ones created
after the outage, finishes exactly once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from aigc_operator.devcluster import LocalCluster
from aigc_operator.stack import OperatorOptions, WorkerOptions
from harness import burst_docs, figures_of, float_env, int_env, report, scenario

pytestmark = pytest.mark.e2e

OUTAGE_S = float_env("AIGC_REL_RBAC_OUTAGE_S", 65.0)
WAVE = int_env("AIGC_REL_RBAC_WAVE", 20)
BINDING = "aigc-operator-tasks"  # manifests/rbac-operator.yaml: list/watch/patch AIGCTasks


def test_operator_survives_a_long_rbac_outage(rel_cluster: LocalCluster, tmp_path: Path) -> None:
    operator = OperatorOptions(policy="eat-greedy", heartbeat_ttl_s=30.0, claim_timeout_s=120.0)
    with scenario(rel_cluster, tmp_path, "rel-rbac", operator, WorkerOptions(time_scale=0.05)) as sc:
        before = sc.tasks.create(burst_docs("rbac-a", sc.namespace, WAVE))
        sc.tasks.wait_terminal(before, timeout=120)
        t0 = time.monotonic()
        try:
            sc.cluster.kubectl("delete", "clusterrolebinding", BINDING)
            sc.cluster.stop_component("kube-apiserver")  # drops the open watch: it must reconnect
            sc.cluster.start_component("kube-apiserver")
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - t0)))
        finally:
            sc.stack.install()  # the lane shares this cluster: always put the binding back
        outage_s = time.monotonic() - t0
        after = sc.tasks.create(burst_docs("rbac-b", sc.namespace, WAVE))
        bodies = sc.tasks.wait_terminal(before + after, timeout=180)
        result = sc.audit(bodies, 2 * WAVE)
        report("rbac-outage", figures_of(result, outage_s=round(outage_s, 1), **sc.process_figures()))
        assert sc.same_processes_throughout(), sc.logs_tail()
        assert result.zero_loss_and_duplicates() and result.succeeded == 2 * WAVE, (result, sc.logs_tail())

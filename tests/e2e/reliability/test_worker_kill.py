"""A worker SIGKILLed mid-task: its ranks are re-placed once their heartbeats expire and finish;
attempts are counted. A worker that claims and dies on every attempt: the task ends Failed with
MaxAttemptsExceeded naming the last cause. Sizes: AIGC_REL_WORKER_BURST (100)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from aigc_api import GROUP, PLURAL, VERSION
from aigc_api import status as st
from aigc_api.clock import utcnow
from aigc_api.lease import WorkerStatus, to_lease_body
from aigc_operator.devcluster import LocalCluster
from aigc_operator.stack import NAMESPACE, OperatorOptions, WorkerOptions
from harness import (
    Scenario,
    burst_docs,
    custom_api,
    figures_of,
    int_env,
    report,
    running_on,
    scenario,
    task_doc,
    wait_for,
)

pytestmark = pytest.mark.e2e

BURST = int_env("AIGC_REL_WORKER_BURST", 100)
VICTIM = "edge-0"
HEARTBEAT_TTL_S = 8.0


def _wait_running_on(sc: Scenario, node: str, timeout: float = 60.0) -> dict[str, Any]:
    return wait_for(
        lambda: next(iter(running_on(sc.ledger(), node)), None), timeout, f"a task running on {node}", 0.1
    )


def test_worker_killed_mid_task(rel_cluster: LocalCluster, tmp_path: Path) -> None:
    operator = OperatorOptions(policy="eat-greedy", heartbeat_ttl_s=HEARTBEAT_TTL_S, claim_timeout_s=60)
    workers = WorkerOptions(time_scale=1.0, heartbeat_s=1.0)
    with scenario(rel_cluster, tmp_path, "rel-wkill", operator, workers) as sc:
        names = sc.tasks.create(burst_docs("wkill", sc.namespace, BURST))
        victim_run = _wait_running_on(sc, VICTIM)
        killed_at = time.monotonic()
        sc.stack.workers[VICTIM].kill()
        # down for longer than the heartbeat TTL: every rank it held must be re-placed
        time.sleep(HEARTBEAT_TTL_S + 4)
        sc.restart_worker(VICTIM, workers)
        bodies = sc.tasks.wait_terminal(names, timeout=240)
        result = sc.audit(bodies, BURST)
        victim = next(b for b in bodies.values() if b["metadata"]["uid"] == victim_run["uid"])
        replaced = sum(1 for b in bodies.values() if int(st.status_of(b).get("attempts") or 0) > 1)
        report(
            "worker-sigkill",
            figures_of(
                result,
                replaced_tasks=replaced,
                victim_task_attempts=st.status_of(victim).get("attempts"),
                drain_after_kill_s=round(time.monotonic() - killed_at, 1),
            ),
        )
        assert result.zero_loss_and_duplicates(), (result, sc.logs_tail())
        assert result.succeeded == BURST, result
        assert result.interrupted >= 1, result
        assert int(st.status_of(victim)["attempts"]) >= 2, st.status_of(victim)
        assert st.phase_of(victim) == st.SUCCEEDED


def _publish_fake_leases(cluster: LocalCluster, stop: threading.Event) -> None:
    """Every node has a live worker, but not the one that claims: each claim-and-die holder is gone,
    its node already serves a new incarnation (another holderIdentity), so its claims are dead."""
    from kubernetes import client, config

    api = client.CoordinationV1Api(config.new_client_from_config(config_file=str(cluster.info.kubeconfig)))
    nodes = [f"edge-{i}" for i in range(cluster.info.nodes)]
    while not stop.is_set():
        for node in nodes:
            body = to_lease_body(WorkerStatus(node, "restarted-worker", "127.0.0.1:1", utcnow()), NAMESPACE)
            try:
                api.patch_namespaced_lease(
                    body["metadata"]["name"], NAMESPACE, {"metadata": body["metadata"], "spec": body["spec"]}
                )
            except Exception:
                api.create_namespaced_lease(NAMESPACE, body)
        stop.wait(3.0)


def _claim_and_die(custom: Any, namespace: str, name: str, stop: threading.Event) -> set[int]:
    """Claim every rank of each new attempt once, then never renew: a worker that always crashes."""
    claimed: set[int] = set()
    while not stop.is_set():
        body = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        placement = st.parse_placement(body)
        if st.is_terminal(body):
            break
        if placement is not None and placement.attempt not in claimed:
            for rank in range(placement.gang_size):
                patch = st.claim_patch(
                    body, attempt=placement.attempt, rank=rank, holder="claim-and-die", now=utcnow()
                )
                if patch is not None:
                    body = custom.patch_namespaced_custom_object_status(
                        GROUP, VERSION, namespace, PLURAL, name, patch
                    )
            claimed.add(placement.attempt)
        stop.wait(0.3)
    return claimed


def test_max_attempts_then_failed_with_reason(rel_cluster: LocalCluster, tmp_path: Path) -> None:
    max_attempts = 3
    namespace = "rel-maxatt"
    rel_cluster.kubectl("create", "namespace", namespace, check=False)
    stop = threading.Event()
    leases = threading.Thread(target=_publish_fake_leases, args=(rel_cluster, stop), daemon=True)
    leases.start()
    sc = Scenario(rel_cluster, tmp_path, namespace)
    try:
        sc.stack.start_operator(
            OperatorOptions(policy="eat-greedy", heartbeat_ttl_s=3.0, max_attempts=max_attempts)
        )
        custom = custom_api(rel_cluster.info.kubeconfig)
        sc.tasks.create([task_doc("doomed", namespace)])
        t0 = time.monotonic()
        claimed = _claim_and_die(custom, namespace, "doomed", stop)
        body = sc.tasks.wait_terminal(["doomed"], timeout=60)["doomed"]
        failure = st.status_of(body).get("failure") or {}
        report(
            "worker-dies-every-attempt",
            {
                "phase": st.phase_of(body),
                "attempts": st.status_of(body).get("attempts"),
                "attempts_claimed": len(claimed),
                "reason": failure.get("reason"),
                "message": failure.get("message"),
                "seconds": round(time.monotonic() - t0, 1),
            },
        )
        assert st.phase_of(body) == st.FAILED, st.status_of(body)
        assert failure["reason"] == st.MAX_ATTEMPTS_EXCEEDED
        assert st.CLAIM_EXPIRED in failure["message"]
        assert int(st.status_of(body)["attempts"]) == max_attempts == len(claimed)
    finally:
        stop.set()
        sc.stop()

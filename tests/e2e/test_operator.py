"""The operator end to end: real apiserver, real Prometheus scraping a dcgm-format exporter, the
real `aigc-edge operator` process with the least-privilege ServiceAccount of manifests/."""

from __future__ import annotations

import json
import os
import signal
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from aigc_operator.devcluster import LocalCluster
from aigc_operator.devharness import DcgmExporter, OperatorProcess, publish_worker_leases, wait_for
from aigc_operator.policy_loader import load_policies
from aigc_operator.view import MISSING_AGE_FACTOR
from operator_harness import create_tasks, events_for, list_tasks, task_doc

pytestmark = pytest.mark.e2e
T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
OP_NS = "aigc-system"
TASK_NS = "aigc-e2e"
TTL_S = 8
STAMPED_NODE = "edge-1"  # its exporter samples carry timestamps, so a test can freeze them
# The shipped EAT policy when its ONNX file is present, else the EAT heuristic (both may wait).
POLICY = "eat" if load_policies("eat", "eft").primary is not None else "eat-greedy"


@dataclass
class Env:
    cluster: LocalCluster
    operator: OperatorProcess
    exporter: DcgmExporter
    nodes: list[str]
    kubeconfig: Path
    tmp: Path

    def operator_args(self, namespace: str, policy: str) -> list[str]:
        return [
            f"--namespace={OP_NS}",
            f"--watch-namespaces={namespace}",
            f"--perf-profile={MANIFESTS / 'perf-profile.yaml'}",
            f"--catalog={MANIFESTS / 'model-catalog.yaml'}",
            f"--prometheus-url={self.cluster.info.prometheus_url}",
            "--metrics-poll=1",
            f"--metrics-ttl={TTL_S}",
            f"--policy={policy}",
            "--claim-timeout=600",
            "--heartbeat-ttl=600",
        ]


def prom_query(cluster: LocalCluster, query: str) -> list[dict]:
    url = f"{cluster.info.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)["data"]["result"]


def apply_namespace(cluster: LocalCluster, name: str) -> None:
    cluster.kubectl(
        "apply", "-f", "-", input=f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n"
    )


@pytest.fixture(scope="module")
def env(local_cluster_handle: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    cluster = local_cluster_handle
    tmp = tmp_path_factory.mktemp("operator-e2e")
    nodes = [f"edge-{i}" for i in range(cluster.info.nodes)]
    cluster.kubectl("apply", "-f", str(MANIFESTS / "crds" / "aigctasks.yaml"))
    cluster.kubectl("wait", "--for=condition=Established", "crd/aigctasks.aigc.edge.io", "--timeout=30s")
    cluster.kubectl("apply", "-f", str(MANIFESTS / "namespace.yaml"))
    apply_namespace(cluster, TASK_NS)
    cluster.kubectl(
        "apply", "-f", str(MANIFESTS / "rbac-operator.yaml"), "-f", str(MANIFESTS / "rbac-worker.yaml")
    )
    kubeconfig = cluster.kubeconfig_for(OP_NS, "aigc-operator")
    exporter = DcgmExporter(nodes, stamped=frozenset({STAMPED_NODE}))
    cluster.add_scrape_target("dcgm", exporter.address)
    publish_worker_leases(cluster, OP_NS, nodes)
    wait_for(
        lambda: len(prom_query(cluster, "DCGM_FI_DEV_GPU_UTIL")) == len(nodes),
        30,
        "dcgm series in Prometheus",
    )
    e = Env(cluster, None, exporter, nodes, kubeconfig, tmp)  # type: ignore[arg-type]
    e.operator = OperatorProcess(kubeconfig, tmp / "operator.log", *e.operator_args(TASK_NS, POLICY)).start()
    wait_for(
        lambda: (e.operator.health() or {}).get("metricsSource", {}).get("up"), 20, "first Prometheus sample"
    )
    try:
        yield e
    finally:
        e.operator.stop()
        exporter.close()
        cluster.remove_scrape_target("dcgm")


def with_operator_log(env: Env, wait: Callable[[], T]) -> T:
    """Run `wait`; when it times out, add the operator's log tail to the failure."""
    try:
        return wait()
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- operator log tail ---\n{env.operator.log_tail()}") from None


def placed(task: dict) -> bool:
    return bool(task.get("status", {}).get("placement"))


def condition(task: dict, cond_type: str) -> dict:
    return next(c for c in task["status"]["conditions"] if c["type"] == cond_type)


def test_invalid_tasks_are_rejected_with_field_messages(env: Env) -> None:
    files = sorted((MANIFESTS / "examples" / "invalid").glob("*.yaml"))
    assert len(files) >= 6
    for path in files:
        expected = path.read_text().splitlines()[0].removeprefix("# expect: ")
        result = env.cluster.kubectl("apply", "-n", TASK_NS, "-f", str(path), check=False)
        assert result.returncode != 0, f"{path.name} was accepted"
        assert expected in result.stderr, f"{path.name}: {result.stderr}"


def test_tasks_are_placed_with_conditions_events_columns_and_metrics(env: Env) -> None:
    docs = [
        task_doc(f"burst-{i}", TASK_NS, minSteps=1, maxSteps=4, qos={"minQualityMilli": 780})
        for i in range(6)
    ]
    docs.append(task_doc("sd15-a", TASK_NS, model="sd15", steps=20, guidance="7.5"))
    docs.append(
        task_doc("sdxl-gang", TASK_NS, model="sdxl", width=1024, height=1024, steps=20, gangSizes=[2])
    )
    docs.append(task_doc("unknown-model", TASK_NS, model="no-such-model"))
    create_tasks(env.cluster, docs)

    def settled() -> dict | None:
        tasks = list_tasks(env.cluster, TASK_NS)
        ok = all(placed(tasks[d["metadata"]["name"]]) for d in docs[:-1] if d["metadata"]["name"] in tasks)
        failed = tasks.get("unknown-model", {}).get("status", {}).get("phase") == "Failed"
        return tasks if ok and failed and len(tasks) >= len(docs) else None

    tasks = wait_for(settled, 30, "placements")
    for doc in docs[:-1]:
        task = tasks[doc["metadata"]["name"]]
        status, placement = task["status"], task["status"]["placement"]
        assert status["phase"] == "Scheduled" and status["attempts"] == 1 and placement["attempt"] == 1
        assert placement["policy"] == POLICY and "fallbackReason" not in placement
        assert set(placement["nodes"]) <= set(env.nodes) and status["claims"] == []
        assert condition(task, "Scheduled")["reason"] == "PolicyDecision"
        assert condition(task, "MetricsAvailable")["status"] == "True"
        assert 0 <= placement["inputsAgeMillis"] < TTL_S * 1000
        assert status["timings"]["schedulingMillis"] >= 0
    gang = tasks["sdxl-gang"]["status"]["placement"]
    assert gang["gangSize"] == 2 and len(set(gang["nodes"])) == 2
    unknown = tasks["unknown-model"]["status"]
    assert (
        unknown["failure"]["reason"] == "UnknownModel"
        and condition(tasks["unknown-model"], "Succeeded")["status"] == "False"
    )

    table = env.cluster.kubectl("get", "aigct", "-n", TASK_NS).stdout.splitlines()
    assert table[0].split() == ["NAME", "MODEL", "PHASE", "NODES", "GANG", "STEPS", "WAIT", "AGE"]
    row = next(line for line in table if line.startswith("sdxl-gang "))
    assert "sdxl" in row and "Scheduled" in row and " 2 " in row and " 20 " in row

    immutable = env.cluster.kubectl(
        "patch", "aigct", "sd15-a", "-n", TASK_NS, "--type=merge", "-p", '{"spec":{"steps":21}}', check=False
    )
    assert immutable.returncode != 0 and "spec is immutable once the task is scheduled" in immutable.stderr

    def reasons() -> set[tuple[str, str]] | None:
        found = {(e["involvedObject"]["name"], e["reason"]) for e in events_for(env.cluster, TASK_NS)}
        wanted = {("sdxl-gang", "Scheduled"), ("unknown-model", "FailedScheduling")}
        return found if wanted <= found else None

    wait_for(reasons, 15, "Scheduled/FailedScheduling events")
    op = env.operator
    assert op.metric("aigc_scheduler_schedule_attempts_total", result="scheduled") >= 8
    assert op.metric("aigc_scheduler_schedule_attempts_total", result="failed") >= 1
    assert op.metric("aigc_scheduler_scheduling_duration_seconds_count", result="policy") >= 8
    assert op.metric("aigc_scheduler_metrics_source_up") == 1
    assert op.metric("aigc_scheduler_build_info", version="0.1.0") == 1
    for node in env.nodes:
        assert 0 <= op.metric("aigc_scheduler_node_metrics_age_seconds", node=node) < TTL_S
    # kopf caches probe results for 10 s: wait for a payload taken after this test's tasks existed
    # (one from before them also shows an empty queue, and no worker yet).
    health = wait_for(lambda: (h := op.health()) and h["tasksKnown"] > 0 and h["queueDepth"] == 0 and h, 15,
                      "empty queue in health")
    assert health["policy"]["error"] is None and health["workersAlive"] == len(env.nodes)


def test_stale_node_metrics_are_flagged_per_node(env: Env) -> None:
    # dcgm-exporter on edge-1 (the L4) hangs: its samples stop advancing but stay in Prometheus.
    # edge-0's worker is gone, so an SDXL task (too big for the Jetsons) can only go to edge-1.
    missing_age = MISSING_AGE_FACTOR * TTL_S
    env.exporter.freeze(STAMPED_NODE)
    publish_worker_leases(env.cluster, OP_NS, ["edge-0"], busy_s={})
    env.cluster.kubectl(
        "patch",
        "lease",
        "aigc-worker-edge-0",
        "-n",
        OP_NS,
        "--type=merge",
        "-p",
        '{"spec":{"renewTime":"2020-01-01T00:00:00.000000Z"}}',
    )
    try:
        alive = len(env.nodes) - 1
        wait_for(lambda: (env.operator.health() or {}).get("workersAlive") == alive, 20, "edge-0 worker gone")
        age = with_operator_log(
            env,
            lambda: wait_for(
                lambda: (a := env.operator.metric("aigc_scheduler_node_metrics_age_seconds", node="edge-1"))
                > TTL_S
                and a,
                30,
                "edge-1 stale",
            ),
        )
        # Measured from the frozen sample's timestamp, not the age given to a node Prometheus lacks.
        assert age < missing_age
        create_tasks(
            env.cluster,
            [
                task_doc(
                    "on-stale-node", TASK_NS, model="sdxl", width=1024, height=1024, steps=20, gangSizes=[1]
                )
            ],
        )
        task = wait_for(
            lambda: (t := list_tasks(env.cluster, TASK_NS).get("on-stale-node")) and placed(t) and t,
            20,
            "placement",
        )
        placement = task["status"]["placement"]
        assert placement["nodes"] == ["edge-1"] and "fallbackReason" not in placement  # other nodes are fresh
        assert TTL_S * 1000 < placement["inputsAgeMillis"] < missing_age * 1000
        metrics = condition(task, "MetricsAvailable")
        assert (
            metrics["status"] == "False"
            and metrics["reason"] == "MetricsStale"
            and "edge-1" in metrics["message"]
        )
    finally:
        env.exporter.thaw(STAMPED_NODE)
        publish_worker_leases(env.cluster, OP_NS, ["edge-0"])
    wait_for(
        lambda: env.operator.metric("aigc_scheduler_node_metrics_age_seconds", node="edge-1") < TTL_S,
        30,
        "edge-1 fresh",
    )


def test_prometheus_stopped_mid_run_falls_back(env: Env) -> None:
    prometheus_pid = int(env.cluster.info.env["PROMETHEUS_PID"])
    before = env.operator.metric("aigc_scheduler_fallback_decisions_total", reason="PrometheusUnavailable")
    os.kill(prometheus_pid, signal.SIGSTOP)  # hung, not just refusing: the 2 s timeout must hold
    try:
        wait_for(
            lambda: (env.operator.health() or {}).get("metricsSource", {}).get("up") is False,
            30,
            "metrics source down",
        )
        create_tasks(env.cluster, [task_doc(f"no-prom-{i}", TASK_NS) for i in range(3)])
        tasks = wait_for(
            lambda: (
                (ts := list_tasks(env.cluster, TASK_NS))
                and all(placed(ts.get(f"no-prom-{i}", {})) for i in range(3))
                and ts
            ),
            30,
            "fallback placements",
        )
        for i in range(3):
            task = tasks[f"no-prom-{i}"]
            assert task["status"]["placement"]["fallbackReason"] == "PrometheusUnavailable"
            assert condition(task, "Scheduled")["reason"] == "Fallback"
            metrics = condition(task, "MetricsAvailable")
            assert metrics["status"] == "False" and metrics["reason"] == "PrometheusUnavailable"
        assert (
            env.operator.metric("aigc_scheduler_fallback_decisions_total", reason="PrometheusUnavailable")
            >= before + 3
        )
        assert env.operator.metric("aigc_scheduler_metrics_source_up") == 0
        health = env.operator.health()  # liveness stays green while degraded
        assert health is not None and health["fallbackActive"] == "PrometheusUnavailable"
        wait_for(
            lambda: (
                {"no-prom-0"}
                <= {
                    e["involvedObject"]["name"]
                    for e in events_for(env.cluster, TASK_NS)
                    if e["reason"] == "Fallback" and e["type"] == "Warning"
                }
            ),
            15,
            "Fallback events",
        )
    finally:
        os.kill(prometheus_pid, signal.SIGCONT)
    wait_for(
        lambda: (env.operator.health() or {}).get("metricsSource", {}).get("up") is True,
        30,
        "metrics source back",
    )
    create_tasks(env.cluster, [task_doc("prom-back", TASK_NS)])
    task = wait_for(
        lambda: (t := list_tasks(env.cluster, TASK_NS).get("prom-back")) and placed(t) and t, 20, "placement"
    )
    assert "fallbackReason" not in task["status"]["placement"]


def test_corrupt_policy_file_still_schedules_with_fallback(env: Env) -> None:
    namespace = "aigc-e2e-corrupt"
    apply_namespace(env.cluster, namespace)
    corrupt = env.tmp / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x01this is not an onnx model" * 10)
    second = OperatorProcess(
        env.kubeconfig, env.tmp / "operator-corrupt.log", *env.operator_args(namespace, f"eat:{corrupt}")
    )
    second.start()
    try:
        health = second.health()
        assert (
            health["policy"]["policy"] is None
            and health["policy"]["error"]
            and health["policy"]["fallback"] == "eft"
        )
        create_tasks(env.cluster, [task_doc(f"corrupt-{i}", namespace) for i in range(2)])
        tasks = wait_for(
            lambda: (
                (ts := list_tasks(env.cluster, namespace))
                and len(ts) == 2
                and all(placed(t) for t in ts.values())
                and ts
            ),
            30,
            "fallback placements",
        )
        for task in tasks.values():
            assert task["status"]["placement"]["fallbackReason"] == "PolicyUnavailable"
            assert task["status"]["placement"]["policy"] == "eft"
        assert second.metric("aigc_scheduler_fallback_decisions_total", reason="PolicyUnavailable") == 2
    finally:
        second.stop()


def test_operator_killed_mid_burst_loses_nothing_and_places_once(env: Env) -> None:
    count = 150
    docs = [task_doc(f"restart-{i:03d}", TASK_NS) for i in range(count)]
    # kubectl creates them one by one while the operator places them; the kill lands mid-burst and
    # the rest of the burst is created while no operator runs.
    creator = threading.Thread(target=create_tasks, args=(env.cluster, docs))
    creator.start()

    def burst() -> dict[str, dict]:
        return {n: t for n, t in list_tasks(env.cluster, TASK_NS).items() if n.startswith("restart-")}

    wait_for(lambda: sum(placed(t) for t in burst().values()) >= 10, 30, "some placed", interval=0.1)
    env.operator.kill()
    before = {n: t["status"]["placement"] for n, t in burst().items() if placed(t)}
    creator.join()
    assert len(before) < count, "the burst finished before the kill: raise the count"
    env.operator = OperatorProcess(
        env.kubeconfig, env.tmp / "operator-2.log", *env.operator_args(TASK_NS, POLICY)
    ).start()
    tasks = wait_for(
        lambda: (ts := burst()) and len(ts) == count and all(placed(t) for t in ts.values()) and ts,
        90,
        "all burst tasks placed after the restart",
    )
    for name, task in tasks.items():
        assert task["status"]["attempts"] == 1 and task["status"]["placement"]["attempt"] == 1, name
        if name in before:
            assert task["status"]["placement"] == before[name], f"{name} was placed twice"
    wait_for(lambda: env.operator.metric("aigc_scheduler_pending_tasks") == 0, 10, "empty queue")

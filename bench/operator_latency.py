"""Operator latency, backlog and memory on the real local control plane.

    python bench/operator_latency.py [--rate 50 --duration 20] [--backlog-rate 200 --backlog-duration 60]
                                     [--rss-tasks 10000] [--nodes 4] [--out bench/out/operator_latency.json]

1. latency: AIGCTasks created open-loop at --rate/s; latency = client create start -> the
   placement seen on a watch stream (so it includes the watch delay); p50/p99.
2. backlog: --backlog-rate/s for --backlog-duration s; achieved create and placement rates, the
   largest and final backlog (created, not yet placed), and the drain time after creation stops.
   Placements are counted by the operator's counter (no second watch stream loading the shared
   API server); every task's status is checked once at the end.
3. rss: the operator restarted over --rss-tasks AIGCTasks; its RSS once every task is listed.

The operator runs as `aigc-edge operator` with the eft policy (it always places, so the figures
are the operator's own overhead, not a policy choosing to wait), real Prometheus scraping a dcgm
stand-in, simulated worker Leases, and Events on (Normal ones at the default --normal-events-per-s).
Nothing here needs a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for part in ("policy", "operator", "sd-worker"):
    sys.path.insert(0, str(REPO / part))

from aigc_api import GROUP, PLURAL, VERSION  # noqa: E402
from aigc_operator.devcluster import LocalCluster  # noqa: E402
from aigc_operator.devharness import DcgmExporter, OperatorProcess, publish_worker_leases, wait_for  # noqa: E402
from kubernetes import client, config, watch  # noqa: E402

OP_NS = "aigc-system"
TASK_NS = "bench"
MANIFESTS = REPO / "manifests"


def task_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AIGCTask",
        "metadata": {"name": name, "namespace": TASK_NS},
        "spec": {"model": "sd-turbo", "prompt": f"bench {name}", "minSteps": 1, "maxSteps": 4},
    }


class PlacementWatch:
    """Records when each task's placement is first seen on a watch stream."""

    def __init__(self, api: client.CustomObjectsApi) -> None:
        self.placed_at: dict[str, float] = {}
        self._api = api
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        rv = None
        while not self._stop.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    self._api.list_namespaced_custom_object, GROUP, VERSION, TASK_NS, PLURAL,
                    resource_version=rv, timeout_seconds=30, allow_watch_bookmarks=True,
                ):  # fmt: skip
                    obj = event["object"]
                    rv = obj["metadata"]["resourceVersion"]
                    if event["type"] == "BOOKMARK":
                        continue
                    name = obj["metadata"]["name"]
                    if name not in self.placed_at and (obj.get("status") or {}).get("placement"):
                        self.placed_at[name] = time.time()
                    if self._stop.is_set():
                        break
            except client.exceptions.ApiException as exc:
                if exc.status == 410:  # expired resourceVersion: relist from now
                    rv = None
                else:
                    raise

    def stop(self) -> None:
        self._stop.set()


def create_open_loop(
    api: client.CustomObjectsApi,
    prefix: str,
    rate: float,
    duration: float,
    started: dict[str, float] | None = None,
) -> dict[str, float]:
    """Create tasks at `rate`/s for `duration` s, each at its scheduled time; fills and returns
    name -> create start (pass `started` to watch it fill up live)."""
    started = {} if started is None else started
    count = int(rate * duration)
    t0 = time.time() + 0.5

    def create(i: int) -> None:
        delay = t0 + i / rate - time.time()
        if delay > 0:
            time.sleep(delay)
        name = f"{prefix}-{i:06d}"
        started[name] = time.time()
        api.create_namespaced_custom_object(GROUP, VERSION, TASK_NS, PLURAL, task_body(name))

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(create, range(count)))
    return started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def latency_phase(
    api: client.CustomObjectsApi, watcher: PlacementWatch, rate: float, duration: float
) -> dict[str, Any]:
    started = create_open_loop(api, "lat", rate, duration)
    created_at = time.time()
    wait_for(lambda: all(n in watcher.placed_at for n in started), 120, "latency-phase placements", 0.5)
    latencies = [watcher.placed_at[n] - t for n, t in started.items()]
    span = max(started.values()) - min(started.values())
    return {
        "tasks": len(started),
        "target_rate": rate,
        "achieved_create_rate": round(len(started) / span, 1) if span else None,
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p90_ms": round(percentile(latencies, 90) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
        "mean_ms": round(statistics.mean(latencies) * 1000, 1),
        "all_placed_after_last_create_s": round(max(watcher.placed_at[n] for n in started) - created_at, 2),
    }


def backlog_phase(api: client.CustomObjectsApi, operator: OperatorProcess, rate: float, duration: float) -> dict[str, Any]:
    """Counts placements with the operator's own counter (placement writes the API server accepted)
    rather than a second watch stream, which would cost the shared API server as much as the
    operator's own, then checks every task's status once at the end."""

    def placed() -> float:
        return operator.metric("aigc_scheduler_schedule_attempts_total", result="scheduled")

    baseline = placed()
    samples: list[tuple[float, int, float]] = []  # (time, created, placed)
    started: dict[str, float] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.time(), len(started), placed() - baseline))
            time.sleep(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.time()
    create_open_loop(api, "bl", rate, duration, started)
    creation_end = time.time()
    wait_for(lambda: placed() - baseline >= len(started), 600, "backlog drained", 0.5)
    drained = time.time()
    done.set()
    sampler.join()
    unplaced = [
        item["metadata"]["name"]
        for item in list_all(api)
        if item["metadata"]["name"] in started and not (item.get("status") or {}).get("placement")
    ]
    in_window = [p for t, _, p in samples if t <= creation_end]
    return {
        "tasks": len(started),
        "target_rate": rate,
        "achieved_create_rate": round(len(started) / (creation_end - t0), 1),
        "placement_rate_while_creating": round(in_window[-1] / (creation_end - t0), 1) if in_window else None,
        "placement_rate_overall": round(len(started) / (drained - t0), 1),
        "max_backlog": round(max(c - p for _, c, p in samples)),
        "backlog_at_creation_end": round(next((c - p for t, c, p in samples if t >= creation_end), 0)),
        "drain_after_creation_end_s": round(drained - creation_end, 2),
        "unplaced_after_drain": len(unplaced),
    }


def list_all(api: client.CustomObjectsApi) -> list[dict[str, Any]]:
    items, token = [], None
    while True:
        page = api.list_namespaced_custom_object(GROUP, VERSION, TASK_NS, PLURAL, limit=500, _continue=token)
        items += page["items"]
        token = page["metadata"].get("continue")
        if not token:
            return items


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (its share of the machine does not matter)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--backlog-rate", type=float, default=200.0)
    parser.add_argument("--backlog-duration", type=float, default=60.0)
    parser.add_argument("--rss-tasks", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "operator_latency.json")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="aigc-oplat-"))
    cluster = LocalCluster(workdir / "cluster", nodes=args.nodes)
    info = cluster.up()
    results: dict[str, Any] = {"nodes": args.nodes}
    operator: OperatorProcess | None = None
    exporter = None
    try:
        cluster.kubectl("apply", "-f", str(MANIFESTS / "crds" / "aigctasks.yaml"))
        cluster.kubectl("wait", "--for=condition=Established", "crd/aigctasks.aigc.edge.io", "--timeout=30s")
        cluster.kubectl(
            "apply", "-f", str(MANIFESTS / "namespace.yaml"), "-f", str(MANIFESTS / "rbac-operator.yaml")
        )
        cluster.kubectl("create", "namespace", TASK_NS)
        kubeconfig = cluster.kubeconfig_for(OP_NS, "aigc-operator")
        nodes = [f"edge-{i}" for i in range(args.nodes)]
        exporter = DcgmExporter(nodes)
        cluster.add_scrape_target("dcgm", exporter.address)
        publish_worker_leases(cluster, OP_NS, nodes)
        op_args = [
            f"--namespace={OP_NS}", f"--watch-namespaces={TASK_NS}", "--policy=eft",
            f"--perf-profile={MANIFESTS / 'perf-profile.yaml'}", f"--catalog={MANIFESTS / 'model-catalog.yaml'}",
            f"--prometheus-url={info.prometheus_url}", "--claim-timeout=86400", "--heartbeat-ttl=86400",
            "--verbosity=quiet",
        ]  # fmt: skip
        operator = OperatorProcess(kubeconfig, workdir / "operator.log", *op_args).start()
        config.load_kube_config(str(info.kubeconfig))
        cfg = client.Configuration.get_default_copy()
        cfg.connection_pool_maxsize = 64
        api = client.CustomObjectsApi(client.ApiClient(cfg))
        watcher = PlacementWatch(api)
        time.sleep(2)

        pid = operator.proc.pid  # type: ignore[union-attr]
        cpu0 = cpu_seconds(pid)
        results["latency"] = latency_phase(api, watcher, args.rate, args.duration)
        cpu1 = cpu_seconds(pid)
        results["latency"]["operator_cpu_ms_per_task"] = round(
            (cpu1 - cpu0) * 1000 / results["latency"]["tasks"], 2
        )
        print("latency:", json.dumps(results["latency"]), flush=True)
        watcher.stop()
        results["backlog"] = backlog_phase(api, operator, args.backlog_rate, args.backlog_duration)
        results["backlog"]["operator_cpu_ms_per_task"] = round(
            (cpu_seconds(pid) - cpu1) * 1000 / results["backlog"]["tasks"], 2
        )
        print("backlog:", json.dumps(results["backlog"]), flush=True)
        results["rss_mib_after_backlog"] = round(rss_mib(pid), 1)
        results["load_average_1m_at_end"] = os.getloadavg()[0]

        existing = len(list_all(api))
        if existing < args.rss_tasks:
            create_open_loop(api, "fill", 400.0, (args.rss_tasks - existing) / 400.0)
        total = len(list_all(api))
        operator.stop()
        t0 = time.time()
        operator = OperatorProcess(kubeconfig, workdir / "operator-2.log", *op_args).start()
        wait_for(
            lambda: (h := operator.health()) and h["tasksKnown"] >= total and h["queueDepth"] == 0,
            300,
            "resume",
            1.0,
        )
        results["rss"] = {
            "tasks": total,
            "resume_all_listed_and_queue_empty_s": round(time.time() - t0, 1),
            "operator_rss_mib": round(rss_mib(operator.proc.pid), 1),  # type: ignore[union-attr]
        }
        print("rss:", json.dumps(results["rss"]), flush=True)
    finally:
        if operator is not None:
            operator.stop()
        if exporter is not None:
            exporter.close()
        cluster.down()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

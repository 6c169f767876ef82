#!/usr/bin/env python3
"""Load test on the real local control plane: N tasks at R tasks/s onto K fake GPU nodes served by
simulate workers; prints operator placement latency (client create -> placement.decisionTime:
p50/p90/p99/max), operator peak RSS, how long the pending queue takes to drain, and the audit
(lost / placed twice / executed twice). Figures go to stdout and, with --out, to a JSON file.

    PYTHONPATH=policy:operator:sd-worker python bench/load_test.py            # 1000 @ 100/s, 16 nodes
    PYTHONPATH=policy:operator:sd-worker python bench/load_test.py --tasks 200 --rate 50 --nodes 4
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e" / "reliability"))

from aigc_api import status as st  # noqa: E402
from aigc_api.clock import parse_time  # noqa: E402
from aigc_operator.devcluster import LocalCluster  # noqa: E402
from aigc_operator.stack import OperatorOptions, Stack, WorkerOptions  # noqa: E402
from harness import Scenario, burst_docs, metric_value  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return (
        ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))] if ordered else float("nan")
    )


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="tasks created per second")
    parser.add_argument("--nodes", type=int, default=16)
    parser.add_argument("--time-scale", type=float, default=0.02, help="simulate workers' sleep scale")
    parser.add_argument("--policy", default="eat-greedy")
    parser.add_argument(
        "--claim-timeout", type=float, default=60.0, help="operator --claim-timeout (its default)"
    )
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)

    state = args.dir or Path(tempfile.mkdtemp(prefix="aigc-load-"))
    cluster = LocalCluster(state / "cluster", nodes=args.nodes)
    try:
        cluster.up(build_missing=True)
        Stack(cluster, state / "install").install()
        sc = Scenario(cluster, state, "load")
        sc.start(
            OperatorOptions(policy=args.policy), WorkerOptions(time_scale=args.time_scale), ready_timeout=600
        )
        assert sc.stack.operator is not None and sc.stack.operator.pid is not None
        op_pid = sc.stack.operator.pid
        peak_rss, stop = [rss_mib(op_pid)], threading.Event()
        rss_timeline: list[tuple[float, float]] = []  # (minutes since the first create, MiB)

        def sample_rss() -> None:
            while not stop.wait(1.0):
                try:
                    peak_rss.append(rss_mib(op_pid))
                except OSError:
                    return
                minutes = (time.time() - t0) / 60
                if not rss_timeline or minutes - rss_timeline[-1][0] >= 1.0:
                    rss_timeline.append((round(minutes, 1), round(peak_rss[-1], 1)))

        docs = burst_docs("load", sc.namespace, args.tasks)
        created_at: dict[str, float] = {}
        t0 = time.time()
        threading.Thread(target=sample_rss, daemon=True).start()

        def create(i: int) -> None:
            # paced: task i is created at t0 + i / rate
            time.sleep(max(0.0, t0 + i / args.rate - time.time()))
            start = time.time()
            sc.tasks.create([docs[i]])
            created_at[docs[i]["metadata"]["name"]] = start

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(create, range(args.tasks)))
        created_s = time.time() - t0
        pending_zero_at: list[float] = []

        def watch_pending(bodies: list[dict]) -> None:
            if (
                not pending_zero_at
                and metric_value(sc.stack.operator_metrics(), "aigc_scheduler_pending_tasks") == 0
            ):
                pending_zero_at.append(time.time())

        bodies = sc.tasks.wait_terminal(
            list(created_at), timeout=args.timeout, poll=2.0, on_poll=watch_pending
        )
        drained_s = time.time() - t0
        stop.set()
        latencies = []
        for name, body in bodies.items():
            first = st.parse_placement(body)
            decided = parse_time((st.status_of(body).get("placement") or {}).get("decisionTime"))
            if first is not None and decided is not None and first.attempt == 1:
                latencies.append(decided.timestamp() - created_at[name])
        result = sc.audit(bodies, args.tasks)
        figures = {
            "tasks": args.tasks,
            "rate_per_s": args.rate,
            "achieved_rate_per_s": round(args.tasks / created_s, 1),
            "nodes": args.nodes,
            "placement_latency_s": {
                "p50": round(percentile(latencies, 50), 3),
                "p90": round(percentile(latencies, 90), 3),
                "p99": round(percentile(latencies, 99), 3),
                "max": round(max(latencies, default=float("nan")), 3),
                "n": len(latencies),
            },
            "operator_peak_rss_mib": round(max(peak_rss), 1),
            "operator_rss_mib_per_minute": rss_timeline,  # flat in a soak: nothing accumulates
            "pending_queue_zero_after_s": round(pending_zero_at[0] - t0, 1) if pending_zero_at else None,
            "all_terminal_after_s": round(drained_s, 1),
            "succeeded": result.succeeded,
            "failed": result.failed,
            "lost": result.lost,
            "placed_twice": result.placed_twice,
            "executed_twice": result.executed_twice,
            "re_executions": result.re_executions,
            "failure_reasons": result.failure_reasons,
            "max_attempts_seen": result.max_attempts_seen,
        }
        print(json.dumps(figures, indent=2))
        if args.out:
            args.out.write_text(json.dumps(figures, indent=2))
        sc.stop()
        return 0 if result.zero_loss_and_duplicates() and result.succeeded == args.tasks else 1
    finally:
        cluster.down()


if __name__ == "__main__":
    sys.exit(main())

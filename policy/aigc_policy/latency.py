"""`aigc-edge policy-latency`: end-to-end decision latency of an ONNX policy.

Each timed decision is what the operator pays: encode the snapshot, run ONNX Runtime, decode
the placement; `p50_ms` / `p99_ms` are of that sum, and each stage is reported too. States
follow a live cluster of the requested size built from a scenario's GPU classes and models: at
every decision the nodes get a fresh mix of busy, down, warm and cold state and `--new-tasks`
queued tasks are replaced by new arrivals (1 by default: a task is placed, another arrives;
`--new-tasks` equal to `--queue` makes every task new at every decision, the encoder's worst
case). Prints one JSON line. numpy + onnxruntime only.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from aigc_policy.allocator import retain_freed_memory
from aigc_policy.arguments import non_negative_int, positive_int
from aigc_policy.cli import UsageError
from aigc_policy.features import MAX_NODES, MAX_QUEUE, MIN_NODES
from aigc_policy.onnx_policy import OnnxPolicy, PolicyFileError
from aigc_policy.scenario import ScenarioError, load_scenario
from aigc_policy.snapshot import ClusterSnapshot
from aigc_policy.synthetic import next_snapshot, random_snapshot

WARM_UP = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", type=Path, default=None, help="ONNX file (default: the shipped eat policy)")
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--queue", type=int, default=10)
    parser.add_argument("--threads", type=positive_int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--decisions", type=int, default=2000)
    parser.add_argument("--new-tasks", type=int, default=1,
                        help="queued tasks replaced by new arrivals between decisions (--queue: all new)")
    parser.add_argument("--scenario", default="edge-hetero", help="GPU classes and models of the states")
    parser.add_argument("--seed", type=non_negative_int, default=0)


def run(args: argparse.Namespace) -> int:
    if not MIN_NODES <= args.nodes <= MAX_NODES:
        raise UsageError(f"--nodes must be in {MIN_NODES}..{MAX_NODES}")
    if not 1 <= args.queue <= MAX_QUEUE:
        raise UsageError(f"--queue must be in 1..{MAX_QUEUE}")
    if args.decisions < 1000:
        raise UsageError("--decisions must be at least 1000 for a meaningful p99")
    if not 1 <= args.new_tasks <= args.queue:
        raise UsageError("--new-tasks must be in 1..--queue")
    try:
        scenario = load_scenario(args.scenario)
        policy = OnnxPolicy(args.policy, threads=args.threads)
    except (ScenarioError, PolicyFileError) as exc:
        raise UsageError(str(exc)) from None
    rng = np.random.default_rng(args.seed)
    states = [random_snapshot(rng, scenario.perf, args.nodes, args.queue, scenario.gang_sizes)]
    for _ in range(WARM_UP + args.decisions - 1):
        states.append(next_snapshot(rng, states[-1], args.new_tasks))
    for snap in states[:WARM_UP]:  # ORT allocations, the encoder's tables of these tasks
        policy.decide(snap)
    stages = np.array([_timed_decision(policy, snap) for snap in states[WARM_UP:]]) * 1e3  # [decisions, 3] ms
    total = stages.sum(1)
    report = {
        "policy": str(policy.path),
        "nodes": args.nodes,
        "queue": args.queue,
        "new_tasks": args.new_tasks,
        "threads": args.threads,
        "providers": policy.session.get_providers(),
        "retains_freed_memory": retain_freed_memory(),  # as the operator does (aigc_policy.allocator)
        "decisions": args.decisions,
        "p50_ms": _pct(total, 50),
        "p99_ms": _pct(total, 99),
        "mean_ms": round(float(total.mean()), 4),
    }
    for i, stage in enumerate(("encode", "onnx", "decode")):
        report[f"{stage}_p50_ms"], report[f"{stage}_p99_ms"] = _pct(stages[:, i], 50), _pct(stages[:, i], 99)
    print(json.dumps(report))
    return 0


def _timed_decision(policy: OnnxPolicy, snap: ClusterSnapshot) -> tuple[float, float, float]:
    """Seconds spent encoding, in ONNX Runtime and decoding one decision (OnnxPolicy.decide)."""
    t0 = time.perf_counter()
    state = policy.encoder.encode(snap)
    t1 = time.perf_counter()
    if not state.action_mask.any():  # decide() stops here too: nothing to run
        return t1 - t0, 0.0, 0.0
    logits, steps = policy.logits(state)
    t2 = time.perf_counter()
    policy.choose(snap, state, logits, steps)
    return t1 - t0, t2 - t1, time.perf_counter() - t2


def _pct(ms: np.ndarray, q: float) -> float:
    return round(float(np.percentile(ms, q)), 4)

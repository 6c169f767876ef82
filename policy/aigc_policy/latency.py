"""`aigc-edge policy-latency`: end-to-end decision latency of an ONNX policy.

Each timed decision is what the operator pays: encode the snapshot, run ONNX Runtime, decode
the placement. States are random snapshots of the requested size built from a scenario's GPU
classes and models (a fresh mix of busy, down, warm and cold nodes each time). Prints one JSON
line. numpy + onnxruntime only.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from aigc_policy.cli import UsageError
from aigc_policy.features import MAX_NODES, MAX_QUEUE, MIN_NODES
from aigc_policy.onnx_policy import OnnxPolicy, PolicyFileError
from aigc_policy.scenario import ScenarioError, load_scenario
from aigc_policy.synthetic import random_snapshot

DISTINCT_STATES = 200


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", type=Path, default=None, help="ONNX file (default: the shipped eat policy)")
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--queue", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--decisions", type=int, default=2000)
    parser.add_argument("--scenario", default="edge-hetero", help="GPU classes and models of the states")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    if not MIN_NODES <= args.nodes <= MAX_NODES:
        raise UsageError(f"--nodes must be in {MIN_NODES}..{MAX_NODES}")
    if not 1 <= args.queue <= MAX_QUEUE:
        raise UsageError(f"--queue must be in 1..{MAX_QUEUE}")
    if args.decisions < 1000:
        raise UsageError("--decisions must be at least 1000 for a meaningful p99")
    try:
        scenario = load_scenario(args.scenario)
        policy = OnnxPolicy(args.policy, threads=args.threads)
    except (ScenarioError, PolicyFileError) as exc:
        raise UsageError(str(exc)) from None
    rng = np.random.default_rng(args.seed)
    states = [
        random_snapshot(rng, scenario.perf, args.nodes, args.queue, scenario.gang_sizes)
        for _ in range(DISTINCT_STATES)
    ]
    for snap in states[:20]:  # warm-up: ORT allocations, encoder caches
        policy.decide(snap)
    times = np.empty(args.decisions)
    for i in range(args.decisions):
        snap = states[i % DISTINCT_STATES]
        t0 = time.perf_counter()
        policy.decide(snap)
        times[i] = time.perf_counter() - t0
    ms = times * 1e3
    print(json.dumps({
        "policy": str(policy.path),
        "nodes": args.nodes,
        "queue": args.queue,
        "threads": args.threads,
        "providers": policy.session.get_providers(),
        "decisions": args.decisions,
        "p50_ms": round(float(np.percentile(ms, 50)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
        "mean_ms": round(float(ms.mean()), 4),
    }))
    return 0

"""Simulator throughput and memory benchmark (a script, not a timed test).

    python bench/sim_throughput.py [--scenario eat-reference] [--policies round-robin,least-loaded,eft]
                                   [--decisions 200000] [--trace-tasks 1000000]

Prints scheduling decisions per second (policy + simulator) per heuristic policy, timed in
process CPU time so a busy shared machine does not distort the one-core figure,
then replays a generated trace of --trace-tasks tasks and reports peak RSS before and after,
to show memory stays flat.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

from aigc_policy import policies
from aigc_policy.scenario import load_scenario
from aigc_policy.sim import Simulator, TraceWorkload


def decisions_per_second(scenario_name: str, policy_name: str, decisions: int) -> float:
    scenario = load_scenario(scenario_name)
    policy = policies.make(policy_name)
    made, episode, elapsed = 0, 0, 0.0
    sim = Simulator(scenario)  # reused across episodes, as training does
    while made < decisions:
        sim.reset(episode)
        policy.reset(episode)
        snap, step, decide = sim.snapshot(), sim.step, policy.decide
        start = time.process_time()
        while not sim.done:
            step(decide(snap))
        elapsed += time.process_time() - start
        made += sim.metrics.decisions
        episode += 1
    return made / elapsed


def write_trace(path: Path, tasks: int) -> None:
    with path.open("w") as out:
        for i in range(tasks):
            # 2 tasks/s of 1.6 s warm work on 4 nodes: ~80 % utilisation, a stable queue
            out.write(json.dumps({"arrival_s": i * 0.5, "model": "sd14", "width": 512, "height": 512,
                                  "steps": 5, "gang_sizes": [1]}) + "\n")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def trace_replay(tasks: int, policy_name: str) -> dict[str, float]:
    scenario = load_scenario("eat-reference")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.jsonl"
        write_trace(path, tasks)
        before = peak_rss_mb()
        sim = Simulator(scenario, TraceWorkload(path, scenario), seed=0)
        policy = policies.make(policy_name)
        snap, start = sim.snapshot(), time.process_time()
        checkpoints = []
        while not sim.done:
            sim.step(policy.decide(snap))
            if sim.metrics.decisions % (tasks // 4) == 0:
                checkpoints.append(round(peak_rss_mb(), 1))
        seconds = time.process_time() - start
    return {"tasks": sim.metrics.completed, "seconds": round(seconds, 1), "decisions_per_s": round(sim.metrics.decisions / seconds),
            "peak_rss_mb_before": round(before, 1), "peak_rss_mb_quarters": checkpoints, "peak_rss_mb_after": round(peak_rss_mb(), 1)}


def interpreter() -> str:
    """Which CPython ran the figures: builds differ (~12 % on this loop between Debian's python3.11
    and a source build with --enable-shared, which calls libpython through the PLT)."""
    return f"{sys.executable} (Python {platform.python_version()})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="eat-reference")
    parser.add_argument("--policies", default="round-robin,least-loaded,eft,opt-ts")
    parser.add_argument("--decisions", type=int, default=200_000)
    parser.add_argument("--trace-tasks", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"interpreter: {interpreter()}")
    for name in args.policies.split(","):
        rate = decisions_per_second(args.scenario, name, args.decisions)
        print(f"{args.scenario} {name:>14}: {rate:10,.0f} decisions/s")
    if args.trace_tasks:
        print("trace replay:", trace_replay(args.trace_tasks, "round-robin"))


if __name__ == "__main__":
    main()

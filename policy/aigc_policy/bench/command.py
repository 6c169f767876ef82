"""`aigc-edge bench`: every policy on the same episodes; results.json, a table and plots."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from aigc_policy import policies
from aigc_policy.arguments import non_negative_int, positive_int
from aigc_policy.bench.report import _rate_key, markdown_table, plot_cdf, plot_vs_rate, write_json
from aigc_policy.bench.runner import PolicyResult, episode_seeds, run_episode
from aigc_policy.cli import UsageError
from aigc_policy.scenario import Scenario, ScenarioError, load_scenario, parse_rates
from aigc_policy.sim.trace import TraceError, TraceWorkload
from aigc_policy.sim.workload import ScenarioWorkload, Workload

log = logging.getLogger(__name__)
DEFAULT_POLICIES = "eft,least-loaded,round-robin,random"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", default="edge-hetero", help="packaged scenario name or YAML path")
    parser.add_argument("--trace", help="JSON Lines trace to replay instead of the scenario's arrivals")
    parser.add_argument("--rate", help="arrival rate (tasks/s), or a comma-separated list to sweep")
    parser.add_argument("--nodes", type=int, help="rescale the cluster to N nodes (2..64), same class mix")
    parser.add_argument("--policies", default=DEFAULT_POLICIES, help=f"comma-separated (known: {', '.join(policies.names())})")
    parser.add_argument("--episodes", type=positive_int, default=5)
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--out", default="bench/out", help="output directory")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")


def run(args: argparse.Namespace) -> int:
    rates = _rates(args.rate)
    if args.trace and rates != [None]:
        raise UsageError("--rate does not apply to --trace (the trace fixes the arrivals)")
    specs = [s.strip() for s in args.policies.split(",") if s.strip()]
    if not specs:
        raise UsageError("--policies is empty")
    for spec in specs:
        try:
            policies.make(spec).reset(0)  # reset: a shipped ONNX file is opened (and checked) there
        except policies.UnknownPolicy as exc:
            raise UsageError(str(exc)) from None
        except ValueError as exc:  # a bad argument: spt:W, rollout options, eat:PATH's file
            raise UsageError(f"--policies {spec}: {exc}") from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scenarios = {rate: _scenario(args.scenario, args.nodes, rate) for rate in rates}
    seeds = episode_seeds(args.seed, args.episodes)
    results: dict[float | None, dict[str, PolicyResult]] = {rate: {s: PolicyResult() for s in specs} for rate in rates}
    started = time.perf_counter()
    total = len(rates) * len(specs) * len(seeds)
    with tqdm(total=total, desc="bench", unit="episode", delay=3.0, leave=False) as bar:
        for rate, scenario in scenarios.items():
            workload = _workload(scenario, args.trace)
            for spec in specs:
                for seed in seeds:
                    results[rate][spec].episodes.append(_episode(scenario, workload, spec, seed))
                    bar.update()
    log.info("bench finished in %.1f s", time.perf_counter() - started)
    payload = _payload(args, scenarios, rates, results, seeds)
    write_json(out / "results.json", payload)
    table = markdown_table(payload["policies"])
    (out / "results.md").write_text(table + "\n")
    print(table)
    if not args.no_plots:
        _plots(out, scenarios[rates[0]], rates, results, payload)
    print(f"\nwrote {out / 'results.json'}")
    return 0


def _episode(scenario: Scenario, workload: Workload, spec: str, seed: int):
    try:
        return run_episode(scenario, workload, spec, seed)
    except TraceError as exc:
        raise UsageError(str(exc)) from None


def _rates(text: str | None) -> list[float | None]:
    try:
        return [None] if text is None else list(parse_rates(text, "--rate"))
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None


def _scenario(name: str, nodes: int | None, rate: float | None) -> Scenario:
    try:
        return load_scenario(name, nodes=nodes, rate=rate)
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None


def _workload(scenario: Scenario, trace: str | None) -> Workload:
    if trace is None:
        return ScenarioWorkload(scenario)
    try:
        return TraceWorkload(trace, scenario)
    except TraceError as exc:
        raise UsageError(str(exc)) from None


def _payload(args: argparse.Namespace, scenarios: dict[float | None, Scenario], rates: list[float | None],
             results: dict[float | None, dict[str, PolicyResult]], seeds: list[int]) -> dict[str, Any]:
    first = scenarios[rates[0]]
    if len(rates) == 1:
        pooled = {name: r.summary() for name, r in results[rates[0]].items()}
    else:
        pooled = {name: PolicyResult([e for rate in rates for e in results[rate][name].episodes]).summary()
                  for name in results[rates[0]]}
    payload: dict[str, Any] = {
        "scenario": first.name,
        "workload": f"trace {args.trace}" if args.trace else "scenario arrivals",
        "nodes": len(first.nodes),
        "episodes": len(seeds),
        "seed": args.seed,
        "rates": None if rates == [None] else rates,
        "policies": pooled,
    }
    if len(rates) > 1:
        payload["per_rate"] = {
            _rate_key(rate): {name: r.summary() for name, r in results[rate].items()} for rate in rates  # type: ignore[arg-type]
        }
    return payload


def _plots(out: Path, scenario: Scenario, rates: list[float | None],
           results: dict[float | None, dict[str, PolicyResult]], payload: dict[str, Any]) -> None:
    last = rates[-1]
    title = f"{scenario.name}: response-time CDF" + ("" if last is None else f" at rate {last:g}/s")
    plot_cdf(out / "response_cdf.png", {name: r.histogram() for name, r in results[last].items()}, title)
    if len(rates) > 1:
        plot_vs_rate(out / "metrics_vs_rate.png", rates, payload["per_rate"], f"{scenario.name}: metrics vs arrival rate")  # type: ignore[arg-type]

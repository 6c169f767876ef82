"""`aigc-edge train`: behaviour cloning from a heuristic, then discrete SAC, on the simulator.

Read top to bottom:
  1. demos: the teacher (default: the better of `eft` and `opt-ts` at each training rate) runs
     `--demo-episodes` episodes; its decisions, mapped into the action layout, fill a demo buffer
     and the replay buffer (with their rewards).
  2. warm start: `--bc-updates` imitation steps on the demos, each followed by a critic step,
     so the critics know the teacher's values before the actor listens to them. Then
     `--dagger-rounds` rounds of DAgger: the student drives `--dagger-episodes` episodes, the
     teacher labels every state the student reached, `--dagger-updates` more imitation steps;
     best.pt keeps the best evaluated round.
  3. SAC: the stochastic policy collects episodes; one critic + actor update per decision,
     the actor keeping an imitation term on demo batches (SacConfig.bc_weight).
  4. every `--eval-every` updates: deterministic (actions.greedy_action, zero chain noise) evaluation on
     held-out seeds, CSV logs, `last.pt` and `best.pt` checkpoints. `--resume` continues from
     `last.pt` (the replay buffer is rebuilt from fresh episodes).
Training seeds are seed*1000 + episode; evaluation seeds start at 10**6, so they never meet.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from aigc_policy import policies
from aigc_policy.actions import WAIT, decode
from aigc_policy.actions import encode as encode_action
from aigc_policy.arguments import non_negative_int, positive_int
from aigc_policy.cli import UsageError
from aigc_policy.features import FEATURE_SCHEMA_VERSION, EncodedState, Encoder
from aigc_policy.rl import kernels, ts_train
from aigc_policy.rl.agent import choose, step_reward
from aigc_policy.rl.checkpoint import load_checkpoint, save
from aigc_policy.rl.networks import ALGOS, AgentNet
from aigc_policy.rl.replay import Replay, Transition
from aigc_policy.rl.sac_discrete import SacConfig, SacLearner
from aigc_policy.scenario import Scenario, load_scenario, parse_rates
from aigc_policy.scheduler import Scheduler
from aigc_policy.sim import Simulator
from aigc_policy.snapshot import ClusterSnapshot

EVAL_SEED_BASE = 10**6
BC_SHARE = 0.4  # of a wall-clock budget, at most, for the warm start
Actor = Callable[[ClusterSnapshot, EncodedState], tuple[int, int]]  # -> (action, steps bucket)
LOG_FIELDS = ("wall_s", "phase", "updates", "decisions", "episodes", "bc_loss", "critic_loss",
              "q_target", "actor_loss", "entropy", "alpha", "bc_weight", "episode_return")
EVAL_FIELDS = ("wall_s", "updates", "decisions", "mean_response_s", "p95_response_s", "slo_attainment",
               "mean_quality", "cold_starts", "score")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--algo", choices=sorted([*ALGOS, *ts_train.ALGOS]), default="eat")
    parser.add_argument("--scenario", default="edge-hetero")
    parser.add_argument("--rates", default=None,
                        help="comma-separated arrival rates; training episodes cycle through them and "
                             "evaluation averages over them (default: the scenario's own rate)")
    parser.add_argument("--mix", default=None,
                        help="more scenarios to train on with the same policy, '+'-separated SCENARIO:RATE,RATE "
                             "(e.g. eat-reference:0.03,0.07,0.11); each gets its own teacher and demos, "
                             "evaluation scores every scenario")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--budget", default="30m", help="wall-clock ('30m', '90s') or SAC updates ('5000')")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--native-kernels", action="store_true",
                        help="let torch and MKL choose kernels for this CPU (the weights then depend on the CPU type); "
                             "by default both are pinned to kernels that give the same weights on any x86-64 "
                             "CPU with AVX2 (rl/kernels.py)")
    parser.add_argument("--teacher", default="eft,opt-ts",
                        help="heuristic(s) to imitate: at each training rate, the best scoring one of a "
                             "comma-separated list on training seeds is used; 'none' skips the warm start")
    parser.add_argument("--teacher-at", action="append", default=[], metavar="RATE=NAME",
                        help="the teacher at one training rate, not scored against --teacher (repeatable; "
                             "e.g. 1=rollout:samples=2 for a planner too slow to score at every rate)")
    parser.add_argument("--demo-episodes", type=non_negative_int, default=40)
    parser.add_argument("--bc-updates", type=non_negative_int, default=1500)
    parser.add_argument("--dagger-rounds", type=non_negative_int, default=0,
                        help="after behaviour cloning: rounds of student-driven episodes labelled by the teacher")
    parser.add_argument("--dagger-episodes", type=positive_int, default=20, help="student episodes per DAgger round")
    parser.add_argument("--dagger-updates", type=non_negative_int, default=1000, help="imitation steps per DAgger round")
    parser.add_argument("--batch", type=positive_int, default=64)
    parser.add_argument("--eval-every", type=positive_int, default=500, help="SAC updates between evaluations")
    parser.add_argument("--eval-episodes", type=positive_int, default=6)
    parser.add_argument("--threads", type=positive_int, default=1, help="torch threads (1 is fastest on a shared CPU)")
    parser.add_argument("--count-flags", action="store_true",
                        help="with --pool-counts: the context also reads one flag per task count (#tasks > k)")
    parser.add_argument("--task-ranks", action="store_true",
                        help="EAT family: task tokens also read their place in the queue planner's orders")
    parser.add_argument("--pool-counts", action="store_true",
                        help="EAT family: the pooled context also reads how many tasks wait and how many nodes there are")
    ts_train.add_arguments(parser)


def parse_budget(text: str) -> tuple[float | None, int | None]:
    """(seconds, updates): exactly one is set."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(m|min|s|h)?\s*", text)
    if m is None:
        raise UsageError(f"--budget must look like 30m, 90s, 2h or a number of updates, got {text!r}")
    value, unit = float(m.group(1)), m.group(2)
    if unit is None:
        return None, int(value)
    return value * {"s": 1, "m": 60, "min": 60, "h": 3600}[unit], None


def git_commit() -> str:
    """Short commit of the checkout; '-dirty' when tracked files differ from it, so a file trained
    from uncommitted code does not claim a commit that cannot reproduce it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
        if not head.stdout.strip():
            return "unknown"
        changed = subprocess.run(["git", "diff", "--quiet", "HEAD"], capture_output=True, timeout=30).returncode == 1
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return head.stdout.strip() + ("-dirty" if changed else "")


def run_episode(
    sim: Simulator,
    seed: int,
    encoder: Encoder,
    act: Actor,
    record: Callable[[Transition], object] | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> float:
    """One episode (or until `stop()`); returns the sum of rewards.

    Transitions are SMDP: dt is the simulated time to the next decision.
    """
    snap = sim.reset(seed)
    total, pending = 0.0, None
    while snap is not None and not sim.done and not stop():
        state = encoder.encode(snap)
        if not state.action_mask.any():  # nothing placeable and nothing to wait for
            result = sim.step(None)
        else:
            action, bucket = act(snap, state)
            result = sim.step(decode(snap, action, bucket))
            reward = step_reward(result)
            total += reward
            if pending is not None and record is not None:
                record(Transition(*pending, next_state=state))
            pending = (state, action, bucket, reward, result.elapsed_s)
        snap = None if sim.done else sim.snapshot()
    if pending is not None and record is not None:
        record(Transition(*pending, next_state=None))
    return total


def teacher_actor(teacher: Scheduler) -> Actor:
    """The teacher's decisions expressed in the action layout (steps rounded up to a bucket)."""

    def act(snap: ClusterSnapshot, state: EncodedState) -> tuple[int, int]:
        coded = encode_action(snap, teacher.decide(snap))
        if coded is None or coded[0] >= state.action_mask.size or not state.action_mask[coded[0]]:
            coded = (WAIT, 0) if state.action_mask[WAIT] else (int(np.flatnonzero(state.action_mask)[0]), 0)
        return coded

    return act


def dagger_actor(student: Actor, teacher: Actor, labels: dict[int, tuple[int, int]]) -> Actor:
    """The student acts; the teacher's choice in the same state is kept as that state's label."""

    def act(snap: ClusterSnapshot, state: EncodedState) -> tuple[int, int]:
        labels[id(state)] = teacher(snap, state)
        return student(snap, state)

    return act


def pick_teacher(names: list[str], sims: list[Simulator], seed: int) -> tuple[str, Scheduler]:
    """The heuristic that scores best through the action layout on training seeds."""
    if len(names) == 1:
        return names[0], policies.make(names[0])
    scored = []
    for name in names:
        teacher = policies.make(name)
        report = evaluate(teacher_actor(teacher), sims, 2, seed_base=seed * 1000 + 900,
                          before=lambda sim, teacher=teacher: policies.bind(teacher, sim.scenario))
        print(f"teacher candidate {name}:", json.dumps({k: round(v, 3) for k, v in report.items()}))
        scored.append((report["score"], name, teacher))
    _, name, teacher = max(scored, key=lambda item: item[0])
    return name, teacher


def greedy_actor(net: AgentNet) -> Actor:
    rng = np.random.default_rng(0)
    return lambda snap, state: choose(net, state, False, rng)


def evaluate(act: Actor, sims: list[Simulator], episodes: int, seed_base: int = EVAL_SEED_BASE,
             before: Callable[[Simulator], object] = lambda sim: None) -> dict[str, float]:
    """A deterministic actor on `episodes` seeds of every rate; task-weighted means. `before(sim)`
    runs ahead of each rate's episodes (a planner teacher is told the rate it plans for)."""
    encoder, rows = Encoder(), []
    for sim in sims:
        before(sim)
        for e in range(episodes):
            run_episode(sim, seed_base + e, encoder, act)
            rows.append(sim.metrics.summary())
    return summarise(rows)


def evaluate_groups(act: Actor, groups: list[tuple[str, list[Simulator]]], episodes: int) -> dict[str, float]:
    """evaluate() per scenario; with several, the score is the mean of 100 * (SLO - ln(mean response)),
    so a 10 % faster response counts the same in every scenario whatever its time scale."""
    reports = {name: evaluate(act, sims, episodes) for name, sims in groups}
    if len(reports) == 1:
        return next(iter(reports.values()))
    out = {key: float(np.mean([r[key] for r in reports.values()])) for key in next(iter(reports.values()))}
    out["score"] = float(np.mean([100.0 * (r["slo_attainment"] - math.log(max(r["mean_response_s"], 1e-3)))
                                  for r in reports.values()]))
    for name, r in reports.items():
        out[f"{name}_response_s"], out[f"{name}_slo"] = r["mean_response_s"], r["slo_attainment"]
    return out


def _groups(args: argparse.Namespace) -> list[tuple[str, list]]:
    """[(scenario name, [Scenario per rate])] for --scenario/--rates and every --mix entry."""
    specs = [(args.scenario, args.rates, "--rates")]
    for part in (args.mix or "").split("+"):
        if part.strip():
            name, _, rates = part.strip().partition(":")
            specs.append((name, rates or None, f"the rates of --mix {name}"))
    try:
        return [(name, [load_scenario(name, rate=r) for r in ([None] if rates is None else parse_rates(rates, flag))])
                for name, rates, flag in specs]
    except ValueError as exc:  # ScenarioError included
        raise UsageError(str(exc)) from None


def _rate(scenario: Scenario) -> float:
    return float(scenario.arrivals.get("rate", 0.0))


def _teachers_at(entries: list[str], groups: list[tuple[str, list[Scenario]]]) -> dict[float, str]:
    """--teacher-at RATE=NAME entries, each checked against the training rates and the policy names."""
    rates = sorted({_rate(s) for _, scenarios in groups for s in scenarios})
    pinned: dict[float, str] = {}
    for entry in entries:
        rate_text, sep, name = entry.partition("=")
        try:
            rate = float(rate_text)
        except ValueError:
            rate = math.nan
        if not sep or not name or math.isnan(rate):
            raise UsageError(f"--teacher-at {entry!r}: expected RATE=NAME, e.g. 1=rollout:samples=2")
        if rate not in rates:
            raise UsageError(f"--teacher-at {entry!r}: {rate:g} is not a training rate ({', '.join(f'{r:g}' for r in rates)})")
        try:
            policies.make(name)
        except Exception as exc:  # noqa: BLE001 - an unknown name or bad options, reported as usage
            raise UsageError(f"--teacher-at {entry!r}: {exc}") from None
        pinned[rate] = name
    return pinned


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    tasks = sum(r["tasks"] for r in rows) or 1
    out = {key: sum(r[key] * r["tasks"] for r in rows) / tasks
           for key in ("mean_response_s", "p95_response_s", "slo_attainment", "mean_quality")}
    out["cold_starts"] = sum(r["cold_starts"] for r in rows) / len(rows)
    out["score"] = 100.0 * out["slo_attainment"] - out["mean_response_s"]
    return out


def _csv(path: Path, fields: tuple[str, ...]) -> csv.DictWriter:
    new = not path.exists()
    writer = csv.DictWriter(path.open("a", newline="", buffering=1), fieldnames=fields, extrasaction="ignore")
    if new:
        writer.writeheader()
    return writer


def run(args: argparse.Namespace) -> int:
    cpu_kernels = kernels.describe() if args.native_kernels else kernels.pin()  # before torch runs anything
    if args.algo in ts_train.ALGOS:  # LAD-TS family: rl/ts_train.py
        return ts_train.run(args)
    seconds, max_updates = parse_budget(args.budget)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    scenario_groups = _groups(args)
    teacher_at = _teachers_at(args.teacher_at, scenario_groups)
    if args.teacher != "none" and args.demo_episodes < 1:
        raise UsageError("--demo-episodes must be at least 1 with a teacher (or give --teacher none)")
    if args.count_flags and not args.pool_counts:
        raise UsageError("--count-flags extends --pool-counts: give both")
    net_cfg = replace(
        ALGOS[args.algo], pool_counts=args.pool_counts, count_flags=args.count_flags, task_ranks=args.task_ranks
    )
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "algo": args.algo, "scenario": args.scenario, "rates": args.rates, "mix": args.mix, "seed": args.seed,
        "teacher": args.teacher, "teacher_at": args.teacher_at,
        "net": net_cfg.to_dict(), "sac": asdict(SacConfig()),
        "feature_schema_version": FEATURE_SCHEMA_VERSION, "git_commit": git_commit(), "cpu_kernels": cpu_kernels,
    }
    net = AgentNet(net_cfg)
    learner = SacLearner(net, SacConfig())
    progress = {"updates": 0, "decisions": 0, "episodes": 0, "warm_started": False, "best_score": -math.inf}
    last = args.out / "last.pt"
    if args.resume:
        if not last.exists():
            raise UsageError(f"--resume: no checkpoint at {last}")
        net, ckpt = load_checkpoint(last)
        meta["net"] = ckpt["meta"]["net"]  # the checkpoint's architecture, whatever flags the resume has
        learner = SacLearner(net, SacConfig())
        learner.load_state_dict(ckpt["learner"])
        progress = ckpt["progress"]
    (args.out / "config.json").write_text(json.dumps(meta, indent=1))
    log, eval_log = _csv(args.out / "train.csv", LOG_FIELDS), _csv(args.out / "eval.csv", EVAL_FIELDS)
    rng = np.random.default_rng(args.seed)
    replay = Replay(200_000, rng)
    groups = [(name, [Simulator(s) for s in scs]) for name, scs in scenario_groups]
    eval_groups = [(name, [Simulator(s) for s in scs]) for name, scs in scenario_groups]
    sims = [sim for _, group in groups for sim in group]
    demo_sets = [Replay(200_000, rng) for _ in groups]

    def sample_demos(size: int) -> list[Transition]:
        """An equal share of every scenario's demos (the scenarios' episode lengths differ a lot)."""
        full = [d for d in demo_sets if len(d)]
        return [t for i, d in enumerate(full) for t in d.sample(size // len(full) + (i < size % len(full)))]

    encoder = Encoder()
    start = time.monotonic()

    def wall() -> float:
        return time.monotonic() - start

    def clone(updates: int, desc: str) -> None:
        for u in tqdm(range(updates), desc=desc, mininterval=5):
            if seconds and wall() > BC_SHARE * seconds:
                break
            stats = learner.bc_update(sample_demos(args.batch))
            stats |= learner.critic_update(replay.sample(args.batch))
            if u % 100 == 0:
                log.writerow({"wall_s": round(wall(), 1), "phase": "bc", **stats})

    def evaluate_and_keep(label: str) -> None:
        report = evaluate_groups(greedy_actor(net), eval_groups, args.eval_episodes)
        eval_log.writerow({"wall_s": round(wall(), 1), **progress, **report})
        print(f"{label}:", json.dumps({k: round(v, 3) for k, v in report.items()}))
        if report["score"] > progress["best_score"]:
            progress["best_score"] = report["score"]
            save(args.out / "best.pt", net, learner, meta, progress)

    # 1. demonstrations (always collected: they also anchor the actor during SAC)
    teachers: list[list[Scheduler]] = []  # per scenario group, one per rate
    if args.teacher != "none":
        for (scenario, group), demos in zip(groups, demo_sets, strict=True):
            picked = [
                (pinned, policies.make(pinned)) if (pinned := teacher_at.get(_rate(sim.scenario))) else
                pick_teacher(args.teacher.split(","), [sim], args.seed)
                for sim in group
            ]
            teachers.append([teacher for _, teacher in picked])
            for e in range(args.demo_episodes):
                sim, teacher = group[e % len(group)], teachers[-1][e % len(group)]
                policies.bind(teacher, sim.scenario)
                teacher.reset(e)
                run_episode(sim, args.seed * 1000 + 500 + e, encoder, teacher_actor(teacher),
                            lambda t, demos=demos: (demos.add(t), replay.add(t)))
            names = ", ".join(f"{name} (rate {_rate(sim.scenario)})"
                              for (name, _), sim in zip(picked, group, strict=True))
            if len({name for name, _ in picked}) == 1:
                names = f"{picked[0][0]} (every rate)"
            print(f"demos ({scenario}): {len(demos)} decisions from {args.demo_episodes} episodes of {names} "
                  f"({wall():.0f}s)")
    has_demos = any(len(d) for d in demo_sets)
    # 2. warm start
    if args.teacher != "none" and not progress["warm_started"]:
        clone(args.bc_updates, "behaviour cloning")
        progress["warm_started"] = True
        evaluate_and_keep("after warm start")
        for r in range(args.dagger_rounds):
            for (_, group), demos, rate_teachers in zip(groups, demo_sets, teachers, strict=True):
                labels: dict[int, tuple[int, int]] = {}
                for e in range(args.dagger_episodes):
                    sim, teacher = group[e % len(group)], rate_teachers[e % len(group)]
                    student = dagger_actor(greedy_actor(net), teacher_actor(teacher), labels)
                    policies.bind(teacher, sim.scenario)
                    teacher.reset(e)
                    run_episode(sim, args.seed * 1000 + 500 + args.demo_episodes + r * args.dagger_episodes + e,
                                encoder, student, lambda t, demos=demos, labels=labels: (
                                    replay.add(t), demos.add(Transition(t.state, *labels.pop(id(t.state)), t.reward,
                                                                        t.dt, t.next_state))))
            clone(args.dagger_updates, f"dagger round {r + 1}")
            evaluate_and_keep(f"after dagger round {r + 1}")
    # 3. SAC
    bar = tqdm(total=seconds if seconds else max_updates, desc=f"sac ({args.algo})", mininterval=5,
               unit="s" if seconds else "upd")
    since_eval = 0

    def act(snap: ClusterSnapshot, state: EncodedState) -> tuple[int, int]:
        return choose(net, state, True, rng)

    def learn(t: Transition) -> None:
        nonlocal since_eval
        replay.add(t)
        progress["decisions"] += 1
        if len(replay) < args.batch:
            return
        stats = learner.critic_update(replay.sample(args.batch))
        stats |= learner.actor_update(replay.sample(args.batch), sample_demos(args.batch) if has_demos else [])
        progress["updates"] += 1
        since_eval += 1
        if progress["updates"] % 50 == 0:
            log.writerow({"wall_s": round(wall(), 1), "phase": "sac", **progress, **stats})
        bar.n = round(wall()) if seconds else progress["updates"]
        bar.refresh()

    def finished() -> bool:
        return wall() >= seconds if seconds else progress["updates"] >= max_updates

    while not finished():
        episode = progress["episodes"]
        ret = run_episode(sims[episode % len(sims)], args.seed * 1000 + episode % 500, encoder, act, learn, finished)
        progress["episodes"] += 1
        log.writerow({"wall_s": round(wall(), 1), "phase": "episode", **progress, "episode_return": ret})
        if since_eval >= args.eval_every or finished():
            since_eval = 0
            report = evaluate_groups(greedy_actor(net), eval_groups, args.eval_episodes)
            eval_log.writerow({"wall_s": round(wall(), 1), **progress, **report})
            tqdm.write(f"eval @ {progress['updates']} updates: " + json.dumps({k: round(v, 3) for k, v in report.items()}))
            if report["score"] > progress["best_score"]:
                progress["best_score"] = report["score"]
                save(args.out / "best.pt", net, learner, meta, progress)
            save(last, net, learner, meta, progress)
    bar.close()
    print(f"done: {progress['updates']} updates, {progress['episodes']} episodes, best score "
          f"{progress['best_score']:.2f}; checkpoints in {args.out}")
    return 0

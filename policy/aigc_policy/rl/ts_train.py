"""Training and export of the LAD-TS family: `aigc-edge train --algo ladts|d2sac|sac-ts|dqn`.

Loop (spec §5, with the reference's defects fixed unless a quirk flag reproduces them):
every decision is one transition of the deciding agent, completed when that agent decides next;
after every `update_every` decisions per agent (≈ the paper's one update per agent per slot,
E[K] = 25.5) each agent whose buffer is past the warm-up takes one gradient step.

Quirks (all off = fixed):
  stale_next_state   s' of an agent's last task of a slot has zero queues (spec §8.4)
  no_done            no episode boundary: the last transition bootstraps into the next episode
  alpha_collapse     entropy target -1, α can only shrink (spec §8.7)
  keep_memory        the latent memory survives between independent runs (spec §8.5)
  no_slot_load       B(t) missing from the state (spec §8.3)
  simplex_eps        the ε-network ends in a softmax instead of tanh (spec §8.6)
"""

from __future__ import annotations

import argparse
import io
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from aigc_policy.arguments import positive_float, positive_int
from aigc_policy.cli import UsageError
from aigc_policy.rl.dqn_ts import Dqn, DqnConfig
from aigc_policy.rl.ladts import Ladts
from aigc_policy.rl.sac_ts import DiscreteSac, MlpActor, SacConfig
from aigc_policy.rl.ts_env import (
    Decision,
    Observation,
    ObserverConfig,
    TaskScheduler,
    stale_next_state,
    state_dim,
)
from aigc_policy.rl.ts_nets import NETS, AgentReplay, masked
from aigc_policy.rl.ts_onnx import META_KEY, OnnxBrain, session
from aigc_policy.scenario import Scenario, load_scenario
from aigc_policy.sim import Simulator

ALGOS = ("ladts", "d2sac", "sac-ts", "dqn")
QUIRKS = ("stale_next_state", "no_done", "alpha_collapse", "keep_memory", "no_slot_load", "simplex_eps")
LATENT = {"ladts": "memory", "d2sac": "gaussian", "sac-ts": "none", "dqn": "none"}
EVAL_SEED_BASE = 10_000  # evaluation arrivals never overlap training ones


@dataclass
class TrainConfig:
    algo: str = "ladts"
    episodes: int = 60
    max_minutes: float | None = None  # wall-clock cap: stop after the episode that crosses it
    seed: int = 0
    buffer: int = 1000
    warmup: int = 300
    batch: int = 64
    update_every: int = 25
    per_agent: bool = True  # one agent per origin node (the paper), else one shared agent
    quirks: tuple[str, ...] = ()
    sac: SacConfig = field(default_factory=SacConfig)
    dqn: DqnConfig = field(default_factory=DqnConfig)


def build_model(algo: str, n_agents: int, n_nodes: int, cfg: TrainConfig) -> nn.Module:
    sac = SacConfig(**{**asdict(cfg.sac), "alpha_collapse": "alpha_collapse" in cfg.quirks})
    if algo == "dqn":
        return Dqn(n_agents, n_nodes, cfg.dqn)
    if algo == "sac-ts":
        return DiscreteSac(MlpActor(n_agents, n_nodes, sac.hidden, sac.net), n_agents, n_nodes, sac)
    return Ladts(n_agents, n_nodes, sac, latent=LATENT[algo], simplex_eps="simplex_eps" in cfg.quirks)


class ScoreModule(nn.Module):
    """The acting network with the ONNX interface of rl/ts_onnx.py (scores, and memory for LAD-TS)."""

    def __init__(self, model: nn.Module, algo: str, n_nodes: int) -> None:
        super().__init__()
        self.algo = algo
        self.n_nodes = n_nodes
        self.net = model.q if isinstance(model, Dqn) else model.actor

    def input_names(self) -> list[str]:
        return ["state", "agent", "mask", *(["latent", "noise"] if LATENT[self.algo] != "none" else [])]

    def output_names(self) -> list[str]:
        return ["scores", *(["memory"] if LATENT[self.algo] == "memory" else [])]

    def forward(self, state: torch.Tensor, agent: torch.Tensor, mask: torch.Tensor,
                latent: torch.Tensor | None = None, noise: torch.Tensor | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.algo == "dqn":
            return masked(self.net(state, agent), mask)
        probs = self.net(state, latent, agent, mask, noise)
        return (probs, probs) if self.algo == "ladts" else probs

    def example(self) -> tuple[torch.Tensor, ...]:
        n = self.n_nodes
        base = (torch.zeros(1, state_dim(n)), torch.zeros(1, dtype=torch.long), torch.ones(1, n, dtype=torch.bool))
        if LATENT[self.algo] == "none":
            return base
        return (*base, torch.zeros(1, n), torch.zeros(1, self.net.noise_steps, n))


class _LiveWeights(nn.Module):
    """ScoreModule whose parameters are graph inputs, so one export acts with the weights of the moment."""

    def __init__(self, score: ScoreModule) -> None:
        super().__init__()
        self.score = score
        self.slots = [(module, name) for module in score.modules() for name in module._parameters]

    def forward(self, *args: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        n = len(args) - len(self.slots)
        saved = [module._parameters[name] for module, name in self.slots]
        try:  # the tracer records the ops on the inputs standing in for the parameters
            for (module, name), value in zip(self.slots, args[n:], strict=True):
                module._parameters[name] = value
            return self.score(*args[:n])
        finally:
            for (module, name), value in zip(self.slots, saved, strict=True):
                module._parameters[name] = value


def onnx_bytes(score: ScoreModule, live_weights: bool = False) -> bytes:
    module: nn.Module = _LiveWeights(score) if live_weights else score
    args = score.example()
    names = score.input_names()
    if live_weights:
        args = (*args, *(module._parameters[name].detach() for module, name in module.slots))
        names = [*names, *(f"w{i}" for i in range(len(args) - len(names)))]
    buffer = io.BytesIO()
    dynamic = {name: {0: "batch"} for name in [*score.input_names(), *score.output_names()]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), args, buffer, input_names=names, output_names=score.output_names(),
                          dynamic_axes=dynamic, opset_version=17, dynamo=False)
    return buffer.getvalue()


def metadata(algo: str, scenario: Scenario, n_agents: int, model: nn.Module, quirks: tuple[str, ...]) -> dict:
    return {"algo": algo, "n_agents": n_agents, "n_nodes": len(scenario.nodes),
            "node_classes": [n.gpu_class for n in scenario.nodes], "scenario": scenario.name,
            "latent": LATENT[algo], "noise_steps": getattr(getattr(model, "actor", None), "noise_steps", 0),
            "quirks": list(quirks)}


def live_brain(algo: str, model: nn.Module, meta: dict) -> OnnxBrain:
    """Acts through ONNX Runtime (7x faster than torch at batch 1) with the live torch weights."""
    score = ScoreModule(model, algo, meta["n_nodes"])
    weights = {f"w{i}": module._parameters[name].detach().numpy()  # views: optimiser steps show through
               for i, (module, name) in enumerate(_LiveWeights(score).slots)}
    return OnnxBrain(session(onnx_bytes(score, live_weights=True)), meta, extra=weights)


def export(path: Path, algo: str, model: nn.Module, meta: dict) -> None:
    model_bytes = onnx_bytes(ScoreModule(model, algo, meta["n_nodes"]))
    proto = onnx.load_from_string(model_bytes)
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    onnx.save(proto, str(path))


class Collector:
    """Turns the stream of decisions into per-agent transitions (s, a, x_I, r, s', x'_I, done)."""

    def __init__(self, replay: AgentReplay, n_nodes: int, quirks: tuple[str, ...]) -> None:
        self.replay = replay
        self.n_nodes = n_nodes
        self.quirks = quirks
        self.pending: dict[int, tuple[Decision, float]] = {}

    def record(self, decision: Decision, reward: float) -> None:
        obs = decision.obs
        previous = self.pending.pop(obs.agent, None)
        if previous is not None:
            self._store(*previous, obs, decision.latent, done=False)
        self.pending[obs.agent] = (decision, reward)

    def end_episode(self) -> None:
        if "no_done" in self.quirks:
            return  # the next episode's first decision completes them, as in the reference
        for decision, reward in self.pending.values():
            self._store(decision, reward, decision.obs, decision.latent, done=True)
        self.pending.clear()

    def _store(self, d: Decision, reward: float, nxt: Observation, next_latent: np.ndarray, done: bool) -> None:
        next_state = nxt.state
        if "stale_next_state" in self.quirks and nxt.instant != d.obs.instant:
            next_state = stale_next_state(next_state, self.n_nodes)
        self.replay.add(
            d.obs.agent, state=d.obs.state, mask=d.obs.mask, action=d.action, latent=d.latent, reward=reward,
            next_state=next_state, next_mask=nxt.mask, next_latent=next_latent, done=done,
        )


@dataclass
class EpisodeLog:
    episode: int
    mean_delay_s: float
    decisions: int
    updates: int
    seconds: float
    stats: dict[str, float]


def observer_config(n_agents: int, quirks: tuple[str, ...]) -> ObserverConfig:
    return ObserverConfig(n_agents=n_agents, slot_load="no_slot_load" not in quirks)


def agent_count(scenario: Scenario, per_agent: bool) -> int:
    """One agent per node when tasks enter at nodes (slotted LAD-TS arrivals), else one."""
    return len(scenario.nodes) if per_agent and scenario.arrivals.get("kind") == "slotted" else 1


def train(scenario: Scenario, cfg: TrainConfig,
          on_episode: Callable[[EpisodeLog], None] | None = None) -> tuple[nn.Module, TaskScheduler, list[EpisodeLog]]:
    if cfg.algo not in ALGOS:
        raise ValueError(f"algo must be one of {ALGOS}, got {cfg.algo!r}")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    n_nodes, n_agents = len(scenario.nodes), agent_count(scenario, cfg.per_agent)
    model = build_model(cfg.algo, n_agents, n_nodes, cfg)
    meta = metadata(cfg.algo, scenario, n_agents, model, cfg.quirks)
    sched = TaskScheduler(cfg.algo, live_brain(cfg.algo, model, meta), observer_config(n_agents, cfg.quirks),
                          explore=True, gaussian_memory_init=True, keep_memory="keep_memory" in cfg.quirks,
                          seed=cfg.seed)
    replay = AgentReplay(n_agents, cfg.buffer, state_dim(n_nodes), n_nodes)
    collector = Collector(replay, n_nodes, cfg.quirks)
    sim = Simulator(scenario, seed=cfg.seed)
    logs: list[EpisodeLog] = []
    deadline = None if cfg.max_minutes is None else time.monotonic() + 60.0 * cfg.max_minutes
    for episode in range(cfg.episodes):
        if deadline is not None and time.monotonic() > deadline:
            break
        started = time.monotonic()
        snap = sim.reset(cfg.seed * 1_000_003 + episode)
        sched.new_episode()
        delays, updates, since_update, stats = [], 0, 0, {}
        while snap is not None and not sim.done:
            decision = sched.step(snap)
            result = sim.step(None if decision is None else decision.placement)
            if decision is not None and result.placed:
                delays.append(result.response_s)
                collector.record(decision, -result.response_s)
                since_update += 1
            if since_update >= cfg.update_every * n_agents:
                since_update = 0
                ready = replay.ready(cfg.warmup)
                if len(ready):
                    stats = model.update(replay.sample(ready, cfg.batch, rng))
                    updates += 1
            snap = None if sim.done else sim.snapshot()
        collector.end_episode()
        entry = EpisodeLog(episode, float(np.mean(delays)) if delays else float("nan"), len(delays), updates,
                           time.monotonic() - started, stats)
        logs.append(entry)
        if on_episode is not None:
            on_episode(entry)
    return model, sched, logs


def evaluate(scenario: Scenario, sched: TaskScheduler, seeds: list[int]) -> list[float]:
    """Greedy pass: mean service delay of one episode per seed, each an independent run."""
    explore, sched.explore = sched.explore, False
    try:
        out = []
        for seed in seeds:
            sim = Simulator(scenario, seed=seed)
            sched.reset(seed)
            snap = sim.reset(seed)
            delays = []
            while snap is not None and not sim.done:
                result = sim.step(sched.decide(snap))
                if result.placed:
                    delays.append(result.response_s)
                snap = None if sim.done else sim.snapshot()
            out.append(float(np.mean(delays)))
        return out
    finally:
        sched.explore = explore




# ----- `aigc-edge train --algo ladts|d2sac|sac-ts|dqn` (dispatched from rl/train.py) -------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the LAD-TS family; --scenario, --out, --seed, --batch, --threads come from rl/train.py."""
    group = parser.add_argument_group("LAD-TS family (--algo ladts, d2sac, sac-ts, dqn)")
    group.add_argument("--episodes", type=positive_int, default=60, help="training episodes (paper: LAD-TS converges in ~60)")
    group.add_argument("--max-minutes", type=positive_float, default=None, help="wall-clock cap on training")
    group.add_argument("--quirk", action="append", choices=QUIRKS, default=[],
                       help="reproduce a reference-code defect (repeatable); all fixed by default")
    group.add_argument("--update-every", type=positive_int, default=25,
                       help="decisions per agent between gradient steps (paper: 25, one per agent per slot)")
    group.add_argument("--eval-seeds", type=positive_int, default=5, help="greedy evaluation episodes after training")
    group.add_argument("--target-entropy-ratio", type=positive_float, default=SacConfig.target_entropy_ratio,
                       help="SAC temperature target as a fraction of log(#nodes)")
    group.add_argument("--net", choices=tuple(NETS), default="per-node",
                       help="flat: the paper's MLP over the whole state; per-node: one scorer shared by all nodes")
    group.add_argument("--shared-agent", action="store_true", help="one agent for all origins instead of one per node")


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    try:
        scenario = load_scenario(args.scenario)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    cfg = TrainConfig(algo=args.algo, episodes=args.episodes, max_minutes=args.max_minutes, seed=args.seed,
                      batch=args.batch,
                      update_every=args.update_every, per_agent=not args.shared_agent, quirks=tuple(args.quirk),
                      sac=SacConfig(target_entropy_ratio=args.target_entropy_ratio, net=args.net),
                      dqn=DqnConfig(net=args.net))
    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.out / "train.jsonl"
    log_path.write_text("")

    def progress(entry: EpisodeLog) -> None:
        with log_path.open("a") as f:
            f.write(json.dumps(asdict(entry)) + "\n")
        print(f"episode {entry.episode:3d}  mean delay {entry.mean_delay_s:7.3f} s  updates {entry.updates}  "
              f"{entry.seconds:5.1f} s", flush=True)

    model, sched, logs = train(scenario, cfg, progress)
    n_agents = agent_count(scenario, cfg.per_agent)
    path = args.out / f"{args.algo}-{scenario.name}.onnx"
    export(path, args.algo, model, metadata(args.algo, scenario, n_agents, model, cfg.quirks))
    seeds = [EVAL_SEED_BASE + i for i in range(args.eval_seeds)]
    delays = evaluate(scenario, sched, seeds)
    summary = {"algo": args.algo, "scenario": scenario.name, "seed": args.seed, "episodes": len(logs),
               "update_every": args.update_every,
               "quirks": list(cfg.quirks), "eval_seeds": seeds, "eval_mean_delay_s": delays,
               "mean": float(np.mean(delays)), "std": float(np.std(delays)), "onnx": str(path)}
    (args.out / "eval.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"greedy evaluation over {len(seeds)} seeds: {summary['mean']:.3f} ± {summary['std']:.3f} s -> {path}")
    return 0

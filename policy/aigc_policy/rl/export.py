"""`aigc-edge export`: a training checkpoint -> an ONNX policy for onnx_policy.OnnxPolicy.

The graph is rl.inference.InferencePolicy (one state, zero chain noise, masks applied, weights
folded) with dynamic queue, node and action axes. The export is checked by running the file
through ONNX Runtime at several cluster sizes against the training network (AgentNet.policy)
before it is written, because an exporter can bake a trace-time shape into a reshape and still
produce a file that loads, and the folded graph must compute what was trained.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch

from aigc_policy.actions import ACTION_LAYOUT, greedy_action
from aigc_policy.cli import UsageError
from aigc_policy.features import FEATURE_SCHEMA_VERSION, MAX_QUEUE, EncodedState, Encoder
from aigc_policy.onnx_policy import INPUTS, OnnxPolicy
from aigc_policy.placement import STEP_BUCKETS
from aigc_policy.rl.checkpoint import load_checkpoint
from aigc_policy.rl.inference import InferencePolicy
from aigc_policy.rl.networks import AgentNet
from aigc_policy.rl.train import git_commit
from aigc_policy.scenario import ScenarioError, load_scenario
from aigc_policy.snapshot import GANG_SIZES
from aigc_policy.synthetic import random_snapshot

OPSET = 18
CHECK_SIZES = ((2, 1), (4, 10), (9, 5), (64, MAX_QUEUE))  # (nodes, queue)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)


def sample_states(scenario: str, sizes: tuple[tuple[int, int], ...], per_size: int, seed: int) -> list[EncodedState]:
    """Encoded random states of the scenario's models and GPU classes at the given sizes."""
    sc = load_scenario(scenario)
    rng, encoder = np.random.default_rng(seed), Encoder()
    return [
        encoder.encode(random_snapshot(rng, sc.perf, n, q, sc.gang_sizes))
        for n, q in sizes
        for _ in range(per_size)
    ]


def torch_inputs(state: EncodedState) -> tuple[torch.Tensor, ...]:
    """One state as a batch of one."""
    return tuple(torch.from_numpy(np.ascontiguousarray(getattr(state, name)[None])) for name in INPUTS)


def export_onnx(net: AgentNet, example: EncodedState, path: Path, metadata: dict[str, str]) -> None:
    model = InferencePolicy(net).eval()
    axes = {
        "tasks": {1: "queue"},
        "nodes": {1: "nodes"},
        "pairs": {1: "queue", 2: "nodes"},
        "action_mask": {1: "actions"},
        "steps_mask": {1: "queue"},
        "logits": {1: "actions"},
        "steps_logits": {1: "queue"},
    }
    with torch.no_grad():
        torch.onnx.export(
            model, torch_inputs(example), str(path), input_names=list(INPUTS),
            output_names=["logits", "steps_logits"], dynamic_axes=axes, opset_version=OPSET, dynamo=False,
        )
    proto = onnx.load(str(path))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def max_abs_diff(net: AgentNet, policy: OnnxPolicy, states: list[EncodedState]) -> tuple[float, int]:
    """Largest |torch - ORT| over valid logits, relative to the state's logit scale when that
    exceeds 1 (float32 cannot resolve 1e-4 on a logit of 500), and how many states chose a
    different action.

    Torch runs the training network's deterministic path (AgentNet.policy) on states of equal
    size as one unpadded batch; ORT runs each state alone, as the scheduler does.
    """
    net.eval()
    worst, disagree = 0.0, 0
    for group in _same_size_chunks(states, 64):
        batch = {name: torch.from_numpy(np.stack([getattr(s, name) for s in group])) for name in INPUTS}
        batch["task_mask"] = torch.ones(batch["tasks"].shape[:2], dtype=torch.bool)
        batch["node_mask"] = torch.ones(batch["nodes"].shape[:2], dtype=torch.bool)
        with torch.no_grad():
            t_logits, t_steps = (x.numpy() for x in net.policy(batch))
        for b, state in enumerate(group):
            o_logits, o_steps = policy.logits(state)
            for t, o, mask in ((t_logits[b], o_logits, state.action_mask), (t_steps[b], o_steps, state.steps_mask)):
                scale = max(1.0, float(np.abs(t[mask]).max(initial=0.0)))
                worst = max(worst, float(np.abs(t - o)[mask].max(initial=0.0)) / scale)
            disagree += int(greedy_action(t_logits[b]) != greedy_action(o_logits))
    return worst, disagree


def _same_size_chunks(states: list[EncodedState], size: int) -> list[list[EncodedState]]:
    by_shape: dict[tuple[int, int], list[EncodedState]] = {}
    for s in states:
        by_shape.setdefault((s.n_tasks, s.n_nodes), []).append(s)
    return [group[i : i + size] for group in by_shape.values() for i in range(0, len(group), size)]


def run(args: argparse.Namespace) -> int:
    if args.out.is_dir():
        raise UsageError(f"--out {args.out} is a folder: give the path of the .onnx file to write")
    net, ckpt = load_checkpoint(args.checkpoint)
    net.eval()
    meta = ckpt["meta"]
    metadata = {
        "feature_schema_version": str(FEATURE_SCHEMA_VERSION),
        "action_layout": ACTION_LAYOUT,
        "algo": meta["algo"],
        "scenario": meta["scenario"],
        "rates": str(meta.get("rates")),
        "training_seed": str(meta["seed"]),
        "git_commit": meta.get("git_commit", "unknown"),
        "export_commit": git_commit(),
        "cpu_kernels": meta.get("cpu_kernels", "unrecorded (trained before rl/kernels.py)"),
        "gang_sizes": ",".join(map(str, GANG_SIZES)),
        "step_buckets": str(STEP_BUCKETS),
        "max_queue": str(MAX_QUEUE),
        "diffusion_steps": str(net.cfg.diffusion_steps if net.cfg.diffusion else 0),
        "updates": str(ckpt["progress"].get("updates", 0)),
    }
    try:
        states = sample_states(meta["scenario"], CHECK_SIZES, 3, seed=0)
    except ScenarioError as exc:
        raise UsageError(f"{args.checkpoint}: the scenario it was trained on is needed for the parity check: {exc}") from None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.out.parent) as tmp:  # same filesystem: the rename is atomic
        staged = Path(tmp) / "policy.onnx"
        export_onnx(net, states[len(states) // 2], staged, metadata)
        worst, disagree = max_abs_diff(net, OnnxPolicy(staged), states)
        if worst > 1e-4 or disagree:
            raise UsageError(f"export check failed, {args.out} not written: torch vs ORT {worst:.2e}, "
                             f"{disagree} different actions")
        staged.replace(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB), torch vs ORT {worst:.1e} (scaled) at sizes "
          + ", ".join(f"{n}x{q}" for n, q in CHECK_SIZES))
    return 0

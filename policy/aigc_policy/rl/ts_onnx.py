"""ONNX runner of the LAD-TS family (numpy + onnxruntime, no torch): the Brain behind bench and operator.

Model inputs:  state [B, S] float32, agent [B] int64, mask [B, N] bool,
               and for the diffusion actors latent [B, N] float32 (x_I) and noise [B, I-1, N] float32.
Model outputs: scores [B, N] (action probabilities, or masked Q-values for DQN-TS),
               and for LAD-TS memory [B, N]: the value to store under the task's memory key.
The runner owns the latent memory (ts_env.LatentMemory, keyed as documented in ts_env); greedy
decisions take the arg-max of the action distribution averaged over ts_env.GREEDY_CHAIN_SAMPLES
draws of the chain noise, run as one batch.
Metadata (JSON under "ladts"): algo, n_agents, n_nodes, node_classes, latent, noise_steps, quirks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from aigc_policy.placement import Placement
from aigc_policy.rl.ts_env import (
    Observation,
    ObserverConfig,
    TaskScheduler,
    choose_epsilon_greedy,
    choose_from_probs,
)
from aigc_policy.snapshot import ClusterSnapshot

META_KEY = "ladts"
DQN_EPSILON = 0.01


def session(model: bytes | str | Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def read_meta(sess: ort.InferenceSession) -> dict[str, Any]:
    raw = sess.get_modelmeta().custom_metadata_map.get(META_KEY)
    if raw is None:
        raise ValueError("not a LAD-TS-family ONNX policy (no 'ladts' metadata)")
    return json.loads(raw)


class OnnxBrain:
    """The Brain protocol over an ONNX session; `extra` feeds more inputs (live weights in training)."""

    def __init__(self, sess: ort.InferenceSession, meta: dict[str, Any],
                 extra: dict[str, np.ndarray] | None = None) -> None:
        self.sess = sess
        self.meta = meta
        self.latent = meta["latent"]
        self.noise_steps = int(meta["noise_steps"])
        self.value_based = meta["algo"] == "dqn"
        self.extra = extra or {}
        self.inputs = {i.name for i in sess.get_inputs()}

    def scores(self, obs: Observation, latent: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
        draws = 1 if noise is None else len(noise)
        feed = {"state": np.repeat(obs.state[None], draws, 0), "agent": np.full(draws, obs.agent, np.int64),
                "mask": np.repeat(obs.mask[None], draws, 0), **self.extra}
        if "latent" in self.inputs:
            feed["latent"] = np.ascontiguousarray(latent, np.float32)
            feed["noise"] = noise
        return self.sess.run(["scores"], feed)[0].mean(0)

    def choose(self, scores: np.ndarray, mask: np.ndarray, explore: bool, rng: np.random.Generator) -> int:
        if self.value_based:
            return choose_epsilon_greedy(scores, mask, explore, rng, DQN_EPSILON)
        return choose_from_probs(scores, mask, explore, rng)


def observer_config(meta: dict[str, Any]) -> ObserverConfig:
    return ObserverConfig(n_agents=int(meta["n_agents"]), slot_load="no_slot_load" not in meta.get("quirks", []))


def load(path: str | Path, name: str | None = None) -> TaskScheduler:
    sess = session(path)
    meta = read_meta(sess)
    return TaskScheduler(name or meta["algo"], OnnxBrain(sess, meta), observer_config(meta),
                         keep_memory="keep_memory" in meta.get("quirks", []))


def shipped(algo: str) -> list[Path]:
    root = Path(str(resources.files("aigc_policy") / "artifacts"))
    return sorted(root.glob(f"{algo}-*.onnx"))


class ShippedPolicy:
    """`--policies ladts` without a path: the shipped model trained on the snapshot's cluster.

    A model's actions are node indices, so it only fits the node classes it was trained on; the
    choice is made on the first snapshot (by the list of node classes) and kept until reset.
    """

    def __init__(self, algo: str) -> None:
        self.name = algo
        self.algo = algo
        self.inner: TaskScheduler | None = None
        self.seed = 0

    def reset(self, seed: int) -> None:
        self.seed = seed
        if self.inner is not None:
            self.inner.reset(seed)

    def decide(self, snap: ClusterSnapshot) -> Placement | None:
        if self.inner is None:
            self.inner = self._match([n.gpu_class for n in snap.nodes])
            self.inner.reset(self.seed)
        return self.inner.decide(snap)

    def _match(self, classes: list[str]) -> TaskScheduler:
        for path in shipped(self.algo):
            sess = session(path)
            meta = read_meta(sess)
            if meta["node_classes"] == classes:
                return TaskScheduler(self.name, OnnxBrain(sess, meta), observer_config(meta))
        names = ", ".join(p.name for p in shipped(self.algo)) or "none"
        raise ValueError(f"no shipped {self.algo} model for this cluster's nodes (shipped: {names}); "
                         f"pass {self.algo}:PATH")


def factory(algo: str) -> Callable[..., TaskScheduler | ShippedPolicy]:
    """A policies-registry factory: `algo` alone loads the shipped model, `algo:PATH` another file."""

    def make(path: str | None = None) -> TaskScheduler | ShippedPolicy:
        return load(path, algo) if path else ShippedPolicy(algo)
    return make


ladts = factory("ladts")
d2sac = factory("d2sac")
sac_ts = factory("sac-ts")
dqn = factory("dqn")

"""LAD-TS family: vp schedule, latent memory, a short training run, ONNX parity with the memory input."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from aigc_policy.rl import ts_onnx  # noqa: E402
from aigc_policy.rl.ladts import Ladts, vp_schedule  # noqa: E402
from aigc_policy.rl.sac_ts import SacConfig  # noqa: E402
from aigc_policy.rl.ts_env import LatentMemory, ObserverConfig, TaskScheduler, state_dim  # noqa: E402
from aigc_policy.rl.ts_train import TrainConfig, evaluate, export, metadata, train  # noqa: E402
from aigc_policy.scenario import load_scenario  # noqa: E402

# ladts-spec §4.2, k = 0..4
SPEC = {
    "betas": [0.1959, 0.4588, 0.6358, 0.7549, 0.8350],
    "alphas_cumprod": [0.8041, 0.4352, 0.1585, 0.0389, 0.0064],
    "variance": [0.0, 0.1591, 0.4267, 0.6609, 0.8078],
    "c1": [1.0, 0.7284, 0.4984, 0.3127, 0.1657],
    "c2": [0.0, 0.2551, 0.4051, 0.4335, 0.3929],
}


def test_vp_schedule_matches_the_spec_table() -> None:
    s = vp_schedule(steps=5, beta_min=0.1, beta_max=10.0)
    got = {"betas": s.betas, "alphas_cumprod": s.alphas_cumprod, "variance": s.posterior_log_var.exp(),
           "c1": s.c1, "c2": s.c2}
    for name, expected in SPEC.items():
        np.testing.assert_allclose(got[name].numpy(), expected, atol=6e-5, err_msg=name)
    # deterministic gain from x_I to the logits: prod(c1/sqrt(ab) + c2) = 1/sqrt(ab_4) ≈ 12.49
    gain = torch.prod(s.c1 / s.alphas_cumprod.sqrt() + s.c2)
    assert gain.item() == pytest.approx(12.49, abs=0.01)
    assert gain.item() == pytest.approx(1 / s.alphas_cumprod[-1].sqrt().item())


class RecordingBrain:
    """Returns a fixed distribution and records the x_I it was given."""

    latent = "memory"
    noise_steps = 4

    def __init__(self, n: int) -> None:
        self.out = np.linspace(1.0, 2.0, n, dtype=np.float32)
        self.out /= self.out.sum()
        self.seen: list[np.ndarray] = []

    def scores(self, obs, latent, noise):
        self.seen.append(np.array(latent[0]))
        return self.out

    def choose(self, scores, mask, explore, rng):
        return int(np.argmax(np.where(mask, scores, -1)))


@pytest.fixture(scope="module")
def small_ladts():
    """ladts-reference cut to 6 slots of 1..12 tasks per base station: seconds per episode."""
    sc = load_scenario("ladts-reference")
    return replace(sc, arrivals={**sc.arrivals, "slots": 6, "per_node": [1, 12]})


def test_memory_update_rule(small_ladts) -> None:
    sc = small_ladts
    n = len(sc.nodes)
    brain = RecordingBrain(n)
    sched = TaskScheduler("ladts", brain, ObserverConfig(n_agents=n), seed=3)
    from aigc_policy.sim import Simulator

    sim = Simulator(sc, seed=1)
    snap = sim.reset(1)
    first = sched.step(snap)
    assert first is not None
    # an unseen key starts from the uniform distribution when evaluating (no prior)
    np.testing.assert_allclose(brain.seen[0], np.full(n, 1.0 / n))
    # after the decision the memory holds the actor's output under the task's key
    np.testing.assert_allclose(sched.memory.read(first.obs.key), brain.out)
    # the next task under the same key (same agent and ordinal, next slot) is seeded with it
    while not sim.done:
        sim.step(sched.decide(snap) if snap is not None else None)
        snap = None if sim.done else sim.snapshot()
        if snap is not None and snap.now > 0:
            break
    assert snap is not None
    sched.step(snap)
    seeded = [i for i, x in enumerate(brain.seen) if np.allclose(x, brain.out)]
    assert seeded, "a later decision must start its chain from the stored distribution"
    # a new episode keeps the memory, an independent run (reset) does not
    sched.new_episode()
    assert sched.memory.table
    sched.reset(4)
    assert sched.memory is None
    keep = TaskScheduler("ladts", brain, ObserverConfig(n_agents=n), keep_memory=True, seed=3)
    keep.memory = LatentMemory(n, 0, gaussian_init=False)
    keep.memory.write("k", brain.out)
    keep.reset(5)
    assert "k" in keep.memory.table  # --quirk keep_memory: the reference's process-long memory


def test_training_memory_starts_gaussian_and_is_seeded() -> None:
    a, b = LatentMemory(5, 7, gaussian_init=True), LatentMemory(5, 7, gaussian_init=True)
    np.testing.assert_array_equal(a.read("x"), b.read("x"))
    assert not np.allclose(a.read("x"), 0.2)


def test_memory_seeds_the_chain_and_d2sac_ignores_it() -> None:
    torch.manual_seed(0)
    n, dim = 6, state_dim(6)
    model = Ladts(2, n, SacConfig())
    state, agent, mask = torch.randn(1, dim), torch.tensor([1]), torch.ones(1, n, dtype=torch.bool)
    onehot = torch.nn.functional.one_hot(torch.tensor([4]), n).float()
    uniform = torch.full((1, n), 1.0 / n)
    with torch.no_grad():
        p_one = model.actor(state, onehot, agent, mask)
        p_uni = model.actor(state, uniform, agent, mask)
    assert p_one[0, 4] > p_uni[0, 4]  # the 12.5x gain favours last time's choice
    assert model.update_latent(onehot) is onehot
    d2sac = Ladts(2, n, SacConfig(), latent="gaussian")
    assert not torch.equal(d2sac.update_latent(onehot), onehot)


@pytest.mark.timeout(180)
def test_short_training_beats_uniform_random() -> None:
    """Two servers, f = 50 and 13 Gcycles/s: uniform random overloads the slow one."""
    from aigc_policy import policies
    from aigc_policy.sim import Simulator

    sc = load_scenario("ladts-reference")
    sc = replace(sc, nodes=(sc.nodes[0], sc.nodes[17]), arrivals={**sc.arrivals, "slots": 6, "per_node": [1, 20]})
    seeds = [10_000, 10_001]
    cfg = TrainConfig(algo="ladts", episodes=10, seed=0, warmup=64, update_every=2, per_agent=False)
    _, sched, logs = train(sc, cfg)
    assert logs[-1].updates > 0
    learned = float(np.mean(evaluate(sc, sched, seeds)))
    rand, delays = policies.make("random"), []
    for seed in seeds:
        sim = Simulator(sc, seed=seed)
        rand.reset(seed)
        snap = sim.reset(seed)
        while snap is not None and not sim.done:
            result = sim.step(rand.decide(snap))
            delays.append(result.response_s) if result.placed else None
            snap = None if sim.done else sim.snapshot()
    assert learned < 0.7 * float(np.mean(delays))


@pytest.mark.parametrize("net", ["flat", "per-node"])
@pytest.mark.parametrize("algo", ["ladts", "d2sac", "sac-ts", "dqn"])
def test_onnx_parity_with_memory_input(algo: str, net: str, small_ladts, tmp_path) -> None:
    from aigc_policy.rl.dqn_ts import DqnConfig
    from aigc_policy.rl.ts_train import ScoreModule, build_model

    torch.manual_seed(1)
    n = len(small_ladts.nodes)
    model = build_model(algo, n, n, TrainConfig(algo=algo, sac=SacConfig(net=net), dqn=DqnConfig(net=net)))
    meta = metadata(algo, small_ladts, n, model, ())
    path = tmp_path / f"{algo}.onnx"
    export(path, algo, model, meta)
    sess = ts_onnx.session(path)
    assert ts_onnx.read_meta(sess)["algo"] == algo
    rng = np.random.default_rng(0)
    batch = 5
    feed = {"state": rng.normal(size=(batch, state_dim(n))).astype(np.float32),
            "agent": rng.integers(0, n, batch).astype(np.int64),
            "mask": rng.random((batch, n)) > 0.2}
    feed["mask"][:, 0] = True
    names = {i.name for i in sess.get_inputs()}
    if "latent" in names:
        feed["latent"] = rng.dirichlet(np.ones(n), batch).astype(np.float32)
        feed["noise"] = rng.normal(size=(batch, meta["noise_steps"], n)).astype(np.float32)
    outputs = sess.run(None, feed)
    with torch.no_grad():
        expected = ScoreModule(model, algo, n)(*(torch.from_numpy(feed[k]) for k in ScoreModule(model, algo, n).input_names()))
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert len(outputs) == len(expected) == (2 if algo == "ladts" else 1)
    for got, want in zip(outputs, expected, strict=True):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-5)
    if algo == "ladts":  # the memory output is what the runner stores: the action distribution
        np.testing.assert_allclose(outputs[1], outputs[0])
        assert "latent" in names and "memory" in {o.name for o in sess.get_outputs()}


def test_per_node_net_scores_every_node_with_the_same_weights() -> None:
    """Swapping two nodes' blocks in the state swaps their outputs, and nothing else moves."""
    from aigc_policy.rl.ts_nets import PerNodeNet

    torch.manual_seed(0)
    n = 5
    net = PerNodeNet(3, n, hidden=8)
    state = torch.randn(4, state_dim(n))
    swapped = state.clone()
    for block in range(3):
        i, j = 2 + block * n + 1, 2 + block * n + 3
        swapped[:, [i, j]] = state[:, [j, i]]
    agent = torch.tensor([0, 1, 2, 1])
    with torch.no_grad():
        out, out_swapped = net(state, agent), net(swapped, agent)
        batched = net(state.reshape(2, 2, -1), torch.tensor([0, 2]))  # [agents, batch, S], as updates see it
    np.testing.assert_allclose(out_swapped[:, [0, 3, 2, 1, 4]].numpy(), out.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(batched[0, 0].numpy(), out[0].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(batched[1, 1].numpy(), net(state[3:], torch.tensor([2])).detach()[0].numpy(), rtol=1e-5,
                               atol=1e-6)
    assert not torch.allclose(out[1], net(state[1:2], torch.tensor([0])).detach()[0])  # agents have their own weights


def test_simplex_eps_quirk_bounds_the_state_term_and_tanh_does_not() -> None:
    """Reference ε ends in a softmax: the state can only lower logits by ≈ 17.5 in total (spec §4.2)."""
    from aigc_policy.rl.ladts import LatentDiffusionActor

    torch.manual_seed(0)
    n = 4
    for simplex, bound in ((True, 17.6), (False, None)):
        actor = LatentDiffusionActor(1, n, hidden=8, simplex_eps=simplex)
        with torch.no_grad():
            for layer in actor.body.mlp.layers:
                layer.weight.mul_(50.0)  # saturate the output squash
            zero = torch.zeros(64, n)
            logits = actor.logits(torch.randn(64, state_dim(n)), zero, torch.zeros(64, dtype=torch.long), None)
        drop = -logits.sum(-1)
        if bound is not None:
            assert (drop <= bound).all() and (logits <= 1e-5).all()
        else:
            assert (logits > 1.0).any()  # tanh ε can raise a logit too


def test_reference_quirks_reproduce() -> None:
    """Every reference defect flag runs, and alpha_collapse sets the unreachable target -1."""
    from aigc_policy.rl.ts_env import stale_next_state
    from aigc_policy.rl.ts_train import QUIRKS, Collector

    sc = load_scenario("ladts-reference")
    sc = replace(sc, nodes=(sc.nodes[0], sc.nodes[17]), arrivals={**sc.arrivals, "slots": 3, "per_node": [1, 10]})
    model, sched, _ = train(sc, TrainConfig(algo="ladts", episodes=2, warmup=8, update_every=2, quirks=QUIRKS))
    assert model.target_entropy == -1.0
    assert sched.keep_memory and not sched.observer.cfg.slot_load
    state = np.arange(state_dim(2), dtype=np.float32) + 1
    stale = stale_next_state(state, 2)
    assert not stale[2:6].any() and (stale[:2] == state[:2]).all() and (stale[6:] == state[6:]).all()
    from aigc_policy.rl.ts_nets import AgentReplay

    collector = Collector(AgentReplay(1, 10, state_dim(2), 2), 2, ("no_done",))
    collector.pending[0] = ("decision", -1.0)  # type: ignore[assignment]
    collector.end_episode()
    assert collector.pending and collector.replay.size[0] == 0

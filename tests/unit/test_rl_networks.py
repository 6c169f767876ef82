"""Learned-policy networks: noise-complete diffusion schedule, masks, deterministic path."""

from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from aigc_policy.features import MAX_QUEUE, Encoder  # noqa: E402
from aigc_policy.rl.diffusion import LogitDenoiser, cosine_alpha_bar  # noqa: E402
from aigc_policy.rl.networks import ALGOS, NEG, AgentNet, count_features  # noqa: E402
from aigc_policy.rl.replay import collate  # noqa: E402
from aigc_policy.scenario import load_scenario  # noqa: E402
from aigc_policy.synthetic import random_snapshot  # noqa: E402


@pytest.mark.parametrize("steps", [5, 6, 8, 10])
def test_schedule_is_noise_complete(steps):
    alpha_bar = cosine_alpha_bar(steps)
    assert alpha_bar[-1] < 1e-2
    assert (alpha_bar[1:] < alpha_bar[:-1]).all()


def test_configured_chain_is_noise_complete():
    chain = AgentNet(ALGOS["eat"]).actor.chain
    assert chain is not None and float(chain.alpha_bar[-1]) < 1e-2


def test_last_reverse_step_returns_the_clean_prediction():
    d = LogitDenoiser(8, 6)
    assert float(d.c_x0[0]) == pytest.approx(1.0) and float(d.c_xt[0]) == pytest.approx(0.0)
    assert float(d.sigma[0]) == 0.0


def batch_of(sizes):
    sc = load_scenario("edge-hetero")
    rng = np.random.default_rng(0)
    return collate([Encoder().encode(random_snapshot(rng, sc.perf, n, q, sc.gang_sizes)) for n, q in sizes])


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_masked_logits_and_value_shapes(algo):
    torch.manual_seed(0)
    net = AgentNet(ALGOS[algo])
    batch = batch_of([(3, 2), (5, 4), (2, 1)])
    logits, steps = net.policy(batch, net.chain_noise(batch))
    assert logits.shape == batch["action_mask"].shape
    assert (logits[~batch["action_mask"]] == NEG).all()
    assert (steps[~batch["steps_mask"]] == NEG).all()
    for q_place, q_steps in net.q_values(batch):
        assert q_place.shape == logits.shape and q_steps.shape == steps.shape


@pytest.mark.parametrize("options", [{}, {"pool_counts": True}, {"task_ranks": True}], ids=["plain", "counts", "ranks"])
def test_padding_does_not_change_a_state_s_logits(options):
    torch.manual_seed(0)
    net = AgentNet(replace(ALGOS["eat"], **options)).eval()
    alone = batch_of([(3, 2)])
    padded = batch_of([(3, 2), (6, 5)])
    with torch.no_grad():
        a, _ = net.policy(alone)
        b, _ = net.policy(padded)
    n_alone, n_pad = 3, 6
    # re-index the padded layout (N = 6) back to the state's own (N = 3)
    flat = b[0, 1:].reshape(5, 4, n_pad)[:2, :, :n_alone].reshape(-1)
    valid = alone["action_mask"][0, 1:]
    torch.testing.assert_close(flat[valid], a[0, 1:][valid], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("pool_counts", [False, True])
def test_only_a_context_that_reads_counts_tells_a_queue_from_the_same_queue_twice(pool_counts):
    """Mean pooling cannot count: a queue of two identical tasks pools like a queue of one. The
    queue planner holds tasks until the visible window is nearly full, so a student must count."""
    torch.manual_seed(0)
    net = AgentNet(replace(ALGOS["eat"], pool_counts=pool_counts)).eval()
    one = batch_of([(3, 1)])
    two = one | {"tasks": one["tasks"].repeat(1, 2, 1), "task_mask": one["task_mask"].repeat(1, 2)}
    with torch.no_grad():
        ctx_one, ctx_two = net.encode(one)[2], net.encode(two)[2]
    assert torch.allclose(ctx_one, ctx_two, atol=1e-6) != pool_counts


def test_count_flags_step_between_adjacent_counts_where_the_log_count_barely_moves():
    counts = torch.tensor([15.0, 16.0])
    log_only = count_features(counts, torch.tensor([8.0, 8.0]), flags=False)
    flagged = count_features(counts, torch.tensor([8.0, 8.0]), flags=True)
    assert flagged.shape == (2, 2 + MAX_QUEUE) and torch.equal(flagged[:, :2], log_only)
    assert (log_only[1] - log_only[0]).abs().max() < 0.1
    assert flagged[0, 2:].tolist() == [1.0] * 14 + [0.0] * (MAX_QUEUE - 14)  # 15 > k for k = 1..14
    assert (flagged[1, 2:] - flagged[0, 2:]).tolist() == [0.0] * 14 + [1.0] + [0.0] * (MAX_QUEUE - 15)
    net = AgentNet(replace(ALGOS["eat"], pool_counts=True, count_flags=True))
    assert net.encoder.pool[0].in_features == 2 * ALGOS["eat"].width + 2 + MAX_QUEUE


def test_deterministic_path_is_repeatable_and_noise_matters():
    torch.manual_seed(0)
    net = AgentNet(ALGOS["eat"])
    batch = batch_of([(4, 3)])
    with torch.no_grad():
        first, _ = net.policy(batch)
        second, _ = net.policy(batch)
        noisy, _ = net.policy(batch, net.chain_noise(batch))
    assert torch.equal(first, second)
    assert not torch.equal(first, noisy)


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_logits_stay_within_the_configured_bound(algo):
    """Bounded logits keep the policy stochastic enough for the entropy term to act after BC."""
    torch.manual_seed(0)
    net = AgentNet(ALGOS[algo])
    bound = ALGOS[algo].logit_bound
    assert bound > 0
    for p in net.actor.parameters():  # an over-confident actor, as imitation leaves it
        p.data.mul_(50.0)
    batch = batch_of([(5, 4), (3, 2)])
    with torch.no_grad():
        logits, steps = net.policy(batch)
    assert logits[batch["action_mask"]].abs().max() <= bound
    assert steps[batch["steps_mask"]].abs().max() <= bound


def test_checkpoints_of_the_first_architecture_still_build():
    """A NetConfig saved before the lean/bounded fields existed rebuilds the old network."""
    from aigc_policy.rl.networks import NetConfig

    old = NetConfig(**{"attention": True, "diffusion": True, "width": 64, "pair_width": 32, "heads": 4,
                       "diffusion_steps": 6, "cond_width": 16})
    net = AgentNet(old)
    assert old.logit_bound == 0 and not old.lean_actor and net.actor.head.hidden is not None
    logits, _ = net.policy(batch_of([(3, 2)]))
    assert torch.isfinite(logits).all()

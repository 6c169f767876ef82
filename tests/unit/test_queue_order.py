"""Task rank features (rl/queue_order.py) against the queue planner's own orders."""

import torch
from aigc_policy import policies
from aigc_policy.baselines.queue_planner import RULES, _rows
from aigc_policy.features import MAX_QUEUE, Encoder
from aigc_policy.rl.queue_order import ORDERS, RANK_WIDTH, task_rank_features
from aigc_policy.scenario import load_scenario
from aigc_policy.sim import Simulator


def ranks_of(features: torch.Tensor, order: int) -> list[int]:
    return (features[:, 2 * order + 1] * MAX_QUEUE).round().long().tolist()


def test_ranks_read_from_the_encoded_state_sort_the_queue_as_the_planner_s_rules_do():
    """Every order is rebuilt from the encoder's squashed tensors alone; on a loaded edge-hetero run
    it must match the planner's sort of its own rows, ties and tasks that cannot make their
    deadlines included, and flag exactly one first task."""
    scenario = load_scenario("edge-hetero", rate=4.0)
    sim, planner, encoder = Simulator(scenario, seed=3), policies.make("queue-plan", scenario), Encoder()
    planner.reset(3)
    checked, longest = 0, 0
    while not sim.done and checked < 150:
        snap = sim.snapshot()
        rows = _rows(snap)
        if snap.queue and len(rows) == len(snap.queue):
            state = encoder.encode(snap)
            features = task_rank_features(torch.tensor(state.tasks)[None], torch.tensor(state.pairs)[None], None)[0]
            assert features.shape == (len(snap.queue), RANK_WIDTH)
            for k, name in enumerate(ORDERS):
                expected = [rows[j].index for j in RULES[name](rows, snap.now)]
                ranks = ranks_of(features, k)
                assert sorted(range(len(ranks)), key=ranks.__getitem__) == expected, name
                assert features[:, 2 * k].tolist() == [float(r == 0) for r in ranks]
            checked, longest = checked + 1, max(longest, len(snap.queue))
        sim.step(planner.decide(snap) if snap.queue else None)
    assert checked == 150 and longest >= 8  # a queue long enough for the orders to differ


def test_padding_tokens_take_no_rank_and_masked_tasks_keep_theirs():
    scenario = load_scenario("edge-hetero", rate=4.0)
    sim = Simulator(scenario, seed=5)
    planner = policies.make("queue-plan", scenario)
    planner.reset(5)
    snap = sim.snapshot()
    while len(snap.queue) < 4:
        sim.step(planner.decide(snap) if snap.queue else None)
        snap = sim.snapshot()
    state = Encoder().encode(snap)
    tasks, pairs = torch.tensor(state.tasks)[None], torch.tensor(state.pairs)[None]
    alone = task_rank_features(tasks, pairs, None)
    padded_tasks = torch.cat([tasks, torch.zeros_like(tasks[:, :2])], 1)
    padded_pairs = torch.cat([pairs, torch.zeros_like(pairs[:, :2])], 1)
    mask = torch.arange(padded_tasks.shape[1])[None] < tasks.shape[1]
    padded = task_rank_features(padded_tasks, padded_pairs, mask)
    assert torch.equal(padded[:, : tasks.shape[1]], alone)

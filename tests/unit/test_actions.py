"""Action layout: every unmasked action decodes to a placement the simulator accepts."""

import numpy as np
import pytest
from aigc_policy import policies
from aigc_policy.actions import (
    WAIT,
    InvalidAction,
    action_count,
    action_index,
    bucket_steps,
    decode,
    encode,
    greedy_action,
    split_action,
)
from aigc_policy.features import Encoder
from aigc_policy.placement import STEP_BUCKETS, allowed_gang_sizes, min_acceptable_steps
from aigc_policy.scenario import load_scenario
from aigc_policy.sim import Simulator
from aigc_policy.snapshot import GANG_SIZES
from aigc_policy.synthetic import random_snapshot


def test_index_layout_round_trips():
    n = 7
    seen = set()
    for i in range(3):
        for g in range(len(GANG_SIZES)):
            for j in range(n):
                a = action_index(i, g, j, n)
                assert split_action(a, n) == (i, g, j)
                seen.add(a)
    assert seen == set(range(1, action_count(3, n)))


@pytest.mark.parametrize("scenario", ["edge-hetero", "eat-reference", "ladts-reference"])
def test_unmasked_actions_decode_to_valid_placements(scenario):
    sc = load_scenario(scenario)
    rng = np.random.default_rng(3)
    for _ in range(15):
        snap = random_snapshot(rng, sc.perf, 6, 6, sc.gang_sizes)
        e = Encoder().encode(snap)
        for a in np.flatnonzero(e.action_mask[1:]) + 1:
            for bucket in np.flatnonzero(e.steps_mask[split_action(a, 6)[0]]):
                p = decode(snap, int(a), int(bucket))
                task = snap.queue[p.task_index]
                assert p.gang_size in allowed_gang_sizes(snap, task)
                assert len(set(p.nodes)) == p.gang_size
                assert all(snap.nodes[i].up for i in p.nodes)
                assert min_acceptable_steps(snap.perf, task) <= p.steps <= task.max_steps


def test_masked_actions_raise_instead_of_becoming_no_ops():
    sc = load_scenario("edge-hetero")
    rng = np.random.default_rng(4)
    raised = 0
    for _ in range(10):
        snap = random_snapshot(rng, sc.perf, 4, 4, sc.gang_sizes)
        e = Encoder().encode(snap)
        for a in np.flatnonzero(~e.action_mask[1:]) + 1:
            task, gang, _ = split_action(int(a), 4)
            if GANG_SIZES[gang] not in allowed_gang_sizes(snap, snap.queue[task]):
                continue  # the gang exists but the task forbids its size: the mask is the guard
            with pytest.raises(InvalidAction):
                decode(snap, int(a), 0)
            raised += 1
    assert raised > 0


def test_wait_is_masked_and_refused_without_future_events():
    sc = load_scenario("edge-hetero")
    snap = random_snapshot(np.random.default_rng(5), sc.perf, 4, 3, sc.gang_sizes)
    snap.has_future_events = False
    assert not Encoder().encode(snap).action_mask[WAIT]
    with pytest.raises(InvalidAction):
        decode(snap, WAIT, 0)
    snap.has_future_events = True
    assert Encoder().encode(snap).action_mask[WAIT] and decode(snap, WAIT, 0) is None


def test_bucket_zero_is_the_fewest_acceptable_steps():
    sc = load_scenario("edge-hetero")
    snap = random_snapshot(np.random.default_rng(6), sc.perf, 4, 10, sc.gang_sizes)
    for task in snap.queue:
        steps = bucket_steps(snap.perf, task)
        assert len(steps) == STEP_BUCKETS and steps == sorted(steps)
        assert steps[0] == min_acceptable_steps(snap.perf, task) and steps[-1] == task.max_steps


@pytest.mark.parametrize("scenario", ["edge-hetero", "eat-reference"])
def test_heuristic_placements_are_expressible(scenario):
    """BC labels: eft's gangs encode to an unmasked action that decodes to the same gang."""
    sim, eft = Simulator(load_scenario(scenario)), policies.make("eft")
    sim.reset(11)
    checked = 0
    while not sim.done and checked < 60:
        snap = sim.snapshot()
        placement = eft.decide(snap)
        coded = encode(snap, placement)
        assert coded is not None
        if placement is not None and placement.task_index < 32:
            state = Encoder().encode(snap)
            assert state.action_mask[coded[0]]
            again = decode(snap, *coded)
            assert again.nodes == tuple(sorted(placement.nodes)) and again.steps >= placement.steps
            checked += 1
        sim.step(placement)
    assert checked > 0


MASKED = -1e9  # what the networks put on masked actions


@pytest.mark.parametrize(
    ("logits", "expected"),
    [
        ([2.0, 1.5, 1.5, 1.5], 1),  # wait is the single likeliest action, but placing is likelier
        ([3.0, 1.0, 1.0, 1.0], 0),  # wait outweighs every placement together
        ([0.0, 0.0, MASKED, MASKED], 0),  # a tie between waiting and placing waits
        ([MASKED, 0.5, 2.0, 1.0], 2),  # wait masked: the likeliest placement
        ([0.0, MASKED, MASKED, MASKED], 0),  # nothing to place
        ([5.0], 0),  # an empty queue
    ],
)
def test_greedy_choice_weighs_waiting_against_placing_at_all(logits, expected):
    assert greedy_action(np.array(logits)) == expected


def test_greedy_choice_matches_its_definition_on_random_logits():
    """Wait exactly when exp(wait) >= the summed exp of every placement; otherwise the arg-max
    placement. Wait logits are drawn around the top placement, so both outcomes are frequent."""
    rng = np.random.default_rng(11)
    outcomes = set()
    for _ in range(2000):
        logits = rng.normal(0.0, 2.0, int(rng.integers(2, 300))).astype(np.float32)
        logits[rng.random(logits.size) < 0.5] = MASKED
        logits[0] = logits[1:].max() + rng.normal(0.0, 3.0) if logits[1:].max() > MASKED else 0.0
        placing = np.logaddexp.reduce(logits[1:].astype(np.float64))
        expected = 0 if logits[0] >= placing else int(logits[1:].argmax()) + 1
        assert greedy_action(logits) == expected
        outcomes.add(expected == 0)
    assert outcomes == {True, False}

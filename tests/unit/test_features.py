"""Feature encoder: shapes, normalisation, masks, and agreement with placement pricing."""

import math

import numpy as np
import pytest
from aigc_policy.actions import split_action
from aigc_policy.features import (
    MAX_QUEUE,
    NODE_FEATURES,
    PAIR_FEATURES,
    PAIR_FIELDS,
    TASK_FEATURES,
    TASK_FIELDS,
    TIME_SCALE_S,
    Encoder,
)
from aigc_policy.placement import (
    STEP_BUCKETS,
    allowed_gang_sizes,
    complete_gang,
    estimate,
    min_acceptable_steps,
)
from aigc_policy.scenario import load_scenario
from aigc_policy.snapshot import GANG_SIZES
from aigc_policy.synthetic import random_snapshot

SCENARIOS = ("edge-hetero", "eat-reference", "ladts-reference")


def states(scenario: str, n_nodes: int, n_tasks: int, count: int, seed: int = 0):
    sc = load_scenario(scenario)
    rng = np.random.default_rng(seed)
    return [random_snapshot(rng, sc.perf, n_nodes, n_tasks, sc.gang_sizes) for _ in range(count)]


@pytest.mark.parametrize(("n_nodes", "n_tasks"), [(2, 0), (2, 1), (4, 10), (64, 40)])
def test_shapes_dtypes_and_masks(n_nodes, n_tasks):
    for snap in states("edge-hetero", n_nodes, n_tasks, 5):
        e = Encoder().encode(snap)
        q = min(n_tasks, MAX_QUEUE)
        assert e.tasks.shape == (q, TASK_FEATURES) and e.tasks.dtype == np.float32
        assert e.nodes.shape == (n_nodes, NODE_FEATURES) and e.nodes.dtype == np.float32
        assert e.pairs.shape == (q, n_nodes, len(GANG_SIZES), PAIR_FEATURES)
        assert e.action_mask.shape == (1 + q * len(GANG_SIZES) * n_nodes,) and e.action_mask.dtype == bool
        assert e.steps_mask.shape == (q, STEP_BUCKETS) and (q == 0 or e.steps_mask[:, 0].all())
        assert e.action_mask[0] == snap.has_future_events


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_features_are_finite_and_small(scenario):
    for snap in states(scenario, 12, 20, 10):
        e = Encoder().encode(snap)
        for arr in (e.tasks, e.nodes, e.pairs):
            assert np.isfinite(arr).all()
            assert np.abs(arr).max() < 10.0


def test_node_count_outside_the_supported_range_is_refused():
    sc = load_scenario("edge-hetero")
    snap = random_snapshot(np.random.default_rng(0), sc.perf, 2, 1, sc.gang_sizes)
    snap.nodes = snap.nodes[:1]
    with pytest.raises(ValueError, match="2..64 nodes"):
        Encoder().encode(snap)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_action_mask_is_exactly_the_decodable_placements(scenario):
    for snap in states(scenario, 6, 5, 20, seed=1):
        e = Encoder().encode(snap)
        for a in range(1, e.action_mask.size):
            i, g, j = split_action(a, len(snap.nodes))
            task, k = snap.queue[i], GANG_SIZES[g]
            decodable = k in allowed_gang_sizes(snap, task) and complete_gang(snap, task, k, j) is not None
            assert e.action_mask[a] == decodable, (i, k, j)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_single_node_finish_matches_placement_estimate(scenario):
    finish = PAIR_FIELDS.index("finish_k1")
    for snap in states(scenario, 5, 6, 10, seed=2):
        e = Encoder().encode(snap)
        for i, task in enumerate(snap.queue):
            for j, node in enumerate(snap.nodes):
                if not e.pairs[i, j, 0, PAIR_FIELDS.index("can_run_k1")]:
                    continue
                est = estimate(snap, task, (j,), min_acceptable_steps(snap.perf, task))
                expected = math.log1p(max(est.done_s - snap.now, 0.0) / TIME_SCALE_S)
                assert e.pairs[i, j, 0, finish] == pytest.approx(expected, rel=1e-5, abs=1e-6), node.name


def test_queue_beyond_the_window_is_summarised_not_dropped_silently():
    snap = states("edge-hetero", 4, MAX_QUEUE + 8, 1)[0]
    e = Encoder().encode(snap)
    assert e.tasks.shape[0] == MAX_QUEUE
    assert (e.tasks[:, TASK_FIELDS.index("queue_overflow")] > 0).all()


def test_next_snapshot_is_the_same_cluster_with_new_tasks_replacing_placed_ones():
    from aigc_policy.synthetic import next_snapshot

    perf = load_scenario("edge-hetero").perf
    rng = np.random.default_rng(4)
    snap = random_snapshot(rng, perf, 6, 8)
    for _ in range(5):
        nxt = next_snapshot(rng, snap, 3)
        assert [(n.name, n.gpu_class) for n in nxt.nodes] == [(n.name, n.gpu_class) for n in snap.nodes]
        assert len(nxt.queue) == 8 and nxt.now > snap.now
        assert len({t.id for t in nxt.queue} - {t.id for t in snap.queue}) == 3
        snap = nxt


@pytest.mark.parametrize("max_shapes", [4096, 20])
def test_an_encoder_that_has_seen_many_queues_encodes_like_a_fresh_one(max_shapes):
    """Its cached shape rows accumulate (more than 64 shapes) or are dropped at MAX_SHAPES and
    refilled, and model ids are assigned in the order models were first seen."""
    from aigc_policy.synthetic import next_snapshot

    perf = load_scenario("eat-reference").perf
    rng = np.random.default_rng(5)
    encoder = Encoder()
    encoder.MAX_SHAPES = max_shapes
    snap = random_snapshot(rng, perf, 9, 12)
    for _ in range(40):
        ours, fresh = encoder.encode(snap), Encoder().encode(snap)
        for name in ("tasks", "nodes", "pairs", "action_mask", "steps_mask"):
            np.testing.assert_array_equal(getattr(ours, name), getattr(fresh, name), err_msg=name)
        snap = next_snapshot(rng, snap, 3)
    assert len(encoder._shapes) > (64 if max_shapes > 64 else 0)


def test_shapes_share_a_per_class_block_only_where_its_inputs_agree():
    """A block (a task's numbers per node class) is keyed by what it reads: the floor steps, work
    and transfers, not priority, deadline or a quality floor that leaves the floor steps alone. A
    field read but left out of the key would give a task another task's service times."""
    from dataclasses import replace

    perf = load_scenario("edge-hetero").perf
    snap = random_snapshot(np.random.default_rng(3), perf, 6, 1)
    base = replace(snap.queue[0], width=512, height=512, gang_sizes=None, min_quality=0.9, priority=0,
                   deadline_s=None, work_scale=1.0, input_mbit=0.0, output_mbit=0.0)
    same_block = replace(base, priority=2, deadline_s=40.0, min_quality=0.92)
    other_work = replace(base, work_scale=1.5)
    other_floor = replace(base, min_quality=0.99)
    queue = [replace(t, id=f"t{i}") for i, t in enumerate((base, same_block, other_work, other_floor))]
    floors = [min_acceptable_steps(perf, t) for t in queue]
    mixed = replace(snap, queue=queue)

    encoder = Encoder()
    ours = encoder.encode(mixed)
    assert ours.pairs[..., PAIR_FIELDS.index("valid")].any(axis=(1, 2)).all()  # every task placeable
    assert floors[3] > floors[0] == floors[1] == floors[2]
    assert len(encoder._tables.blocks) == 3  # base and same_block share one
    for i, task in enumerate(queue):  # each task alone, on a fresh encoder, reads the same numbers
        alone = Encoder().encode(replace(snap, queue=[task]))
        np.testing.assert_array_equal(ours.pairs[i], alone.pairs[0], err_msg=task.id)
        keep = [f != "queue_position" for f in TASK_FIELDS]
        np.testing.assert_array_equal(ours.tasks[i, keep], alone.tasks[0, keep], err_msg=task.id)
    service = ours.pairs[..., PAIR_FIELDS.index("service_k")]
    assert (service[2] >= service[0]).all() and (service[2] > service[0]).any()  # more work, longer

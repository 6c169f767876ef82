"""The rollout planner (the EAT teacher) and what it stands on: what-if simulators, sampled
futures, the warm-first base."""

from dataclasses import astuple

import pytest
from aigc_policy import policies
from aigc_policy.baselines.rollout import Rollout, candidate_choices
from aigc_policy.placement import Placement
from aigc_policy.scenario import load_scenario
from aigc_policy.sim import Simulator
from aigc_policy.sim.workload import sample_future
from aigc_policy.snapshot import TaskSpec
from sim_helpers import ListWorkload


def task(i: int, k: int, at: float = 0.0) -> TaskSpec:
    return TaskSpec(f"t{i}", at, "sd14", min_steps=1, max_steps=32, gang_sizes=(k,))


def eat_sim(tasks: list[TaskSpec]) -> Simulator:
    return Simulator(load_scenario("eat-reference"), ListWorkload(tasks), seed=0)


def frozen(snap) -> tuple:
    return (snap.now, [astuple(t) for t in snap.queue], [astuple(n) for n in snap.nodes])


def total_response(sim: Simulator, policy) -> float:
    policy.reset(0)
    total = 0.0
    while not sim.done:
        total += sim.step(policy.decide(sim.snapshot())).response_s
    return total


def test_what_if_prices_like_the_real_simulator_and_leaves_the_snapshot_alone():
    sim = eat_sim([task(0, 2), task(1, 2), task(2, 1), task(3, 4, at=5.0)])
    sim.step(Placement(0, (0, 1), 30))  # {0, 1} busy and warm as a pair
    snap = sim.snapshot()
    before, pair_free_at = frozen(snap), snap.nodes[0].free_at
    what_if = Simulator.what_if(snap)
    planned = what_if.step(Placement(0, (0, 1), 30))
    assert frozen(snap) == before
    real = sim.step(Placement(0, (0, 1), 30))
    assert (planned.response_s, planned.cold, planned.nodes) == (real.response_s, real.cold, real.nodes)
    assert not planned.cold  # the copied residency: the pair is still warm in the copy
    # waiting in the copy moves time to the next instant a busy node frees, not to the unseen arrival
    waited = what_if.step(None)
    assert not waited.placed and what_if.now == pytest.approx(pair_free_at)


def test_sample_future_restarts_the_arrivals_after_now_without_the_initial_queue():
    scenario = load_scenario("eat-reference", rate=0.11)
    future = sample_future(scenario, seed=7, start_s=50.0, horizon_s=60.0)
    assert future and all(50.0 < t.arrival_s <= 110.0 for t in future)
    assert len({t.id for t in future}) == len(future) and all(t.id.startswith("future-") for t in future)
    assert [astuple(t) for t in sample_future(scenario, 7, 50.0, 60.0)] == [astuple(t) for t in future]
    assert [astuple(t) for t in sample_future(scenario, 8, 50.0, 60.0)] != [astuple(t) for t in future]


def test_candidates_merge_tasks_that_differ_only_in_arrival_and_offer_wait_last():
    sim = eat_sim([task(0, 1), task(1, 1), task(2, 2)])
    snap = sim.snapshot()
    choices = candidate_choices(snap)
    singles = [c for c in choices if c is not None and len(c.nodes) == 1]
    assert sorted(c.nodes for c in singles) == [(0,), (1,), (2,), (3,)]
    assert {c.task_index for c in singles} == {0}  # t1 is t0's twin: only the earlier one
    assert None not in choices  # every node idle: nothing to wait for in the planner's model
    sim.step(Placement(0, (0,), 30))
    assert candidate_choices(sim.snapshot())[-1] is None


def test_rollout_improves_on_its_base_for_a_known_batch():
    # 4 single-node tasks and 4 full-cluster ones, all queued at once: warm-first alone keeps the
    # singles' nodes busy and loads the 4-group late; planning on the known batch must not be worse
    batch = [task(i, 1 if i % 2 else 4) for i in range(8)]
    base = total_response(eat_sim(batch), policies.make("warm-first"))
    planned = total_response(eat_sim(batch), policies.make("rollout:warm-first"))
    assert planned < base


def test_warm_first_takes_a_warm_placement_over_an_earlier_cold_one():
    sim = eat_sim([task(0, 1), task(1, 2), task(2, 1)])
    sim.step(Placement(0, (0,), 30))  # node 0 warm for k = 1, busy until 33.45 s
    snap = sim.snapshot()
    choice = policies.make("warm-first").decide(snap)
    assert choice.nodes == (0,) and snap.queue[choice.task_index].gang_sizes == (1,)
    assert policies.make("eft").decide(snap).nodes != (0,)  # eft loads a new node instead


def test_the_scenario_reaches_a_planner_and_its_options_are_parsed():
    scenario = load_scenario("eat-reference", rate=0.11)
    planner = policies.make("rollout:eft+spt/horizon=12/samples=3/miss=5", scenario)
    assert isinstance(planner, Rollout) and planner.scenario is scenario
    assert [b.name for b in planner.bases] == ["eft", "spt"]
    assert (planner.horizon_s, planner.samples, planner.miss_penalty_s) == (12.0, 3, 5.0)
    assert policies.make("rollout").scenario is None  # no model of the future: plans the queue only
    assert [b.name for b in policies.make("rollout:samples=4").bases] == ["warm-first", "eat-greedy"]
    with pytest.raises(ValueError, match="samples=0 is out of range"):
        policies.make("rollout:eft/samples=0")

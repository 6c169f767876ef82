"""Hand-computed cases from eat-spec §3.3-§3.4 on the eat-reference scenario."""

import pytest
from aigc_policy import policies
from aigc_policy.placement import Placement, eligible_nodes
from aigc_policy.scenario import load_scenario
from aigc_policy.sim import Simulator
from aigc_policy.sim.simulator import InvalidPlacement
from aigc_policy.snapshot import TaskSpec
from sim_helpers import ListWorkload, Scripted, run


def task(i: int, k: int, at: float = 0.0, steps: int = 30) -> TaskSpec:
    return TaskSpec(f"t{i}", at, "sd14", min_steps=steps, max_steps=steps, gang_sizes=(k,))


def simulate(tasks, plan):
    sim = Simulator(load_scenario("eat-reference"), ListWorkload(tasks), seed=0)
    results = []
    snap = sim.snapshot()
    policy = Scripted(plan)
    while not sim.done:
        results.append(sim.step(policy.decide(snap)))
    return sim, results


def test_cold_then_warm_single_node():
    sim, (first, second) = simulate([task(0, 1), task(1, 1)], [((0,), 30), ((0,), 30)])
    assert first.cold and first.service_s == pytest.approx(0.315 * 30 + 24)  # 33.45
    assert not second.cold and second.service_s == pytest.approx(9.45)
    assert second.wait_s == pytest.approx(33.45)
    assert second.response_s == pytest.approx(33.45 + 9.45)
    assert sim.metrics.cold_starts == 1


@pytest.mark.parametrize(("k", "warm", "cold"), [(1, 9.45, 33.45), (2, 4.6875, 28.6875), (4, 4.2, 36.2)])
def test_latency_prior(k, warm, cold):
    gang = tuple(range(k))
    _, (first, second) = simulate([task(0, k), task(1, k)], [(gang, 30), (gang, 30)])
    assert first.service_s == pytest.approx(cold)
    assert second.service_s == pytest.approx(warm)


def test_exact_group_reuse_and_old_group_teardown():
    tasks = [task(0, 2), task(1, 2), task(2, 1), task(3, 2)]
    plan = [((0, 1), 30), ((0, 1), 30), ((1,), 30), ((0, 1), 30)]
    sim, results = simulate(tasks, plan)
    assert [r.cold for r in results] == [True, False, True, True]
    # t2 on node 1 alone tore down the whole {0, 1} group, so node 0 holds nothing until t3 reloads it
    assert results[3].service_s == pytest.approx(4.6875 + 24)


def test_subset_of_a_group_is_not_warm():
    sim = Simulator(load_scenario("eat-reference"), ListWorkload([task(0, 2), task(1, 1)]), seed=0)
    snap = sim.snapshot()
    policy = Scripted([((0, 1), 30), ((0,), 30)])
    sim.step(policy.decide(snap))
    assert [r.group for r in sim.nodes[0].resident] == [("eat-gpu-0", "eat-gpu-1")]
    assert sim.step(policy.decide(snap)).cold
    assert sim.nodes[1].resident == []  # torn down with its old group


def test_eat_greedy_reference_always_runs_max_steps():
    scenario = load_scenario("eat-reference")
    chosen = {}
    for name in ("eat-greedy-ref", "eat-greedy"):
        sim = Simulator(scenario, seed=3)
        policy = policies.make(name)
        policy.reset(3)
        p = policy.decide(sim.snapshot())
        assert p is not None
        chosen[name] = p.steps
    assert chosen["eat-greedy-ref"] == 32
    assert 5 <= chosen["eat-greedy"] <= 30  # the fixed greedy trades steps against its reward


def test_lower_bound_is_best_warm_service_at_peak_quality_steps():
    scenario = load_scenario("eat-reference")
    lb = policies.make("lower-bound")
    metrics = lb.evaluate(scenario, ListWorkload([task(0, 1, steps=30), task(1, 4, 1.0, 30)]), 0)
    assert metrics.response_sum == pytest.approx(9.45 + 4.2)
    assert metrics.wait_sum == 0.0


def test_default_workload_is_32_tasks_with_10_at_time_zero():
    sim = Simulator(load_scenario("eat-reference"), seed=5)
    tasks = list(sim.workload.tasks(5))
    assert len(tasks) == 32
    assert sum(t.arrival_s == 0.0 for t in tasks) == 10
    assert {t.gang_sizes for t in tasks} <= {(1,), (2,), (4,)}


def test_reseed_bug_flag_repeats_one_trace():
    from dataclasses import replace

    scenario = load_scenario("eat-reference")
    buggy = replace(scenario, bugs={**scenario.bugs, "reseed_every_reset": True})
    arrivals = lambda sc, seed: [t.arrival_s for t in Simulator(sc, seed=seed).workload.tasks(seed)]  # noqa: E731
    assert arrivals(buggy, 1) == arrivals(buggy, 2)
    assert arrivals(scenario, 1) != arrivals(scenario, 2)


def test_round_robin_runs_an_episode():
    trace = run(Simulator(load_scenario("eat-reference"), seed=1), policies.make("round-robin"))
    assert len(trace.placed) == 32


@pytest.mark.parametrize(
    ("placement", "message"),
    [
        (Placement(3, (0,), 30), "task_index 3 outside the visible queue"),
        (Placement(0, (0, 1), 30), "gang size 2 not allowed"),
        (Placement(0, (7,), 30), "node index 7 cannot run"),
        (Placement(0, (-1,), 30), "node index -1 cannot run"),
        (Placement(0, (2,), 30), "node index 2 cannot run"),  # node 2 is down
        (Placement(0, (0,), 31), "steps 31 outside 30..30"),
    ],
)
def test_invalid_placements_are_refused_and_change_nothing(placement, message):
    sim = Simulator(load_scenario("eat-reference"), ListWorkload([task(0, 1)]), seed=0)
    sim.nodes[2].up = False
    with pytest.raises(InvalidPlacement, match=message):
        sim.step(placement)
    assert [t.id for t in sim.window] == ["t0"] and sim.active == 0
    assert all(n.inflight == 0 and not n.resident for n in sim.nodes)


def test_a_gang_must_name_distinct_nodes():
    sim = Simulator(load_scenario("eat-reference"), ListWorkload([task(0, 2)]), seed=0)
    with pytest.raises(InvalidPlacement, match="must name 2 distinct nodes"):
        sim.step(Placement(0, (1, 1), 30))


def test_eligible_nodes_follow_up_and_down_after_the_support_memo_is_filled():
    sim = Simulator(load_scenario("eat-reference"), ListWorkload([task(0, 1)]), seed=0)
    snap, head = sim.snapshot(), sim.window[0]
    assert eligible_nodes(snap, head, 1) == [0, 1, 2, 3]
    sim.nodes[1].up = False
    assert eligible_nodes(snap, head, 1) == [0, 2, 3]
    assert eligible_nodes(snap, TaskSpec("other", 0.0, "sdxl"), 1) == []  # no class has the model

"""The queue planner: late binding, reordering the queue, the bounded window, its options."""

import pytest
from aigc_policy import policies
from aigc_policy.baselines.queue_planner import RULES, UNBOUND_HOLD, QueuePlanner, _rows
from aigc_policy.scenario import load_scenario
from aigc_policy.sim import Simulator
from aigc_policy.snapshot import TaskSpec
from sim_helpers import ListWorkload


def burst() -> list[TaskSpec]:
    """Four SDXL images with loose deadlines, then four sd15 768 px ones due in 6 s. Both kinds
    are fastest on the two a100s; an l4 needs 4.7 s for a short one (and a cold load for SDXL)."""
    long = [TaskSpec(f"xl{i}", 0.0, "sdxl", 1024, 1024, 30, 30, deadline_s=60.0) for i in range(4)]
    short = [TaskSpec(f"s{i}", 0.01, "sd15", 768, 768, 20, 20, deadline_s=6.0) for i in range(4)]
    return long + short


def play(policy_name: str, tasks: list[TaskSpec]) -> tuple[list[str], int]:
    """Placement order and SLO misses of one run."""
    sim = Simulator(load_scenario("edge-hetero"), ListWorkload(tasks), seed=0)
    policy = policies.make(policy_name, sim.scenario)
    policy.reset(0)
    order, misses = [], 0
    while not sim.done:
        result = sim.step(policy.decide(sim.snapshot()))
        if result.placed:
            order.append(result.task_id)
            misses += not result.slo_met
    return order, misses


def test_short_urgent_tasks_overtake_long_ones_on_the_fast_nodes():
    order, misses = play("queue-plan", burst())
    assert misses == 0
    assert order.index("s2") < order.index("xl2") and order.index("s3") < order.index("xl3")
    # committing in arrival order, as every other baseline does, misses two deadlines here
    assert play("opt-ts", burst())[1] == 2 and play("eft", burst())[1] == 2


def test_it_binds_late_and_commits_at_once_when_the_window_is_full():
    scenario = load_scenario("edge-hetero", rate=4.0)
    planner = policies.make("queue-plan", scenario)
    assert planner.hold == scenario.visible_queue - 1
    sim = Simulator(scenario, seed=3)
    planner.reset(3)
    waits = commits = 0
    while not sim.done:
        snap = sim.snapshot()
        choice = planner.decide(snap)
        if len(snap.queue) > planner.hold:
            assert choice is not None  # never hold a full window: arrivals behind it are unseen
            commits += 1
        elif choice is None:
            waits += 1
        else:  # a task it holds starts on idle nodes, never queued behind busy ones
            assert all(snap.nodes[i].free_at <= snap.now + 1e-9 for i in choice.nodes)
        sim.step(choice)
    assert waits > 0 and commits > 0  # this load exercises both paths


def test_options_are_parsed_and_bad_ones_named():
    planner = policies.make("queue-plan:miss=20/hold=12/gangs=0", load_scenario("edge-hetero"))
    assert isinstance(planner, QueuePlanner)
    assert (planner.miss_penalty_s, planner.hold, planner.gangs_up_to) == (20.0, 12, 0)  # hold given: kept
    assert policies.make("queue-plan").hold == UNBOUND_HOLD
    with pytest.raises(ValueError, match="unknown option 'horizon=3'"):
        policies.make("queue-plan:horizon=3")
    with pytest.raises(ValueError, match=r"hold=1.5 is out of range \(a whole number >= 0\)"):
        policies.make("queue-plan:hold=1.5")
    assert policies.make("queue-plan:commit=slack^1").commit_rule == "slack^1"
    with pytest.raises(ValueError, match="commit='soonest' is not a rule"):
        policies.make("queue-plan:commit=soonest")


def test_a_full_window_commits_the_first_task_of_the_commit_rule():
    scenario = load_scenario("edge-hetero", rate=4.0)
    cheapest, by_rule = policies.make("queue-plan", scenario), policies.make("queue-plan:commit=edf", scenario)
    sim = Simulator(scenario, seed=3)
    commits = differ = 0
    while not sim.done:
        snap = sim.snapshot()
        choice = cheapest.decide(snap)
        if len(snap.queue) > cheapest.hold:
            rows = _rows(snap)
            expected = rows[RULES["edf"](rows, snap.now)[0]].index
            assert by_rule.decide(snap).task_index == expected
            commits, differ = commits + 1, differ + (choice.task_index != expected)
        sim.step(choice)
    assert commits > 20 and differ > 0  # the cheapest plan does not always start with edf's task

"""The clairvoyant offline-search reference row: list schedules played through the real simulator,
searched by simulated annealing; an achievable schedule, so never below lower-bound."""

import random

import pytest
from aigc_policy import policies
from aigc_policy.baselines.lower_bound import LowerBound
from aigc_policy.baselines.offline_search import (
    OfflineSearch,
    _ListScheduler,
    arrival_times,
    cost,
    play,
    search_order,
)
from aigc_policy.scenario import load_scenario
from aigc_policy.sim import Simulator
from aigc_policy.snapshot import TaskSpec
from sim_helpers import ListWorkload

EAT = load_scenario("eat-reference")


def task(i: int, k: int, at: float = 0.0) -> TaskSpec:
    return TaskSpec(f"t{i}", at, "sd14", min_steps=1, max_steps=32, gang_sizes=(k,))


def placed_ids(workload: ListWorkload, order: list[str]) -> tuple[list[str], int]:
    """Task ids in the order the list scheduler placed them, and how many times it waited."""
    sim = Simulator(EAT, workload, 0)
    scheduler = _ListScheduler(order, arrival_times(workload, 0))
    placed, waits = [], 0
    while not sim.done:
        snap = sim.snapshot()
        placement = scheduler.decide(snap)
        if placement is None:
            waits += 1
        else:
            placed.append(snap.queue[placement.task_index].id)
        sim.step(placement)
    return placed, waits


def test_tasks_are_placed_in_list_order_waiting_for_a_head_that_has_not_arrived():
    workload = ListWorkload([task(0, 1), task(1, 2), task(2, 1, at=5.0)])
    placed, waits = placed_ids(workload, ["t2", "t1", "t0"])
    assert placed == ["t2", "t1", "t0"]
    assert waits >= 1  # t0 and t1 were visible at 0 s; the list held them for t2
    assert placed_ids(workload, ["t0", "t1", "t2"]) == (["t0", "t1", "t2"], 0)


def test_the_search_groups_gang_sizes_that_arrival_order_interleaves():
    # arrival order alternates 4-gangs and single-node tasks: every switch reloads (24-32 s)
    workload = ListWorkload([task(i, 4 if i % 2 else 1) for i in range(8)])
    times = arrival_times(workload, 0)
    arrival = [f"t{i}" for i in range(8)]
    fifo = cost(play(EAT, workload, 0, arrival, times))
    order = search_order(EAT, workload, 0, times, 400, random.Random(0))
    assert sorted(order) == sorted(arrival)
    searched = play(EAT, workload, 0, order, times)
    assert searched.completed == 8
    assert cost(searched) < 0.8 * fifo
    assert searched.cold_starts < play(EAT, workload, 0, arrival, times).cold_starts


def test_the_row_is_a_schedule_between_the_lower_bound_and_the_arrival_order():
    scenario = load_scenario("eat-reference", rate=0.11)
    workload = ListWorkload([task(i, (1, 2, 4)[i % 3], at=3.0 * i) for i in range(10)])
    row = policies.make("offline-search:evals=200/seed=1", scenario)
    assert isinstance(row, OfflineSearch) and row.reference_only
    found = row.evaluate(scenario, workload, 0)
    bound = LowerBound().evaluate(scenario, workload, 0)
    fifo = play(scenario, workload, 0, [f"t{i}" for i in range(10)], arrival_times(workload, 0))
    assert found.completed == 10
    assert bound.response_sum < found.response_sum <= fifo.response_sum
    assert found.quality_sum == pytest.approx(bound.quality_sum)  # every task at its fewest acceptable steps
    again = policies.make("offline-search:evals=200/seed=1", scenario).evaluate(scenario, workload, 0)
    assert again.response_sum == found.response_sum  # seeded: the same search, the same row


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("evals=0", "offline-search: evals=0 is out of range (a whole number >= 1)"),
        ("evals=many", "offline-search: evals='many' is not a number"),
        ("seed=1.5", "offline-search: seed=1.5 is out of range"),
        ("depth=2", "offline-search: unknown option 'depth=2'"),
        ("fast", "offline-search: unknown option 'fast'"),
    ],
)
def test_bad_options_are_named(options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        policies.make(f"offline-search:{options}")


def test_it_is_not_a_runnable_policy():
    with pytest.raises(RuntimeError, match="reference row"):
        OfflineSearch().decide(Simulator(EAT, ListWorkload([task(0, 1)]), 0).snapshot())

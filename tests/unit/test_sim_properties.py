"""Hypothesis properties of the simulator under arbitrary workloads and policies."""

from dataclasses import replace

from aigc_policy import policies
from aigc_policy.scenario import load_scenario
from aigc_policy.sim import Simulator
from aigc_policy.snapshot import TaskSpec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sim_helpers import ListWorkload, run

EDGE = load_scenario("edge-hetero")
EAT = load_scenario("eat-reference")
RUNNABLE = ["random", "round-robin", "least-loaded", "capacity-random", "eft", "opt-ts", "spt", "eat-greedy"]


@st.composite
def edge_tasks(draw):
    count = draw(st.integers(1, 25))
    gaps = draw(st.lists(st.floats(0.0, 5.0), min_size=count, max_size=count))
    tasks, t = [], 0.0
    for i, gap in enumerate(gaps):
        t += gap
        model = draw(st.sampled_from(["sd-turbo", "sd15", "sdxl"]))
        size = draw(st.sampled_from([512, 768, 1024]))
        lo = draw(st.integers(1, 20))
        hi = draw(st.integers(lo, 40))
        gangs = draw(st.one_of(st.none(), st.sets(st.sampled_from([1, 2, 4]), min_size=1).map(lambda s: tuple(sorted(s)))))
        tasks.append(TaskSpec(f"t{i}", t, model, size, size, lo, hi,
                              deadline_s=draw(st.one_of(st.none(), st.floats(0.5, 60))),
                              min_quality=draw(st.one_of(st.none(), st.floats(0, 1))),
                              gang_sizes=gangs, priority=draw(st.integers(0, 2))))
    return tasks


def check_invariants(sim, trace, tasks):
    metrics = sim.metrics
    # no task lost or duplicated
    assert len(trace.placed) == len(set(trace.placed))
    assert metrics.completed + metrics.rejected == len(tasks)
    assert metrics.completed == len(trace.placed)
    # time never goes backwards
    assert trace.times == sorted(trace.times)
    # a node never runs two reservations at once, so a gang never shares a node
    for intervals in trace.intervals.values():
        intervals.sort()
        for (_, end, _), (start, _, _) in zip(intervals, intervals[1:], strict=False):
            assert start >= end - 1e-9
    # work conservation: busy node-seconds are exactly the placed work, and fit in the makespan
    assert abs(metrics.busy_node_s - trace.busy_node_s) < 1e-6 * max(1.0, trace.busy_node_s)
    summary = metrics.summary()
    assert 0.0 <= summary["utilisation"] <= 1.0 and 0.0 <= summary["slo_attainment"] <= 1.0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tasks=edge_tasks(), policy=st.sampled_from(RUNNABLE), seed=st.integers(0, 2**16))
def test_edge_invariants(tasks, policy, seed):
    sim = Simulator(EDGE, ListWorkload(tasks), seed)
    check_invariants(sim, run(sim, policies.make(policy), seed), tasks)


@settings(max_examples=20, deadline=None)
@given(policy=st.sampled_from([*RUNNABLE, "eat-greedy-ref"]), seed=st.integers(0, 2**16))
def test_eat_reference_invariants(policy, seed):
    sim = Simulator(EAT, seed=seed)
    tasks = list(sim.workload.tasks(seed))
    check_invariants(sim, run(sim, policies.make(policy), seed), tasks)


@settings(max_examples=15, deadline=None)
@given(policy=st.sampled_from(RUNNABLE), seed=st.integers(0, 2**16))
def test_node_failures_lose_nothing(policy, seed):
    flaky = replace(EDGE, failures={"mtbf_s": 60.0, "mttr_s": 20.0}, episode_tasks=60)
    sim = Simulator(flaky, seed=seed)
    tasks = list(sim.workload.tasks(seed))
    run(sim, policies.make(policy), seed)
    assert sim.metrics.completed + sim.metrics.rejected == len(tasks)
    assert sim.active == 0 and not sim.window and not sim.backlog

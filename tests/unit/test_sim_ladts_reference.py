"""LAD-TS delay and queue update (ladts-spec §2.2) on the ladts-reference scenario."""

import pytest
from aigc_policy.scenario import load_scenario
from aigc_policy.sim import Simulator
from aigc_policy.snapshot import TaskSpec
from sim_helpers import ListWorkload, Scripted

F0, R0 = 50.0, 499.0  # es0


def task(i, at, origin, rho, q, d=3.0, o=0.8):
    return TaskSpec(f"t{i}", at, "resd3", min_steps=q, max_steps=q, work_scale=rho, origin=origin,
                    input_mbit=d, output_mbit=o)


def run(tasks, nodes):
    sim = Simulator(load_scenario("ladts-reference"), ListWorkload(tasks), seed=0)
    policy = Scripted([((n,), t.max_steps) for n, t in zip(nodes, tasks, strict=True)])
    snap = sim.snapshot()
    results = []
    while not sim.done:
        results.append(sim.step(policy.decide(snap)))
    return results


def test_local_and_remote_delay_with_in_slot_load():
    # both arrive in slot 0; the second sees B_0(0) = w_1 already assigned to es0
    t1 = task(1, 0.0, "es0", rho=0.2, q=10)  # w = 2 Gcycles
    t2 = task(2, 0.0, "es3", rho=0.25, q=4)  # w = 1 Gcycle, offloaded from BS 3 to es0
    r1, r2 = run([t1, t2], [0, 0])
    assert r1.response_s == pytest.approx(2 / F0 + 0.8 / R0)
    assert r2.response_s == pytest.approx(3.0 / R0 + 1 / F0 + 0.8 / R0 + 2 / F0)
    assert r2.wait_s == pytest.approx(2 / F0)


def test_queue_update_between_slots():
    # 60 Gcycles queued on es0 in slot 0: Q(1) = max(60 - 50 * 1, 0) = 10, so a task at t = 1 waits 10 / f
    big = task(1, 0.0, "es0", rho=6.0, q=10)
    later = task(2, 1.0, "es0", rho=0.1, q=10)
    _, r2 = run([big, later], [0, 0])
    assert r2.wait_s == pytest.approx(10 / F0)
    idle = task(3, 2.0, "es0", rho=0.1, q=10)  # Q(2) = max(10 + 1 - 50, 0) = 0
    *_, r3 = run([big, later, idle], [0, 0, 0])
    assert r3.wait_s == pytest.approx(0.0)


def test_slotted_arrivals_per_node():
    scenario = load_scenario("ladts-reference")
    tasks = list(Simulator(scenario, seed=1).workload.tasks(1))
    slots = {t.arrival_s for t in tasks}
    assert slots == {float(s) for s in range(59)}
    per_slot_node = {}
    for t in tasks:
        per_slot_node[(t.arrival_s, t.origin)] = per_slot_node.get((t.arrival_s, t.origin), 0) + 1
    assert len(per_slot_node) == 59 * 20 and all(1 <= c <= 50 for c in per_slot_node.values())
    assert all(1 <= t.max_steps <= 14 and 0.1024 <= t.work_scale <= 0.3072 for t in tasks)


def run_policy(tasks, policy):
    sim = Simulator(load_scenario("ladts-reference"), ListWorkload(tasks), seed=0)
    results = []
    while not sim.done:
        results.append(sim.step(policy.decide(sim.snapshot())))
    return results


def test_spt_places_the_shortest_visible_task_first_and_respects_its_window():
    from aigc_policy import policies

    tasks = [task(i, 0.0, "es0", rho=rho, q=10) for i, rho in enumerate([3.0, 0.2, 1.0])]
    order = [r.task_id for r in run_policy(tasks, policies.make("spt"))]
    assert order == ["t1", "t2", "t0"]
    assert [r.task_id for r in run_policy(tasks, policies.make("spt:1"))] == ["t0", "t1", "t2"]  # FIFO
    with pytest.raises(ValueError, match="spt:W needs W >= 1"):
        policies.make("spt:0")


def test_spt_beats_fifo_opt_ts_on_a_batch_of_mixed_sizes():
    """Smith's rule: on one slot's batch, shortest-first lowers the mean delay opt-ts gets in FIFO order."""
    from aigc_policy import policies

    tasks = [task(i, 0.0, f"es{i % 20}", rho=rho, q=14) for i, rho in enumerate([3.0, 0.1] * 60)]
    mean = {name: sum(r.response_s for r in run_policy(tasks, policies.make(name))) / len(tasks)
            for name in ("spt", "opt-ts")}
    assert mean["spt"] < 0.9 * mean["opt-ts"]

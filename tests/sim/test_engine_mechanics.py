"""The engine itself, driven by small fake schedulers (the scheduler is not under test here)."""

from __future__ import annotations

import math

import pytest

from gpufleet.domain import Allocation, JobState
from gpufleet.scheduler import Decisions, Placement, Preemption, SchedulerConfig
from gpufleet.sim import SimError, Simulation, SimOptions, Trace, with_trace_tenants
from gpufleet.sim.usage import DecayedUsage
from tests.sim.builders import cluster, job


class Greedy:
    """Places pending jobs on the first free GPUs; preempts job ids listed for a given time."""

    def __init__(self, preempt_at: dict[float, list[int]] | None = None, requeue: bool = True):
        self.preempt_at = dict(preempt_at or {})
        self.requeue = requeue
        self.calls: list[tuple[float, int, int]] = []  # (now, pending, running)

    def __call__(self, snap, now):
        self.calls.append((now, len(snap.pending), len(snap.running)))
        victims = self.preempt_at.pop(now, [])
        if victims:
            return Decisions(preemptions=[Preemption(v, "test", self.requeue) for v in victims])
        used = {(a.node, g) for j in snap.running for a in j.allocation for g in a.gpus}
        d = Decisions()
        for j in sorted(snap.pending, key=lambda j: j.id):
            alloc = []
            for node in snap.nodes:
                free = [g.index for g in node.gpus if (node.name, g.index) not in used]
                if len(free) >= j.spec.gpus:
                    alloc.append(Allocation(node.name, tuple(free[: j.spec.gpus])))
                    if len(alloc) == j.spec.nodes:
                        break
            if len(alloc) == j.spec.nodes:
                used.update((a.node, g) for a in alloc for g in a.gpus)
                d.placements.append(Placement(j.id, tuple(alloc)))
        return d


def make(jobs, scheduler, cl=None, restart="resume"):
    cl = with_trace_tenants(cl or cluster(nodes=2), Trace(jobs).tenants)
    return Simulation(Trace(jobs), cl, SimOptions(SchedulerConfig(), restart=restart), scheduler)


def test_one_cycle_per_instant_and_none_when_the_queue_is_empty():
    fake = Greedy()
    jobs = [job(f"a{i}", 0, 10) for i in range(5)] + [job("b", 100, 10), job("c", 200, 10)]
    sim = make(jobs, fake)
    rec = sim.run()
    assert [c[0] for c in fake.calls] == [0, 100, 200]  # ends at 10, 110, 210 leave no queue: no cycle
    assert fake.calls[0][1] == 5
    assert rec.cycles == 3 and rec.finished == 7


@pytest.mark.parametrize("restart, end", [("resume", 100), ("scratch", 110)])
def test_preempted_job_requeues_and_its_old_end_is_dropped(restart, end):
    fake = Greedy(preempt_at={10: [1]})
    sim = make([job("a", 0, 100, 1), job("tick", 10, 5, 1)], fake, restart=restart)
    rec = sim.run()
    a = sim.jobs[0]
    assert a.state is JobState.SUCCEEDED and a.restarts == 1
    assert a.ended_at == end and rec.end[0] == end
    assert a.attained_gpu_s == pytest.approx(10.0)  # the first run, kept by transition()
    assert rec.preemptions == 1 and rec.first_start[0] == 0
    assert rec.run_s[0] == pytest.approx(end - 10 + 10)


def test_preemption_without_requeue_fails_the_job():
    fake = Greedy(preempt_at={10: [1]}, requeue=False)
    sim = make([job("a", 0, 100, 1), job("tick", 10, 5, 1)], fake)
    rec = sim.run()
    assert sim.jobs[0].state is JobState.FAILED and rec.end[0] == 10


def test_double_booking_is_caught():
    def bad(snap, now):
        return Decisions(placements=[Placement(j.id, (Allocation("n01", (0,)),)) for j in snap.pending])

    with pytest.raises(SimError, match="taken"):
        make([job("a", 0, 10), job("b", 0, 10)], bad).run()


def test_placing_a_job_that_is_not_pending_is_caught():
    def bad(snap, now):
        return Decisions(placements=[Placement(999, (Allocation("n01", (0,)),))])

    with pytest.raises(SimError, match="not pending"):
        make([job("a", 0, 10)], bad).run()


def test_time_weighted_utilization_and_fragmentation():
    # 2 nodes x 8: one 4-GPU job for 100 s -> 4 busy of 16; the 4 free on its node are fragmented
    sim = make([job("a", 0, 100, 4)], Greedy())
    rec = sim.run()
    assert rec.busy_gpu_s == pytest.approx(400.0)
    assert rec.frag_s / 100 == pytest.approx(4 / 12)


def test_decayed_usage_matches_the_integral():
    h = 3600.0
    u = DecayedUsage(h, ["x"])
    u.change("x", 4)
    u.advance(1800.0)
    u.change("x", -4)
    u.advance(5400.0)
    lam = math.log(2) / h
    # 4 GPUs over [0, 1800], seen from t=5400: integral of 4 * 2^-(5400 - s)/h ds
    want = 4 * (math.exp(-lam * 3600) - math.exp(-lam * 5400)) / lam
    assert u.snapshot()["x"] == pytest.approx(want)
    flat = DecayedUsage(0, ["x"])
    flat.change("x", 2)
    flat.advance(10)
    assert flat.snapshot()["x"] == 20


@pytest.mark.parametrize("priorities, calls", [
    ((0, 0, 0), [0, 100, 200]),
    ((0, 5, 99), [0, 100, 200]),  # one priority class (0..99): still nothing can preempt
    ((-1, 0, 0), [0, 10, 20, 100, 200]),  # -1 is class -1, below normal
    ((0, 0, 100), [0, 10, 20, 100, 200]),
])
def test_cycles_are_skipped_only_when_they_could_decide_nothing(priorities, calls):
    fake = Greedy()
    one = cluster(nodes=1, gpus=1, groups=1)
    jobs = [job(k, t, 100, priority=p) for k, t, p in zip("abc", (0, 10, 20), priorities)]
    make(jobs, fake, one).run()
    # full cluster, one priority class, no quota: the arrivals at 10 and 20 cannot change anything
    assert [c[0] for c in fake.calls] == calls


def test_cycle_interval_batches_arrivals_like_a_timer_loop():
    fake = Greedy()
    jobs = [job("a", 0, 100), job("b", 10, 100), job("c", 20, 100)]
    cl = with_trace_tenants(cluster(), Trace(jobs).tenants)
    sim = Simulation(Trace(jobs), cl, SimOptions(SchedulerConfig(), cycle_interval_s=60), fake)
    rec = sim.run()
    assert [c[0] for c in fake.calls] == [0, 60]
    assert rec.first_start[:3] == [0, 60, 60]

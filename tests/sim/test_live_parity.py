"""Live and simulated scheduling decide the same for the same cluster state.

At every cycle of a replay, the snapshot the simulator hands to its scheduler (kept incrementally)
is compared with one rebuilt from scratch from the domain objects, the way the live control loop
builds it from the store (all jobs, filtered by state, in id order): same jobs, and the simulator's
`Scheduler()` (which keeps its capacity index between cycles) decides exactly what the live loop's
`schedule()` decides on the rebuilt snapshot.
"""

from __future__ import annotations

import random

from gpufleet.domain import JobState
from gpufleet.scheduler import Scheduler, SchedulerConfig, Snapshot, schedule
from gpufleet.sim import Simulation, SimOptions, Trace, TraceJob, with_trace_tenants
from tests.sim.builders import cluster


def _trace(n: int = 120, seed: int = 7) -> Trace:
    rnd = random.Random(seed)
    jobs, t = [], 0.0
    for k in range(n):
        t += rnd.choice([0, 0, 5, 30, 120])
        gpus = rnd.choice([1, 1, 1, 2, 4, 8, 16])
        dur = rnd.choice([30, 60, 600, 3600])
        jobs.append(TraceJob(str(k), t, dur, gpus, tenant=rnd.choice("abc"),
                             time_limit_s=dur * rnd.choice([1, 2, 4]), priority=rnd.choice([0, 0, 0, 100])))
    return Trace(jobs)


def _decided(d):
    return (sorted((p.job_id, p.allocation) for p in d.placements),
            sorted((p.job_id, p.reason, p.requeue) for p in d.preemptions), dict(d.reasons))


def _live_snapshot(sim: Simulation, sim_snap: Snapshot) -> Snapshot:
    jobs = [j for j in sim.jobs if j is not None]
    return Snapshot(
        nodes=tuple(sim.cluster.nodes),
        running=tuple(j for j in jobs if j.state is JobState.RUNNING),
        pending=tuple(j for j in jobs if j.state is JobState.PENDING),
        tenants={t.name: t for t in sim.cluster.tenants.values()},
        usage=dict(sim_snap.usage),
        config=sim_snap.config,
    )


def test_sim_snapshot_equals_a_live_rebuild_and_decisions_match():
    trace = _trace()
    cl = with_trace_tenants(cluster(nodes=4, gpus=8, racks=2), trace.tenants, "quota")
    checked = []
    holder: dict[str, Simulation] = {}
    incremental = Scheduler()

    def both(snap: Snapshot, now: float):
        sim = holder["sim"]
        live = _live_snapshot(sim, snap)
        assert {j.id for j in snap.running} == {j.id for j in live.running}
        assert {j.id for j in snap.pending} == {j.id for j in live.pending}
        mine = incremental(snap, now)
        assert _decided(mine) == _decided(schedule(live, now))
        checked.append(now)
        return mine

    config = SchedulerConfig(policy="fairshare", backfill=True, preemption=True)
    sim = Simulation(trace, cl, SimOptions(config), both)
    holder["sim"] = sim
    rec = sim.run()
    assert rec.finished == len(trace.jobs)
    assert len(checked) == rec.cycles > 20
    assert rec.preemptions > 0  # the priority and quota-reclaim paths were exercised
    assert incremental.rebuilds == 1


def test_applied_placements_are_exactly_the_decided_ones():
    trace = _trace(40, seed=3)
    cl = with_trace_tenants(cluster(nodes=2, gpus=8), trace.tenants)
    seen = []

    def record(snap, now):
        d = schedule(snap, now)
        seen.append(d)
        return d

    sim = Simulation(trace, cl, SimOptions(SchedulerConfig(policy="sjf")), record)
    sim.run()
    last_alloc = {}
    for d in seen:
        for p in d.placements:
            last_alloc[p.job_id] = p.allocation
    for job in sim.jobs:
        assert job.allocation == last_alloc[job.id]  # terminal jobs keep the allocation they ran on

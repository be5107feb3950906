"""A Base kept across cycles equals one built from scratch, and `Scheduler()` decides what `schedule()` does.

The simulator runs tens of thousands of cycles on one `Scheduler()`, which updates its capacity
index by the difference of the running set. These properties are what makes that safe: after any
history of earlier snapshots (other running jobs, overlapping claims, cycles that took GPUs and
rolled them back), the updated state is the canonical one and the decisions are identical.
"""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from gpufleet.scheduler import Scheduler, schedule
from gpufleet.scheduler.base import Base
from tests.scheduler.builders import make_job, make_nodes, make_running, make_snapshot
from tests.scheduler.test_properties import NOW, PROPS, TENANTS, snapshots


def canonical(base: Base) -> dict:
    s = base.state
    index = {m: {sig: list(b) for sig, b in buckets.items() if b} for m, buckets in s.index.items()}
    return {
        "free": s.free, "sig": s.sig, "index": index, "cpu": s.cpu_free, "mem": s.mem_free,
        "frag": (s.free_gpus, s.whole_node_free, s.whole_group_free),
        "used": {t: {m: n for m, n in per.items() if n} for t, per in base.used.items() if any(per.values())},
        "classes": base.classes, "min_class": base.min_class(),
        "leaving": sorted(r.job.id for r in base.leaving.values()),
        "floating": sorted(r.job.id for r in base.floating.values()),
        "releases": sorted(base.releases),
    }


def decided(d):
    return (d.placements, d.preemptions, d.reasons, d.stats)


@st.composite
def others(draw, snap):
    """Running jobs of an earlier snapshot: some of the final ones, and jobs that are gone since
    (anywhere, overlapping anything)."""
    keep = [j for j in snap.running if draw(st.booleans())]
    gone = []
    for k in range(draw(st.integers(0, 4))):
        node = draw(st.sampled_from(snap.nodes))
        if not node.gpus:
            continue
        idx = sorted(draw(st.sets(st.sampled_from([g.index for g in node.gpus]), min_size=1)))
        gone.append(make_running(len(idx), on=[(node.name, idx)], id=50_000 + k, started_at=draw(st.floats(0, NOW)),
                                 tenant=draw(st.sampled_from(TENANTS)), priority=draw(st.sampled_from([0, 100])),
                                 cpus=draw(st.sampled_from([None, 4]))))
    return keep + gone


@PROPS
@given(st.data())
def test_an_updated_base_equals_a_fresh_one_and_decides_the_same(data):
    snap = data.draw(snapshots())
    sched = Scheduler()
    for _ in range(data.draw(st.integers(1, 3))):
        earlier = dataclasses.replace(snap, running=tuple(data.draw(others(snap))))
        sched(earlier, NOW - 60)
    mine = sched(snap, NOW)
    assert sched.rebuilds == 1
    assert canonical(sched.base) == canonical(Base(snap))
    assert decided(mine) == decided(schedule(snap, NOW))


def test_a_different_nodes_tuple_foreign_or_config_rebuilds():
    snap = make_snapshot(make_nodes(3), pending=[make_job(2)], running=[make_running(4, on="n001")])
    sched = Scheduler()
    sched(snap, NOW)
    sched(dataclasses.replace(snap, running=()), NOW)  # same nodes: updated
    assert sched.rebuilds == 1
    sched(dataclasses.replace(snap, nodes=tuple(list(snap.nodes))), NOW)
    sched(dataclasses.replace(snap, nodes=sched.base.nodes, foreign={"n002": (0,)}), NOW)
    config = dataclasses.replace(snap.config, topology=False)
    sched(dataclasses.replace(snap, nodes=sched.base.nodes, config=config), NOW)
    assert sched.rebuilds == 4


def test_cached_verdict_keys_of_jobs_no_longer_pending_are_forgotten():
    nodes = make_nodes(1)
    sched = Scheduler()
    jobs = [make_job(64) for _ in range(5000)]  # never fit: all stay pending
    sched(make_snapshot(nodes, pending=jobs), NOW)
    assert len(sched.base.static) == 5000
    snap = make_snapshot(nodes, pending=jobs[:10])
    sched(dataclasses.replace(snap, nodes=sched.base.nodes), NOW)
    assert sorted(sched.base.static) == sorted(j.id for j in jobs[:10])

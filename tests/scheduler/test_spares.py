"""Hot spares (issue 17): N nodes per block held for restarted gangs and preemptible work."""

import dataclasses
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpufleet.scheduler import schedule
from gpufleet.scheduler.cycle import Cycle
from gpufleet.scheduler.base import Base
from tests.scheduler.builders import (
    make_job, make_node, make_nodes, make_running, make_snapshot, nodes_of, placed, preempted,
)
from tests.scheduler.test_properties import NOW, PROPS, snapshots


def block(n: int = 4, name: str = "n", switch: str = "s1") -> list:
    return [make_node(f"{name}{i}", 8, switch=switch) for i in range(1, n + 1)]


def spares_of(snap) -> list[str]:
    cyc = Cycle(snap, 0.0, Base(snap))
    try:
        return sorted(cyc.state.nodes[i].name for i in cyc.spares.nodes)
    finally:
        cyc.close()


def test_each_block_keeps_its_highest_named_idle_nodes_as_spares():
    nodes = block(4, "a", "s1") + block(3, "b", "s2") + [make_node("c1", 8, rack="r9"), make_node("c2", 8, rack="r9")]
    busy = make_running(8, on="a4")  # not idle: a3 is the spare of s1 instead
    assert spares_of(make_snapshot(nodes, running=[busy], spares_per_block=1)) == ["a3", "b3", "c2"]
    assert spares_of(make_snapshot(nodes, spares_per_block=2)) == ["a3", "a4", "b2", "b3", "c1", "c2"]
    assert spares_of(make_snapshot(nodes)) == []


def test_a_node_labelled_spare_is_a_spare_first_and_counts_in_its_block():
    nodes = block(3) + [make_node("n9", 8, switch="s1", labels={"spare": "true"})]
    assert spares_of(make_snapshot(nodes, spares_per_block=1)) == ["n9"]
    assert spares_of(make_snapshot(nodes, spares_per_block=2)) == ["n3", "n9"]
    assert spares_of(make_snapshot(nodes)) == ["n9"]  # labelled: a spare even with spares_per_block=0


def test_spares_stay_idle_for_first_attempts_with_the_reason():
    jobs = [make_job(8) for _ in range(4)]
    d = schedule(make_snapshot(block(4), pending=jobs, spares_per_block=1, backfill=False), 0.0)
    assert sorted(n for j in jobs[:3] for n in nodes_of(d, j.id)) == ["n1", "n2", "n3"]
    assert d.reasons[jobs[3].id] == ("HotSpares(needs 1x8 a100; 1 node held as hot spares "
                                     "(spares_per_block=1) for restarts and preemptible work)")


def test_a_gang_blocked_by_two_spares_names_them():
    nodes = block(3, "a", "s1") + block(3, "b", "s2")
    gang = make_job(8, nodes=6)
    d = schedule(make_snapshot(nodes, pending=[gang], spares_per_block=1, backfill=False), 0.0)
    assert d.reasons[gang.id].startswith("HotSpares(needs 6x8 a100; 2 nodes held as hot spares (spares_per_block=1)")


def test_a_job_short_of_more_than_the_spares_gets_the_plain_reason():
    gang = make_job(8, nodes=4)  # 3 nodes free, the spare among them: it waits for more than the spare
    d = schedule(make_snapshot(block(4), running=[make_running(8, on="n1")], pending=[gang], spares_per_block=1,
                               backfill=False), 0.0)
    assert d.reasons[gang.id].startswith("Resources(needs 4x8 a100")


def test_a_restarted_gang_takes_the_spare_at_once():
    running = [make_running(8, on="n1"), make_running(8, on="n2")]
    restart = make_job(8, nodes=2, failures=1, previous=("n3", "n9"))  # n9 faulted, n3 is free again
    first = make_job(8)  # submitted after, but the first attempt may not use the spare
    d = schedule(make_snapshot(block(4), running=running, pending=[first, restart], spares_per_block=1), 0.0)
    assert sorted(nodes_of(d, restart.id)) == ["n3", "n4"]
    assert first.id not in placed(d)


def test_preemptible_work_uses_a_spare_and_a_restart_preempts_it():
    scavenger = make_job(8, priority=-100)
    d = schedule(make_snapshot(block(4), running=[make_running(8, on=f"n{i}") for i in (1, 2, 3)],
                               pending=[scavenger], spares_per_block=1), 0.0)
    assert nodes_of(d, scavenger.id) == ["n4"]
    on_spare = make_running(8, on="n4", priority=-100)
    others = [make_running(8, on=f"n{i}", started_at=0.0) for i in (1, 2)]
    restart = make_job(8, nodes=2, failures=1)
    d = schedule(make_snapshot(block(4), running=others + [on_spare], pending=[restart], spares_per_block=1), 60.0)
    assert set(preempted(d)) == {on_spare.id}
    assert preempted(d)[on_spare.id].reason == (
        f"Preempted(for job {restart.id} of tenant default: its restart takes hot spare n4)")
    assert d.reasons[restart.id] == f"Preempting(jobs {on_spare.id})"


def test_a_first_attempt_does_not_preempt_preemptible_work_on_a_spare():
    on_spare = make_running(8, on="n4", priority=-100)
    others = [make_running(8, on=f"n{i}") for i in (1, 2, 3)]
    job = make_job(8)
    d = schedule(make_snapshot(block(4), running=others + [on_spare], pending=[job], spares_per_block=1), 60.0)
    assert not d.preemptions and job.id not in placed(d)


def test_a_spare_a_restart_took_is_refilled_from_the_idle_nodes():
    restarted = make_running(8, on="n4", failures=1)
    assert spares_of(make_snapshot(block(4), running=[restarted], spares_per_block=1)) == ["n3"]


def _random_load(seed: int, nodes, restarts: bool):
    rng = random.Random(seed)
    running = [make_running(rng.choice((1, 4, 8)), on=n.name) for n in nodes if rng.random() < 0.4]
    pending = [make_job(rng.choice((1, 2, 8)), nodes=rng.choice((1, 1, 2, 3)), priority=rng.choice((0, 100)),
                        failures=rng.choice((0, 1)) if restarts else 0) for _ in range(30)]
    return running, pending


@pytest.mark.parametrize("seed", range(12))
def test_off_decides_byte_identically_and_on_is_as_if_the_spares_were_gone(seed):
    nodes = make_nodes(24, nodes_per_rack=4, racks_per_switch=2)
    running, pending = _random_load(seed, nodes, restarts=True)
    off = schedule(make_snapshot(nodes, running=running, pending=pending, spares_per_block=0), 60.0)
    default = schedule(make_snapshot(nodes, running=running, pending=pending), 60.0)
    assert (off.placements, off.preemptions, off.reasons) == (default.placements, default.preemptions, default.reasons)
    # first attempts only: the spares of spares_per_block=1 are as good as removed from the cluster
    running, pending = _random_load(seed, nodes, restarts=False)
    snap = make_snapshot(nodes, running=running, pending=pending, spares_per_block=1)
    gone = set(spares_of(snap))
    assert len(gone) == 3  # one per switch (s01..s03)
    on = schedule(snap, 60.0)
    left = [n for n in nodes if n.name not in gone]
    without = schedule(make_snapshot(left, running=running, pending=pending), 60.0)
    assert (on.placements, on.preemptions) == (without.placements, without.preemptions)
    assert not any(a.node in gone for p in on.placements for a in p.allocation)


@PROPS
@given(snapshots(), st.integers(1, 2), st.data())
def test_only_restarts_and_preemptible_work_land_on_spares_and_nothing_is_double_booked(snap, per, data):
    for job in snap.pending:
        kind = data.draw(st.sampled_from(["first", "first", "restart", "preemptible"]))
        if kind == "restart":
            job.failures = job.restarts = 1
        elif kind == "preemptible":
            job.spec = dataclasses.replace(job.spec, priority=-100)
    snap = dataclasses.replace(snap, config=dataclasses.replace(snap.config, spares_per_block=per))
    spares = set(spares_of(snap))
    d = schedule(snap, NOW)
    jobs = {j.id: j for j in snap.pending}
    taken = {(a.node, g) for j in snap.running for a in j.allocation for g in a.gpus}
    taken |= {(n, g) for n, gs in snap.foreign.items() for g in gs}
    for p in d.placements:
        job = jobs[p.job_id]
        for a in p.allocation:
            assert a.node not in spares or job.failures or job.spec.priority < 0
            for g in a.gpus:
                assert (a.node, g) not in taken
                taken.add((a.node, g))


@pytest.mark.parametrize("value", [-1, "two", 1.5, True])
def test_a_bad_spares_per_block_is_refused_naming_the_field(value, tmp_path):
    from gpufleet.domain import ValidationError
    from gpufleet.settings import load_settings
    cfg = tmp_path / "server.yaml"
    cfg.write_text(f"scheduler: {{spares_per_block: {value!r}}}\n" if not isinstance(value, str)
                   else f"scheduler: {{spares_per_block: {value}}}\n")
    with pytest.raises(ValidationError, match="spares_per_block"):
        load_settings(str(cfg))

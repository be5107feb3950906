"""The cycle as a whole: purity, caps, stats, snapshots the control loop really sends."""

from gpufleet.scheduler import Snapshot, schedule
from tests.scheduler.builders import make_job, make_node, make_nodes, make_running, make_snapshot, placed


def test_placement_cap_per_cycle():
    jobs = [make_job(1) for _ in range(5)]
    d = schedule(make_snapshot([make_node("n1", 8)], pending=jobs, max_placements_per_cycle=3), 0.0)
    assert len(d.placements) == 3
    assert set(d.reasons.values()) == {"Queued(placement limit of this cycle reached)"}


def test_the_snapshot_is_not_modified():
    nodes = make_nodes(2)
    running = [make_running(4, on="n001")]
    pending = [make_job(8), make_job(8, nodes=2)]
    snap = make_snapshot(nodes, pending=pending, running=running)
    before = repr(snap)
    schedule(snap, 0.0)
    assert repr(snap) == before


def test_empty_snapshot():
    d = schedule(Snapshot(nodes=(), running=(), pending=()), 0.0)
    assert not d.placements and not d.reasons and d.stats["free_gpus"] == 0


def test_stats_keys():
    d = schedule(make_snapshot(make_nodes(2), pending=[make_job(8), make_job(8, nodes=2)]), 0.0)
    assert set(d.stats) == {"placements", "preemptions", "pending", "reservations", "backfilled",
                            "free_gpus", "fragmentation", "group_fragmentation"}
    assert d.stats["placements"] == 1 and d.stats["pending"] == 1


def test_running_jobs_on_unknown_nodes_are_ignored():
    ghost = make_running(8, on="gone")
    d = schedule(make_snapshot([make_node("n1", 8)], pending=[job := make_job(8)], running=[ghost]), 0.0)
    assert job.id in placed(d)


def test_gang_without_topology_takes_the_first_nodes():
    nodes = make_nodes(4, nodes_per_rack=2)
    running = [make_running(8, on="n001")]
    d = schedule(make_snapshot(nodes, pending=[gang := make_job(8, nodes=2)], running=running, topology=False), 0)
    assert [a.node for a in placed(d)[gang.id]] == ["n002", "n003"]

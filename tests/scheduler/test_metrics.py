"""Fragmentation: how much free capacity whole-node / whole-group jobs can not use."""

import pytest

from gpufleet.scheduler import schedule
from tests.scheduler.builders import make_job, make_node, make_running, make_snapshot


@pytest.mark.parametrize("busy, frag, group_frag, free", [
    ({}, 0.0, 0.0, 16),
    ({"n1": (0, 1, 2, 3)}, 0.3333, 0.0, 12),        # 4 free on n1 (a whole group), 8 on n2
    ({"n1": (0,), "n2": (0,)}, 1.0, 0.4286, 14),   # no whole node; 2 whole groups of 4 out of 14
    ({"n1": tuple(range(8)), "n2": tuple(range(8))}, 0.0, 0.0, 0),
])
def test_fragmentation(busy, frag, group_frag, free):
    nodes = [make_node("n1", 8, groups=2), make_node("n2", 8, groups=2)]
    running = [make_running(len(g), on=[(n, g)]) for n, g in busy.items()]
    stats = schedule(make_snapshot(nodes, running=running), 0.0).stats
    assert (stats["fragmentation"], stats["group_fragmentation"], stats["free_gpus"]) == (frag, group_frag, free)


def test_best_fit_fragments_less_than_first_fit():
    nodes = [make_node("n1", 8), make_node("n2", 8), make_node("n3", 8)]
    running = [make_running(4, on="n1"), make_running(6, on="n2")]
    jobs = [make_job(2), make_job(4)]
    frag = {}
    for topology in (True, False):
        snap = make_snapshot(nodes, pending=jobs, running=running, topology=topology)
        d = schedule(snap, 0.0)
        assert len(d.placements) == 2
        frag[topology] = d.stats["fragmentation"]
    assert frag == {True: 0.0, False: 1.0}

"""Elastic gangs (issue 17): `nodes_min:nodes` runs on as many nodes as are free between the two,
charged to quota for the size it got; it waits only when fewer than nodes_min fit."""

from __future__ import annotations

import pytest

from gpufleet.scheduler import schedule
from tests.scheduler.builders import (
    make_job, make_nodes, make_running, make_snapshot, make_tenant, nodes_of, placed,
)


def busy(names):
    return [make_running(8, on=n, tenant="other") for n in names]


@pytest.mark.parametrize("busy_nodes, got", [
    (0, 8),  # all free: the largest size
    (1, 7),  # one busy: one rank fewer
    (2, 6),  # exactly nodes_min
])
def test_an_elastic_gang_takes_as_many_nodes_as_are_free(busy_nodes, got):
    nodes = make_nodes(8)
    gang = make_job(8, nodes=8, nodes_min=6)
    running = busy(n.name for n in nodes[:busy_nodes])
    d = schedule(make_snapshot(nodes, pending=[gang], running=running), 0.0)
    assert len(nodes_of(d, gang.id)) == got
    assert all(len(a.gpus) == 8 for a in placed(d)[gang.id])


def test_fewer_than_nodes_min_free_waits_with_an_at_least_reason():
    nodes = make_nodes(8)
    gang = make_job(8, nodes=8, nodes_min=6)
    d = schedule(make_snapshot(nodes, pending=[gang], running=busy(n.name for n in nodes[:3]), backfill=False), 0.0)
    assert not d.placements
    assert d.reasons[gang.id] == "Resources(needs at least 6x8 a100 (nodes 6:8), largest free 8)"


def test_a_rigid_gang_keeps_its_reason():
    nodes = make_nodes(8)
    gang = make_job(8, nodes=8)
    d = schedule(make_snapshot(nodes, pending=[gang], running=busy(["n001"]), backfill=False), 0.0)
    assert d.reasons[gang.id] == "Resources(needs 8x8 a100, largest free 8)"


def test_an_elastic_gang_fits_a_cluster_smaller_than_its_maximum():
    d = schedule(make_snapshot(make_nodes(6), pending=[gang := make_job(8, nodes=8, nodes_min=6)]), 0.0)
    assert len(nodes_of(d, gang.id)) == 6
    d = schedule(make_snapshot(make_nodes(4), pending=[gang := make_job(8, nodes=8, nodes_min=6)]), 0.0)
    assert d.reasons[gang.id] == "NodeConstraint(needs at least 6 nodes with 8 GPUs, 4 up)"


def test_quota_is_charged_for_the_size_placed():
    """Quota 48 without borrowing: 6 of 8 nodes; a second job still fits the 16 GPUs left of 64."""
    tenants = [make_tenant("a", {"a100": 48}, can_borrow=False)]
    gang = make_job(8, nodes=8, nodes_min=6, tenant="a")
    d = schedule(make_snapshot(make_nodes(10), pending=[gang], tenants=tenants), 0.0)
    assert len(nodes_of(d, gang.id)) == 6
    tenants = [make_tenant("a", {"a100": 64}, can_borrow=False)]
    gang, pair = make_job(8, nodes=8, nodes_min=6, tenant="a"), make_job(8, nodes=2, tenant="a")
    d = schedule(make_snapshot(make_nodes(10), pending=[gang, pair], tenants=tenants), 0.0)
    assert len(nodes_of(d, gang.id)) == 8
    assert pair.id not in placed(d)  # 64 used by the gang
    assert d.reasons[pair.id].startswith("QuotaExceeded(a100: 64/64")


def test_guaranteed_first_then_borrowing_up_to_the_hard_limit():
    """Within its guarantee in the first pass; a gang that only borrows grows up to the limit."""
    tenants = [make_tenant("a", {"a100": 16}, limit={"a100": 40})]
    gang = make_job(8, nodes=8, nodes_min=3, tenant="a")
    d = schedule(make_snapshot(make_nodes(10), pending=[gang], tenants=tenants), 0.0)
    assert len(nodes_of(d, gang.id)) == 5  # borrowing (24 > quota 16): up to the limit 40 = 5 nodes


def test_elastic_single_node_minimum_and_cpu_only_gangs():
    nodes = make_nodes(3, cpus=32)
    gpu = make_job(8, nodes=4, nodes_min=1)
    cpu = make_job(0, nodes=5, nodes_min=2, cpus=8)
    d = schedule(make_snapshot(nodes, pending=[gpu, cpu]), 0.0)
    assert len(nodes_of(d, gpu.id)) == 3
    assert len(nodes_of(d, cpu.id)) == 3


def test_elastic_and_rigid_jobs_of_the_same_shape_get_their_own_verdicts():
    nodes = make_nodes(7)
    rigid, elastic = make_job(8, nodes=8), make_job(8, nodes=8, nodes_min=6)
    d = schedule(make_snapshot(nodes, pending=[rigid, elastic], backfill=False), 0.0)
    assert rigid.id not in placed(d) and len(nodes_of(d, elastic.id)) == 7

"""Step 3: placement. NVLink groups, best fit, rack/switch packing, gangs, constraints, node states."""

import pytest

from gpufleet.domain import NodeKind, NodeState
from gpufleet.scheduler import schedule
from tests.scheduler.builders import (
    make_job, make_node, make_nodes, make_running, make_snapshot, nodes_of, placed,
)


def place_one(nodes, job, running=(), **kw):
    d = schedule(make_snapshot(nodes, pending=[job], running=running, **kw), 0.0)
    return placed(d).get(job.id), d


@pytest.mark.parametrize("busy, gpus, expect", [
    ((), 4, (0, 1, 2, 3)),                     # an empty node: the first whole group
    ((0,), 2, (1, 2)),                         # best fit: the partly used group, not the whole one
    ((0,), 3, (1, 2, 3)),                      # exactly fills group 0
    ((0,), 4, (4, 5, 6, 7)),                   # does not fit group 0 (3 free): the whole group 1
    ((0, 1, 4), 4, (2, 5, 6, 7)),              # fits no group: the fewest groups, largest first
    ((0, 4), 3, (1, 2, 3)),                    # both groups have 3: lowest group id
])
def test_gpus_of_a_rank_stay_in_one_nvlink_group_when_they_fit(busy, gpus, expect):
    node = make_node("n1", 8, groups=2)
    running = [make_running(len(busy), on=[("n1", busy)])] if busy else []
    alloc, _ = place_one([node], make_job(gpus), running)
    assert alloc[0].gpus == expect


def test_without_topology_the_lowest_free_indices_of_the_first_node():
    nodes = [make_node("n1", 8, groups=2), make_node("n2", 8, groups=2)]
    running = [make_running(1, on=[("n1", (0,))]), make_running(3, on=[("n2", (0, 1, 2))])]
    alloc, _ = place_one(nodes, make_job(4), running, topology=False)
    assert alloc == (alloc[0],) and alloc[0].node == "n1" and alloc[0].gpus == (1, 2, 3, 4)


def test_best_fit_node_keeps_whole_nodes_free():
    nodes = [make_node("empty", 8), make_node("half", 8), make_node("most", 8)]
    running = [make_running(4, on="half"), make_running(6, on="most")]
    alloc, _ = place_one(nodes, make_job(2), running)
    assert alloc[0].node == "most"
    alloc, _ = place_one(nodes, make_job(3), running)
    assert alloc[0].node == "half"


def test_best_fit_prefers_a_node_where_the_rank_fits_one_group():
    # "split" has 4 free as 2+2, "group" has 4 free in one group: 4 GPUs go to "group"
    nodes = [make_node("split", 8, groups=2), make_node("group", 8, groups=2)]
    running = [make_running(4, on=[("split", (0, 1, 4, 5))]), make_running(4, on=[("group", (0, 1, 2, 3))])]
    alloc, _ = place_one(nodes, make_job(4), running)
    assert alloc[0].node == "group" and alloc[0].gpus == (4, 5, 6, 7)


def test_gang_is_packed_into_one_rack_best_fit():
    # r01 has 4 free nodes, r02 has 2: a 2-node gang takes r02 and leaves r01 whole
    nodes = make_nodes(6, nodes_per_rack=3)
    running = [make_running(8, on="n004")]
    d = schedule(make_snapshot(nodes, pending=[gang := make_job(8, nodes=2)], running=running), 0.0)
    assert sorted(nodes_of(d, gang.id)) == ["n005", "n006"]


def test_gang_spans_the_fewest_racks_and_switches():
    # racks of 2 nodes, switches of 2 racks; switch s02 (r03, r04) has 3 free nodes, s01 has 2
    nodes = make_nodes(8, nodes_per_rack=2, racks_per_switch=2)
    running = [make_running(8, on="n001"), make_running(8, on="n003"), make_running(8, on="n008")]
    d = schedule(make_snapshot(nodes, pending=[gang := make_job(8, nodes=3)], running=running), 0.0)
    got = nodes_of(d, gang.id)
    assert sorted(got) == ["n005", "n006", "n007"]  # one switch
    assert {n.name: n.labels["switch"] for n in nodes}["n005"] == "s02"


def test_gang_across_switches_takes_the_largest_first():
    nodes = make_nodes(6, nodes_per_rack=1, racks_per_switch=3)  # s01: n001-3, s02: n004-6
    running = [make_running(8, on="n001")]
    d = schedule(make_snapshot(nodes, pending=[gang := make_job(8, nodes=4)], running=running), 0.0)
    got = set(nodes_of(d, gang.id))
    assert got - {"n002", "n003"} == {"n004", "n005", "n006"} and len(got) == 4


def test_gang_is_all_or_nothing_and_holds_nothing():
    nodes = make_nodes(3)
    running = [make_running(4, on="n001")]
    big = make_job(8, nodes=3, time_limit_s=60)
    small = make_job(8, time_limit_s=60)
    d = schedule(make_snapshot(nodes, pending=[big, small], running=running, backfill=False), 0.0)
    assert big.id not in placed(d) and small.id in placed(d)
    assert d.reasons[big.id] == "Resources(needs 3x8 a100, largest free 8)"


def test_two_big_gangs_do_not_deadlock():
    nodes = make_nodes(4)
    g1, g2 = make_job(8, nodes=3), make_job(8, nodes=3)
    d = schedule(make_snapshot(nodes, pending=[g1, g2]), 0.0)
    assert list(placed(d)) == [g1.id] and g2.id in d.reasons


def test_every_rank_of_a_gang_gets_its_gpus_on_a_distinct_node():
    d = schedule(make_snapshot(make_nodes(4, groups=2), pending=[gang := make_job(4, nodes=3)]), 0.0)
    alloc = placed(d)[gang.id]
    assert len({a.node for a in alloc}) == 3 and all(len(a.gpus) == 4 for a in alloc)


@pytest.mark.parametrize("state", [NodeState.DRAIN, NodeState.DOWN])
def test_drained_and_down_nodes_receive_nothing(state):
    nodes = [make_node("bad", 8, state=state), make_node("good", 2)]
    job = make_job(4)
    alloc, d = place_one(nodes, job)
    assert alloc is None
    assert d.reasons[job.id] == "NodeConstraint(gpus=4 per node matches 0 up nodes, largest has 2)"
    alloc, _ = place_one(nodes, make_job(2))
    assert alloc[0].node == "good"


def test_foreign_gpus_are_occupied():
    alloc, _ = place_one([make_node("n1", 4)], make_job(2), foreign={"n1": (0, 2)})
    assert alloc[0].gpus == (1, 3)
    alloc, d = place_one([make_node("n1", 4)], make_job(3), foreign={"n1": (0, 2)})
    assert alloc is None


@pytest.mark.parametrize("constraints, expect", [
    ({"driver": "560.35"}, "new"),
    ({"kind": "desktop"}, "desk"),
    ({"arch": "aarch64"}, "arm"),
    ({"board-rev": "B01"}, "arm"),
    ({"gpu_model": "rtx4090"}, "desk"),
    ({"driver": "550.54|560.35", "kind": "server"}, "new"),
])
def test_hardware_identity_constraints(constraints, expect):
    nodes = [
        make_node("old", 8, labels={"driver": "535.104", "vbios": "96.00"}),
        make_node("new", 8, labels={"driver": "560.35", "vbios": "96.02"}),
        make_node("desk", 2, "rtx4090", kind=NodeKind.DESKTOP, labels={"driver": "560.35"}),
        make_node("arm", 1, "orin", kind=NodeKind.EMBEDDED, arch="aarch64", labels={"board-rev": "B01"}),
    ]
    alloc, _ = place_one(nodes, make_job(1, constraints=constraints))
    assert alloc[0].node == expect


def test_gpu_model_is_honoured_on_mixed_nodes():
    nodes = [make_node("a", 8, "a100"), make_node("h", 8, "h100")]
    alloc, _ = place_one(nodes, make_job(8, gpu_model="h100"))
    assert alloc[0].node == "h"


def test_cpus_and_memory_per_node_are_respected():
    nodes = [make_node("small", 8, cpus=16, mem_mb=65536), make_node("big", 8, cpus=128, mem_mb=1 << 20)]
    running = [make_running(1, on="small", cpus=8)]
    alloc, _ = place_one(nodes, make_job(1, cpus=16), running)
    assert alloc[0].node == "big"
    alloc, _ = place_one(nodes, make_job(1, mem_mb=32768), running)
    assert alloc[0].node == "small"  # best fit by GPUs, memory is enough there


def test_cpu_only_job_gets_a_node_and_no_gpus():
    alloc, _ = place_one([make_node("n1", 8, cpus=8)], make_job(0, cpus=4))
    assert alloc[0].node == "n1" and alloc[0].gpus == ()


def test_job_asking_more_than_free_cpu_everywhere_says_so():
    job = make_job(1, cpus=64)
    alloc, d = place_one([make_node("n1", 8, cpus=128)], job, [make_running(1, on="n1", cpus=100)])
    assert alloc is None
    assert d.reasons[job.id].startswith("Resources(needs 1x1 a100 with 64 CPUs")


def test_a_restarted_gang_prefers_the_rack_of_its_previous_attempt():
    # r1: a1, a2; r2: b1-b4. The previous attempt ran on b1, b2 and b2 faulted (gone): best fit
    # alone would take r1 (2 free, the tighter fit); the restart stays in r2
    nodes = [make_node(n, rack="r1") for n in ("a1", "a2")] + [make_node(f"b{i}", rack="r2") for i in (1, 3, 4)]
    fresh = make_job(8, nodes=2)
    assert sorted(nodes_of(place_one(nodes, fresh)[1], fresh.id)) == ["a1", "a2"]
    again = make_job(8, nodes=2, failures=1, previous=["b1", "b2"])
    assert sorted(nodes_of(place_one(nodes, again)[1], again.id)) == ["b1", "b3"]


def test_a_restarted_gang_that_no_longer_fits_its_rack_stays_in_its_switch():
    # racks of 2, switches of 2 racks: the previous attempt ran in r03 (switch s02), 1 node left there
    nodes = make_nodes(8, nodes_per_rack=2, racks_per_switch=2)
    running = [make_running(8, on="n006")]
    again = make_job(8, nodes=2, failures=1, previous=["n005", "n006"])
    d = schedule(make_snapshot(nodes, pending=[again], running=running), 0.0)
    got = sorted(nodes_of(d, again.id))
    assert got == ["n007", "n008"]  # r04 of the same switch s02, not r01 (first by name)


def test_the_block_label_is_the_network_block_like_switch():
    # blocks b1 = n1, n2 (r1, r2), b2 = n3, n4 (r3, r4): a 2-node gang stays within one block
    nodes = [make_node(f"n{i}", rack=f"r{i}", labels={"block": "b1" if i <= 2 else "b2"}) for i in (1, 2, 3, 4)]
    running = [make_running(8, on="n1")]
    got, d = place_one(nodes, gang := make_job(8, nodes=2), running)
    assert sorted(nodes_of(d, gang.id)) == ["n3", "n4"]

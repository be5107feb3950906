"""`scontrol show topology` -> node labels, on captured real Slurm 22.05 output (topology/tree)
and on the documented topology/block format (fixtures/README.topology.md); and the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpufleet.executors.slurm.client import SlurmError, SlurmUnavailable
from gpufleet.executors.slurm.topology import Topology, TopologyCache, parse_topology

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_tree_leaf_switch_is_the_switch_label_and_the_path_goes_to_the_root():
    topo = parse_topology(fixture("topology_tree_3levels.txt"))
    assert topo.kind == "tree"
    assert dict(topo.labels["gpu05"]) == {"switch": "leaf1", "slurm.switches": "leaf1,spine1,core",
                                          "slurm.topology": "tree"}
    assert topo.labels["gpu03"]["switch"] == "leaf2"
    assert topo.labels["cpu010"]["switch"] == "leaf3"  # zero padding kept (cpu[001-010])
    assert topo.labels["cpu001"]["slurm.switches"] == "leaf3,core"  # leaf3 hangs off the root
    assert len(topo.labels) == 15


def test_dev_cluster_topology_splits_a100_nodes_from_the_others():
    topo = parse_topology(fixture("topology_tree_dev.txt"))
    assert {n: lab["switch"] for n, lab in topo.labels.items()} == {
        "gpu01": "sw1", "gpu02": "sw1", "gpu05": "sw1", "gpu03": "sw2", "gpu04": "sw2"}
    assert topo.labels["gpu04"]["slurm.switches"] == "sw2,spine"


def test_disconnected_tree_labels_what_it_reaches():
    """Two leaf switches without a root, gpu05 on none (slurmctld warns but runs)."""
    topo = parse_topology(fixture("topology_tree_disconnected.txt"))
    assert topo.labels["gpu01"]["slurm.switches"] == "sw1"
    assert "gpu05" not in topo.labels


def test_tree_filtered_to_one_node_still_finds_its_leaf():
    topo = parse_topology(fixture("topology_tree_gpu01.txt"))
    assert topo.labels["gpu01"]["switch"] == "leaf1"
    # gpu03 shows up only under upper switches here: its lowest known switch is spine1
    assert topo.labels["gpu03"]["switch"] == "spine1"


def test_block_topology_labels_base_block_and_aggregated_blocks_smallest_first():
    topo = parse_topology(fixture("topology_block.txt"))
    assert topo.kind == "block"
    assert dict(topo.labels["gpu06"]) == {"block": "b2", "slurm.blocks": "b2,b[1-2],b[1-4]",
                                          "slurm.topology": "block"}
    assert topo.labels["gpu14"]["block"] == "b4" and topo.labels["gpu14"]["slurm.blocks"] == "b4,b[3-4],b[1-4]"
    assert "switch" not in topo.labels["gpu01"]
    assert len(topo.labels) == 14


def test_block_topology_before_aggregated_blocks():
    """Slurm 23.11/24.05 print base blocks only."""
    topo = parse_topology("BlockName=bA BlockIndex=0 Nodes=n[1-2] BlockSize=2\n"
                          "BlockName=bB BlockIndex=1 Nodes=n[3-4] BlockSize=2\n")
    assert topo.labels["n3"]["block"] == "bB" and topo.labels["n3"]["slurm.blocks"] == "bB"


@pytest.mark.parametrize("text", ["", "\n", "garbage without equals\n"])
def test_no_topology_plugin_means_no_labels(text):
    """topology/none: stdout is empty (the "No topology information available" goes to stderr)."""
    assert parse_topology(text) == Topology()


def test_an_odd_level_reads_as_a_leaf():
    topo = parse_topology("SwitchName=s1 Level=x LinkSpeed=1 Nodes=a1\n")
    assert topo.labels["a1"]["switch"] == "s1"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Reader:
    def __init__(self, text: str):
        self.text, self.calls, self.fail = text, 0, None

    def __call__(self) -> str:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        return self.text


def test_cache_reads_once_then_on_its_interval():
    clock, read = Clock(), Reader(fixture("topology_tree_dev.txt"))
    cache = TopologyCache(read, clock, refresh_s=600)
    names = ["gpu01", "gpu02", "gpu03", "gpu04", "gpu05"]
    assert cache.labels(names)["gpu05"]["switch"] == "sw1"
    clock.now += 599
    cache.labels(names)
    assert read.calls == 1
    clock.now += 1
    cache.labels(names)
    assert read.calls == 2


def test_cache_rereads_when_the_node_set_changes():
    clock, read = Clock(), Reader(fixture("topology_tree_dev.txt"))
    cache = TopologyCache(read, clock, refresh_s=600)
    cache.labels(["gpu01", "gpu02"])
    cache.labels(["gpu02", "gpu01"])  # same set, other order
    assert read.calls == 1
    read.text = fixture("topology_tree_3levels.txt")
    assert cache.labels(["gpu01", "gpu02", "gpu06"])["gpu01"]["switch"] == "leaf1"
    assert read.calls == 2


@pytest.mark.parametrize("error", [SlurmError("scontrol show: boom"), SlurmUnavailable("timed out")])
def test_a_failed_read_keeps_the_last_topology_and_retries_sooner(error):
    clock, read = Clock(), Reader(fixture("topology_tree_dev.txt"))
    cache = TopologyCache(read, clock, refresh_s=600, retry_s=60)
    cache.labels(["gpu01"])
    clock.now += 600
    read.fail = error
    assert cache.labels(["gpu01"])["gpu01"]["switch"] == "sw1"  # kept
    clock.now += 59
    cache.labels(["gpu01"])
    assert read.calls == 2
    clock.now += 1
    read.fail = None
    read.text = ""  # the plugin was switched off
    assert cache.labels(["gpu01"]) == {}
    assert read.calls == 3


def test_first_read_failing_gives_no_labels():
    clock, read = Clock(), Reader("")
    read.fail = SlurmUnavailable("slurmctld down")
    assert TopologyCache(read, clock).labels(["gpu01"]) == {}

"""Host checks (disk, memory) describe the server's host: they run only for nodes executing here."""

from collections import namedtuple

from gpufleet.domain import Node
from gpufleet.health.runner import HealthRunner
from gpufleet.health.system_checks import DiskCheck

Usage = namedtuple("Usage", "total used free")


def full_disk(path):
    return Usage(100, 99, 1)


def test_host_checks_skip_remote_nodes():
    runner = HealthRunner([DiskCheck(usage=full_disk)], host_nodes=["local-1"])
    local = runner.run(Node("local-1"))
    remote = runner.run(Node("slurm-gpu01"))
    assert [r.status.value for r in local.records] == ["fail"]
    assert remote.records == ()


def test_every_node_is_a_host_node_by_default():
    runner = HealthRunner([DiskCheck(usage=full_disk)])
    assert [r.status.value for r in runner.run(Node("any")).records] == ["fail"]

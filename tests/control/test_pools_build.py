"""The composition root with `pools:`: a server of the fake engine's nodes plus a labgrid pool."""

from __future__ import annotations

import socket

import pytest

from gpufleet.control.pools import PoolRouter
from gpufleet.domain import ValidationError
from gpufleet.main import build
from gpufleet.settings import load_settings


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_without_pools_the_server_has_its_one_executor(tmp_path):
    server = build(load_settings(home=tmp_path, executor="fake", fake_gpus=2, port=8311))
    try:
        assert not isinstance(server.executor, PoolRouter) and server.loop.node_sync is None
    finally:
        server.close()


def test_an_unreachable_pool_does_not_stop_the_server_and_its_own_nodes_are_there(tmp_path):
    pools = {"boards": {"executor": "labgrid", "coordinator": f"127.0.0.1:{closed_port()}", "timeout_s": 2}}
    server = build(load_settings(home=tmp_path, executor="fake", fake_gpus=2, port=8312, pools=pools))
    try:
        assert isinstance(server.executor, PoolRouter) and set(server.executor.pools) == {"default", "boards"}
        assert server.loop.node_sync == server.executor.sync
        nodes = server.store.nodes()
        assert nodes and all(n.labels.get("pool") == "default" for n in nodes)
        server.loop.cycle()  # the farm still unreachable: the cycle goes on with the other pool
        farm = server.executor.pools["boards"].board_health  # the boards' health joins the health loop
        assert server.health.boards == [farm] and farm.managed is True
        assert {h.node for h in server.health.tick()} == {n.name for n in nodes}  # the farm's outage stops nothing
    finally:
        server.close()


def test_an_inventory_node_of_an_unknown_pool_is_refused_naming_it(tmp_path):
    inv = tmp_path / "lab.yaml"
    inv.write_text("nodes:\n  - {name: n1, gpus: 1, gpu_model: a100, labels: {pool: nowhere}}\n")
    pools = {"boards": {"executor": "labgrid", "coordinator": f"127.0.0.1:{closed_port()}", "timeout_s": 1}}
    with pytest.raises(ValidationError) as e:
        build(load_settings(home=tmp_path / "h", executor="fake", inventory=str(inv), port=8313, pools=pools))
    assert e.value.field == "inventory.n1.labels.pool"

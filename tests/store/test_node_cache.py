"""The store keeps the node table in memory until a node write: readers get copies they may
change, every write is seen at once, and a read that overlapped a write is not kept."""

from __future__ import annotations

import pytest

import gpufleet.store.repo as repo
from gpufleet.domain import Gpu, Node, NodeState
from gpufleet.store import Store, make_engine, migrate


@pytest.fixture
def store(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(engine)
    s = Store(engine)
    s.sync_nodes([Node("a", gpus=(Gpu(0, "a100"),), labels={"rack": "r1"}), Node("b")])
    yield s
    engine.dispose()


def test_readers_get_copies(store):
    first = store.nodes()
    first[0].labels["rack"] = "changed"
    first[0].state = NodeState.DRAIN
    again = store.nodes()
    assert again[0].labels == {"rack": "r1"} and again[0].state is NodeState.UP


def test_every_write_is_seen_at_once(store):
    store.nodes()
    node = store.get_node("a")
    node.state, node.reason = NodeState.DRAIN, "maintenance"
    store.save_node(node)
    assert store.nodes()[0].reason == "maintenance" and store.nodes_view()[0].state is NodeState.DRAIN
    store.sync_nodes([Node("b")])
    assert [n.name for n in store.nodes()] == ["b"]


def test_a_read_that_overlapped_a_write_is_not_kept(store, monkeypatch):
    real = repo.node_from_row
    calls = []

    def slow_reader(row):  # a write commits while this read is converting rows
        if not calls:
            store.nodes_changed()
        calls.append(row.name)
        return real(row)

    monkeypatch.setattr(repo, "node_from_row", slow_reader)
    store.nodes_changed()
    store.nodes()
    assert store._node_cache is None
    store.nodes()
    assert store._node_cache is not None

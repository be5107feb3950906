"""Submit's cluster checks (services/jobs.py) run over node kinds, not every node: the same
answers and messages, counted by how many nodes each kind has."""

from __future__ import annotations

import pytest

from gpufleet.domain import ValidationError
from gpufleet.domain.spec import build_spec
from gpufleet.services.jobs import _check_fits, node_kinds, whole_nodes
from tests.scheduler.builders import make_node


def cluster() -> tuple:
    return (tuple(make_node(f"a{i}", 8, "a100", cpus=64, mem_mb=512_000, labels={"rack": "r1"}) for i in range(3))
            + tuple(make_node(f"h{i}", 4, "h100", cpus=32, mem_mb=256_000, labels={"rack": "r2"}) for i in range(2))
            + (make_node("big", 8, "a100", cpus=128, mem_mb=1_024_000, labels={"rack": "r1"}),))


def spec(**kw):
    return build_spec({"command": ["true"], **kw}, default_tenant="default")


def check(**kw) -> str | None:
    try:
        _check_fits(spec(**kw), cluster())
    except ValidationError as e:
        return f"{e.field}: {e}"
    return None


def test_kinds_group_identical_nodes_with_counts():
    kinds = node_kinds(cluster())
    assert sorted((n.gpu_model, n.cpus, c) for n, c in kinds) == [("a100", 64, 3), ("a100", 128, 1), ("h100", 32, 2)]


def test_kinds_are_recomputed_for_a_new_inventory_object():
    nodes = cluster()
    assert sum(c for _, c in node_kinds(nodes)) == 6
    assert sum(c for _, c in node_kinds(nodes[:2])) == 2


@pytest.mark.parametrize("kw, error", [
    ({"gpus": 8, "nodes": 4}, None),
    ({"gpus": 8, "nodes": 5}, "5 nodes requested, only 4 can host 8 GPUs each"),
    ({"gpus": 4, "nodes": 6}, None),
    ({"gpus": 4, "nodes": 2, "gpu_model": "h100"}, None),
    ({"gpus": 4, "nodes": 3, "gpu_model": "h100"}, "3 nodes requested, only 2 can host 4 GPUs each"),
    ({"gpus": 9}, "9 GPUs per node requested, the largest node has 8"),
    ({"gpus": 1, "gpu_model": "v100"}, "unknown GPU model 'v100'"),
    ({"gpus": 1, "nodes": 3, "constraint": "rack=r2"}, "3 nodes requested, only 2 can host 1 GPUs each"),
    ({"gpus": 1, "constraint": "rack=r9"}, "rack=r9 matches no node with 1 GPUs"),
    ({"gpus": 8, "nodes": 2, "cpus": 100}, "2 nodes with 100 CPUs requested, only 1 have that many"),
    ({"gpus": 8, "nodes": 1, "cpus": 200}, "200 CPUs per node requested, the largest node has 128"),
    ({"gpus": 1, "nodes": 4, "cpus": 64}, None),
    ({"gpus": 1, "nodes": 5, "cpus": 64}, "5 nodes with 64 CPUs requested, only 4 have that many"),
])
def test_fit_answers_count_the_nodes_of_each_kind(kw, error):
    got = check(**kw)
    if error is None:
        assert got is None
    else:
        assert got is not None and error in got


def test_whole_nodes_rounds_up_to_the_smallest_fitting_kind():
    s = whole_nodes(spec(gpus=2), cluster())
    assert (s.gpus, s.constraints["gpu_count"]) == (4, "4")

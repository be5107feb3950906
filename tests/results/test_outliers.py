from __future__ import annotations

from gpufleet.results.analysis import outliers, regressions
from gpufleet.results.outliers import classify_change, node_outliers
from tests.results.builders import stepped


def test_a_slow_node_is_reported_with_its_deviation():
    rs = stepped(240, None, 0.0, cv=0.01, seed=1, nodes=8, slow={"n3": 0.90})
    [o] = outliers(rs)
    assert (o.stats.node, o.stats.kind, o.sku, o.benchmark) == ("n3", "slow", "A100-SXM4-80GB", "resnet50-train")
    assert -11 < o.stats.deviation_pct < -9


def test_a_healthy_fleet_has_no_outliers():
    for seed in range(10):
        assert outliers(stepped(240, None, 0.0, cv=0.03, seed=seed, nodes=8)) == []


def test_a_noisy_node():
    import random

    rng = random.Random(0)
    by_node = {f"n{i}": [rng.gauss(100, 1) for _ in range(20)] for i in range(6)}
    by_node["n5"] = [rng.gauss(100, 8) for _ in range(20)]
    [o] = node_outliers(by_node)
    assert (o.node, o.kind) == ("n5", "noisy")


def test_too_few_nodes_to_say():
    assert node_outliers({"a": [1.0] * 5, "b": [1.0] * 5, "c": [0.5] * 5}) == []


def test_invalid_runs_are_not_held_against_a_node():
    rs = stepped(240, None, 0.0, cv=0.01, seed=1, nodes=8, slow={"n3": 0.80})
    for r in rs:
        if r.node == "n3":
            r.valid = False
    assert outliers(rs) == []


def test_a_change_on_every_node_is_software_on_some_nodes_a_node_fault():
    before = {"a": [100.0] * 5, "b": [100.0] * 5, "c": [100.0] * 5}
    assert classify_change(before, {"a": [90.0] * 5, "b": [91.0] * 5, "c": [89.0] * 5}, -10).cause == "software"
    c = classify_change(before, {"a": [80.0] * 5, "b": [100.0] * 5, "c": [100.0] * 5}, -7)
    assert (c.cause, c.moved, c.steady) == ("node", ("a",), ("b", "c"))


def test_a_series_whose_one_node_turned_slow_is_blamed_on_that_node():
    rs = stepped(400, None, 0.0, cv=0.005, seed=2, nodes=2)
    for r in rs[200:]:
        if r.node == "n1":
            r.value *= 0.7
    found = regressions(rs)
    assert found and found[0].cause.cause == "node" and found[0].cause.moved == ("n1",)

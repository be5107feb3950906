"""Outliers as a health signal: the health loop drains a slow node with the reason, on a fake
clock and the fake executor; a healthy fleet loses no node; an admin's resume is not undone by
the same finding."""

from __future__ import annotations

import pytest

from gpufleet.domain import NodeState, User
from gpufleet.executors.fake import FakeClock, FakeExecutor
from gpufleet.inventory.discovery import fake_node
from gpufleet.services import Ctx
from gpufleet.services import nodes as node_svc
from gpufleet.services.health import build_health_service
from gpufleet.services.tenants import bootstrap
from gpufleet.store import Store, make_engine, migrate
from gpufleet.store.results import add_results
from tests.results.builders import stepped

ADMIN = User("admin", "default", admin=True)


@pytest.fixture
def world(tmp_path):
    clock = FakeClock()
    store = Store(make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"))
    migrate(store.engine)
    store.sync_nodes([fake_node(2, "a100", f"n{i}") for i in range(8)])
    ctx = Ctx(store, FakeExecutor(clock), clock)
    bootstrap(ctx, [])
    health = build_health_service(ctx, {"nvml": "fake", "remediation": {"enabled": False}})
    return ctx, health, clock


def state(ctx, name):
    return ctx.store.get_node(name)


def test_a_slow_node_is_drained_with_the_reason(world):
    ctx, health, clock = world
    add_results(ctx.store.engine, stepped(240, None, 0.0, cv=0.01, seed=1, nodes=8, slow={"n3": 0.88}))
    health.tick()
    n3 = state(ctx, "n3")
    assert n3.state is NodeState.DRAIN
    assert n3.reason.startswith("results: slow node: resnet50-train/images_per_s on A100-SXM4-80GB -1")
    assert "vs the fleet median" in n3.reason
    assert [n.name for n in ctx.store.nodes() if n.state is not NodeState.UP] == ["n3"]
    # the admin resumes it: the same finding does not drain it again
    node_svc.set_state(ctx, ADMIN, "n3", NodeState.UP)
    clock.advance(2 * health.outlier_interval_s)
    health.tick()
    assert state(ctx, "n3").state is NodeState.UP


def test_a_healthy_fleet_and_a_software_regression_drain_nothing(world):
    ctx, health, clock = world
    add_results(ctx.store.engine, stepped(300, 200, -0.10, cv=0.02, seed=2, nodes=8))  # every node moved
    assert health.drain_outliers(force=True) == []
    assert all(n.state is NodeState.UP for n in ctx.store.nodes())


def test_the_scan_runs_at_most_every_interval(world):
    ctx, health, clock = world
    health.tick()  # nothing yet
    add_results(ctx.store.engine, stepped(240, None, 0.0, cv=0.01, seed=1, nodes=8, slow={"n5": 0.85}))
    health.tick()
    assert state(ctx, "n5").state is NodeState.UP  # within the interval: not scanned again
    clock.advance(health.outlier_interval_s)
    health.tick()
    assert state(ctx, "n5").state is NodeState.DRAIN


def test_invalid_runs_are_no_evidence(world):
    ctx, health, clock = world
    rs = stepped(240, None, 0.0, cv=0.01, seed=1, nodes=8, slow={"n3": 0.80})
    for r in rs:
        r.valid = r.node != "n3"  # n3's runs were throttled: perf_valid=false
    add_results(ctx.store.engine, rs)
    assert health.drain_outliers(force=True) == []

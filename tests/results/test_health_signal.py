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


def fleet(tmp_path, remediation: dict):
    """8 A100 nodes on the fake engine and a fake clock, with a health service over the fake NVML."""
    clock = FakeClock()
    store = Store(make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"))
    migrate(store.engine)
    store.sync_nodes([fake_node(2, "a100", f"n{i}") for i in range(8)])
    ctx = Ctx(store, FakeExecutor(clock), clock)
    bootstrap(ctx, [])
    return ctx, build_health_service(ctx, {"nvml": "fake", "remediation": remediation}), clock


@pytest.fixture
def world(tmp_path):
    return fleet(tmp_path, {"enabled": False})


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


@pytest.fixture
def healing(tmp_path):
    """The same fleet with remediation on (no runbook or burn-in configured: the re-check is the
    fake NVML's checks, which pass) and no ticketer."""
    ctx, health, clock = fleet(tmp_path, {"enabled": True, "retry_delay": 0})
    yield ctx, health, clock
    health.close()


def later(results, at):
    for r in results:
        r.at += at
    return results


def test_a_slow_node_is_remediated_and_ticketed_when_it_stays_slow(healing):
    ctx, health, clock = healing
    add_results(ctx.store.engine, stepped(240, None, 0.0, cv=0.01, seed=1, nodes=8, slow={"n3": 0.88}))
    health.tick()
    health.workers.wait(10)
    (first,) = health.repo.remediations("n3")
    assert first.outcome == "resumed" and first.reason.startswith("health: results: slow node: resnet50-train")
    assert [s.phase.value for s in first.steps] == ["drain", "wait_idle", "runbook", "burn_in", "recheck", "resume"]
    assert state(ctx, "n3").state is NodeState.UP
    # the next scan: the old results alone say nothing new, and n3 has run nothing since
    clock.advance(health.outlier_interval_s)
    health.tick()
    assert len(health.repo.remediations("n3")) == 1 and state(ctx, "n3").state is NodeState.UP
    # it runs again and is still slow: drained and ticketed, no second round of the same remedy
    add_results(ctx.store.engine, later(stepped(240, None, 0.0, cv=0.01, seed=2, nodes=8, slow={"n3": 0.88}),
                                        clock() + 60))
    clock.advance(health.outlier_interval_s)
    health.tick()
    health.workers.wait(10)
    again = health.repo.remediations("n3")[0]
    assert again.outcome == "escalated" and f"after remediation {first.id}" in again.reason
    assert [s.phase.value for s in again.steps] == ["drain", "wait_idle", "ticket"]
    assert state(ctx, "n3").state is NodeState.DRAIN
    assert [n.name for n in ctx.store.nodes() if n.state is not NodeState.UP] == ["n3"]


def test_a_remediated_node_that_is_fast_again_stays_in_service(healing):
    ctx, health, clock = healing
    add_results(ctx.store.engine, stepped(240, None, 0.0, cv=0.01, seed=1, nodes=8, slow={"n3": 0.88}))
    health.tick()
    health.workers.wait(10)
    add_results(ctx.store.engine, later(stepped(240, None, 0.0, cv=0.01, seed=3, nodes=8), clock() + 60))
    clock.advance(health.outlier_interval_s)
    health.tick()
    health.workers.wait(10)
    assert [r.outcome for r in health.repo.remediations("n3")] == ["resumed"]
    assert state(ctx, "n3").state is NodeState.UP

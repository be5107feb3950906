"""Boards in the health loop without a farm (the real one: tests/executors/labgrid/
test_board_remediation.py): a farm's failing verdict is stored and starts the servers' remediation
with the board's steps (reflash, golden check); an admin's drain is left alone; with remediation off
the verdicts are only history; the farm's verdict log is read at least once across restarts."""

from __future__ import annotations

import pytest

from gpufleet.domain import Gpu, Node, NodeKind, NodeState, User
from gpufleet.executors.fake import FakeClock, FakeExecutor
from gpufleet.executors.labgrid.health import BoardEvents, health_drain
from gpufleet.inventory.discovery import fake_node
from gpufleet.services import Ctx
from gpufleet.services import nodes as node_svc
from gpufleet.services.health import build_health_service
from gpufleet.services.tenants import bootstrap
from gpufleet.store import Store, make_engine, migrate

ADMIN = User("admin", "default", admin=True)


class FakeFarm:
    """The shape of executors/labgrid/health.py GoldenChecks that the health loop uses."""

    def __init__(self, store, names):
        self.store, self.names = store, set(names)
        self.events: list[dict] = []
        self.offset = 0
        self.managed: bool | None = None
        self.healthy = False  # what the golden check finds
        self.reflash_heals = True
        self.reflashed: list[str] = []

    def attach(self, managed: bool) -> None:
        self.managed = managed

    def owns(self, node: str) -> bool:
        return node in self.names

    def unread(self):
        return self.events[self.offset:], len(self.events)

    def ack(self, offset: int) -> None:
        self.offset = offset

    def admin_drained(self, node: str) -> bool:
        n = self.store.get_node(node)
        return n.state is NodeState.DRAIN and not health_drain(n.reason)

    def reflash(self, node: str):
        self.reflashed.append(node)
        self.healthy = self.healthy or self.reflash_heals
        return True, "reflashed with golden.img", {}

    def check(self, node: str):
        return self.healthy, "golden check passed" if self.healthy else "golden check failed: exited with 1", {}

    def fail(self, node: str, at: float, check: str = "golden", message: str = "golden check failed: exited with 1"):
        self.events.append({"place": node, "check": check, "ok": False, "message": message, "at": at, "facts": {}})


@pytest.fixture
def world(tmp_path):
    clock = FakeClock()
    store = Store(make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"))
    migrate(store.engine)
    board = Node(name="board1", kind=NodeKind.EMBEDDED, arch="aarch64", gpus=(Gpu(0, "orin"),))
    store.sync_nodes([fake_node(2, "a100", "srv1"), board])
    ctx = Ctx(store, FakeExecutor(clock), clock)
    bootstrap(ctx, [])

    def make(**health):
        svc = build_health_service(ctx, {"nvml": "fake", **health})
        farm = FakeFarm(store, ["board1"])
        svc.add_boards(farm)
        return svc, farm
    return ctx, clock, make


def test_a_failing_verdict_is_drained_reflashed_rechecked_and_resumed(world):
    ctx, clock, make = world
    svc, farm = make()
    assert farm.managed is True
    svc.tick()
    assert {h.node for h in svc.tick()} == {"srv1"}  # no NVML check on a board: its golden check instead
    farm.fail("board1", clock())
    failing = [h for h in svc.tick() if h.node == "board1"]
    assert [(h.status.value, h.reason) for h in failing] == [("fail", "golden: golden check failed: exited with 1")]
    svc.workers.wait(timeout=10)
    (rem,) = svc.repo.remediations("board1")
    assert rem.outcome == "resumed" and farm.reflashed == ["board1"]
    assert [(s.phase.value, s.message) for s in rem.steps][2:5] == [
        ("runbook", "reflashed with golden.img"),
        ("burn_in", "a board's burn-in is its golden check (the re-check)"), ("recheck", "all checks pass")]
    assert ctx.store.get_node("board1").state is NodeState.UP
    history = [(r.check, r.status.value) for r in svc.repo.results("board1")]
    assert history == [("golden", "ok"), ("golden", "fail")]  # newest first: the re-check, the verdict
    assert sum(svc.show("board1")["failures_per_week"].values()) == 1
    svc.tick()
    assert len(svc.repo.remediations("board1")) == 1  # a verdict is taken once
    svc.close()


def test_a_job_failure_that_reflashing_does_not_heal_is_ticketed_as_escalated(world):
    ctx, clock, make = world
    svc, farm = make(remediation={"max_rounds": 2})
    farm.reflash_heals = False
    farm.fail("board1", clock(), check="board", message="power-on failed: relay stuck")
    svc.tick()
    svc.workers.wait(timeout=10)
    (rem,) = svc.repo.remediations("board1")
    assert rem.outcome == "escalated" and farm.reflashed == ["board1", "board1"]
    assert rem.reason == "health: board: power-on failed: relay stuck"
    node = ctx.store.get_node("board1")
    assert node.state is NodeState.DRAIN and node.reason == rem.reason
    svc.close()


def test_an_admins_drain_is_left_alone_and_without_remediation_verdicts_are_history(world):
    ctx, clock, make = world
    svc, farm = make()
    node_svc.set_state(ctx, ADMIN, "board1", NodeState.DRAIN, "new carrier board")
    farm.fail("board1", clock())
    svc.tick()
    assert svc.repo.remediations("board1") == [] and farm.reflashed == []
    assert ctx.store.get_node("board1").reason == "new carrier board"
    assert [r.status.value for r in svc.repo.results("board1")] == ["fail"]  # still in its history
    svc.close()

    node_svc.set_state(ctx, ADMIN, "board1", NodeState.UP)
    off, farm = make(remediation={"enabled": False})
    assert farm.managed is False  # the farm keeps re-checking and resuming its boards itself
    farm.fail("board1", clock())
    off.tick()
    assert off.repo.remediations("board1") == [] and ctx.store.get_node("board1").state is NodeState.UP
    off.close()


def test_the_verdict_log_is_read_at_least_once_across_restarts(tmp_path):
    log = BoardEvents(tmp_path / "events.jsonl")
    log.add("board1", "golden", False, "golden check failed: exited with 1", 10.0)
    log.add("board2", "board", False, "power-on failed", 11.0, job=7)
    events, offset = log.unread()
    assert [(e["place"], e["check"], e["ok"]) for e in events] == [("board1", "golden", False), ("board2", "board", False)]
    assert events[1]["facts"] == {"job": 7}
    again = BoardEvents(tmp_path / "events.jsonl")  # a restart before the ack: read again
    assert again.unread()[0] == events
    log.add("board1", "golden", True, "golden check passed", 12.0)  # after the read, before the ack
    again.ack(offset)
    assert [e["at"] for e in again.unread()[0]] == [12.0]
    again.ack(again.unread()[1])
    assert again.unread() == ([], 0) and not (tmp_path / "events.jsonl").exists()  # all read: started afresh
    log.add("board1", "golden", True, "golden check passed", 13.0)
    assert [e["at"] for e in BoardEvents(tmp_path / "events.jsonl").unread()[0]] == [13.0]

"""The control loop's test world: a store, the fake engine, a fake clock (shared by tests/control)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from gpufleet.control.loop import ControlLoop
from gpufleet.domain import JobState, Node, User
from gpufleet.executors.fake import FakeClock, FakeExecutor
from gpufleet.inventory import load_inventory
from gpufleet.services import Ctx
from gpufleet.services import jobs as svc
from gpufleet.services.tenants import bootstrap
from gpufleet.store import Store, make_engine, migrate
from tests.conftest import EXAMPLE_LAB

ADMIN = User("admin", "default", admin=True)


@dataclass
class LoopWorld:
    ctx: Ctx
    loop: ControlLoop

    @property
    def store(self) -> Store:
        return self.ctx.store

    @property
    def executor(self) -> FakeExecutor:
        return self.ctx.executor

    @property
    def clock(self) -> FakeClock:
        return self.ctx.clock

    def submit(self, **spec) -> int:
        spec.setdefault("command", ["train"])
        return svc.submit(self.ctx, ADMIN, spec).id

    def state(self, job_id: int) -> JobState:
        return self.store.get_job(job_id).state


def make_loop_world(tmp_path: Path, nodes: Sequence[Node] | None = None, store: Store | None = None) -> LoopWorld:
    """The example lab's nodes and tenants (or `nodes` instead of its nodes), on `store` (default: a
    new SQLite database in tmp_path)."""
    clock = FakeClock()
    if store is None:
        store = Store(make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"))
    migrate(store.engine)
    inv = load_inventory(EXAMPLE_LAB)
    store.sync_nodes(list(nodes) if nodes is not None else inv.nodes)
    ex = FakeExecutor(clock)
    ctx = Ctx(store, ex, clock)
    bootstrap(ctx, inv.tenants)
    return LoopWorld(ctx, ControlLoop(store, ex, clock))

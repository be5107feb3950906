"""The control loop on the fake executor and a fake clock: load -> decide -> apply, crash-safe."""

from __future__ import annotations

import pytest

from gpufleet.control.loop import ControlLoop
from gpufleet.domain import Allocation, JobState, NodeState, User, transition
from gpufleet.executors.base import EngineUnavailable
from gpufleet.executors.fake import FakeClock, FakeExecutor
from gpufleet.inventory import load_inventory
from gpufleet.scheduler import Decisions
from gpufleet.services import Ctx
from gpufleet.services import jobs as svc
from gpufleet.services.tenants import bootstrap
from gpufleet.store import Store, make_engine, migrate
from tests.conftest import EXAMPLE_LAB

ADMIN = User("admin", "default", admin=True)


@pytest.fixture
def world(tmp_path):
    clock = FakeClock()
    store = Store(make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"))
    migrate(store.engine)
    inv = load_inventory(EXAMPLE_LAB)
    store.sync_nodes(inv.nodes)
    ex = FakeExecutor(clock)
    ctx = Ctx(store, ex, clock)
    bootstrap(ctx, inv.tenants)
    return ctx, ControlLoop(store, ex, clock)


def submit(ctx, **spec):
    spec.setdefault("command", ["train"])
    return svc.submit(ctx, ADMIN, spec).id


def test_transient_engine_outage_retries_launch_instead_of_failing(world):
    ctx, loop = world
    job = submit(ctx, gpus=2, gpu_model="a100")
    ctx.executor.launch_error = EngineUnavailable("slurmctld restarting")
    loop.cycle()
    j = ctx.store.get_job(job)
    assert j.state is JobState.RUNNING and j.handle is None  # decision kept, not launched yet
    ctx.executor.launch_error = None
    loop.cycle()
    assert ctx.store.get_job(job).handle is not None
    assert ctx.executor.launches == [job]


def test_a_real_launch_error_fails_the_job_with_the_reason(world):
    ctx, loop = world
    job = submit(ctx)
    ctx.executor.launch_error = RuntimeError("no such image")
    loop.cycle()
    j = ctx.store.get_job(job)
    assert j.state is JobState.FAILED and "no such image" in j.reason


def test_crash_between_decision_and_launch_launches_exactly_once(world):
    ctx, loop = world
    job = submit(ctx, gpus=8, gpu_model="a100")
    # the decision is written (RUNNING + allocation) but the process "died" before launching
    j = ctx.store.get_job(job)
    j.allocation = (Allocation("dgx1", tuple(range(8))),)
    ctx.store.save_job(j, JobState.PENDING, transition(j, JobState.RUNNING, "placed", ctx.clock()))
    restarted = ControlLoop(ctx.store, ctx.executor.restarted(), ctx.clock, loop.config)
    restarted.cycle()
    restarted.cycle()
    assert ctx.executor.launches == [job]
    assert ctx.store.get_job(job).handle is not None


def test_restarted_loop_readopts_running_jobs_without_relaunching(world):
    ctx, loop = world
    job = submit(ctx, env={"GPUFLEET_FAKE_SECONDS": "10"})
    loop.cycle()
    restarted = ControlLoop(ctx.store, ctx.executor.restarted(), ctx.clock)
    restarted.cycle()
    assert ctx.store.get_job(job).state is JobState.RUNNING
    ctx.clock.advance(11)
    restarted.cycle()
    assert ctx.store.get_job(job).state is JobState.SUCCEEDED
    assert ctx.executor.launches == [job]


def test_node_down_requeues_its_jobs_and_drain_leaves_them(world):
    ctx, loop = world
    on_dgx = submit(ctx, gpus=4, gpu_model="a100")
    on_desk = submit(ctx, gpus=2, gpu_model="rtx4090")
    loop.cycle()
    dgx = ctx.store.get_node("dgx1")
    ctx.store.save_node(dgx, transition(dgx, NodeState.DOWN, "power", ctx.clock()))
    desk = ctx.store.get_node(ctx.store.get_job(on_desk).allocation[0].node)
    ctx.store.save_node(desk, transition(desk, NodeState.DRAIN, "maintenance", ctx.clock()))
    loop.cycle()  # signals the job on the down node
    loop.cycle()  # observes it stopped: back to the queue, and nothing else fits while dgx1 is down
    j = ctx.store.get_job(on_dgx)
    assert j.state is JobState.PENDING and "down" in " ".join(e.reason for e in ctx.store.events("job", str(on_dgx)))
    assert j.restarts == 1 and j.allocation == ()
    assert ctx.store.get_job(on_desk).state is JobState.RUNNING  # drain leaves it alone


def test_cancel_running_is_decided_first_then_observed(world):
    ctx, loop = world
    job = submit(ctx)
    loop.cycle()
    svc.cancel(ctx, ADMIN, job)
    assert ctx.store.get_job(job).state is JobState.RUNNING  # not yet: the engine must stop it
    loop.cycle()
    loop.cycle()
    j = ctx.store.get_job(job)
    assert j.state is JobState.CANCELLED and "admin" in j.reason
    assert ctx.executor.world.cancels == [job]


def test_every_pending_job_gets_a_reason(world):
    ctx, loop = world
    ids = [submit(ctx, gpus=8, gpu_model="a100") for _ in range(3)]
    loop.cycle()
    states = [ctx.store.get_job(i) for i in ids]
    assert sum(j.state is JobState.RUNNING for j in states) == 1
    assert all(j.reason and j.reason != "Submitted" for j in states if j.state is JobState.PENDING)


def test_a_requeued_job_runs_again_as_attempt_2_and_the_store_keeps_both_runs(world):
    ctx, loop = world
    job = submit(ctx, gpus=8, gpu_model="a100", env={"GPUFLEET_FAKE_RESTARTED_SECONDS": "5"})
    loop.cycle()
    first_node = ctx.store.get_job(job).node_names
    node = ctx.store.get_node(first_node[0])
    ctx.store.save_node(node, transition(node, NodeState.DOWN, "power", ctx.clock()))
    loop.cycle()  # signals the job on the down node
    loop.cycle()  # observes it stopped: requeued
    node = ctx.store.get_node(first_node[0])
    ctx.store.save_node(node, transition(node, NodeState.UP, "power back", ctx.clock()))
    loop.cycle()  # placed again: attempt 2
    j = ctx.store.get_job(job)
    assert (j.state, j.attempt) == (JobState.RUNNING, 2)
    ctx.clock.advance(6)
    loop.cycle()
    assert ctx.store.get_job(job).state is JobState.SUCCEEDED
    assert ctx.executor.launches == [job, job]
    a1, a2 = ctx.store.attempts(job)
    assert (a1.n, a1.state, a1.node_names, a1.handle) == (1, JobState.PENDING, first_node, f"fake-{job}")
    assert "down" in a1.reason and a1.ended_at is not None
    assert (a2.n, a2.state, a2.exit_code, a2.handle) == (2, JobState.SUCCEEDED, 0, f"fake-{job}-a2")
    runs = [(e.new, e.attempt) for e in ctx.store.events("job", str(job))]
    assert runs == [("PENDING", None), ("RUNNING", 1), ("PENDING", 1), ("RUNNING", 2), ("SUCCEEDED", 2)]


def test_a_reason_that_moves_only_in_its_numbers_is_refreshed_once_a_minute(world):
    ctx, loop = world
    job_id = submit(ctx, gpus=1)

    def record(reason: str, now: float) -> str:
        loop._record_reasons(Decisions(reasons={job_id: reason}), {job_id: ctx.store.get_job(job_id)}, now)
        return ctx.store.get_job(job_id).reason

    assert record("Reserved: booking 3 starts in 29m", 1000.0) == "Reserved: booking 3 starts in 29m"
    assert record("Reserved: booking 3 starts in 28m", 1030.0) == "Reserved: booking 3 starts in 29m"
    assert record("Reserved: booking 3 starts in 27m", 1061.0) == "Reserved: booking 3 starts in 27m"
    assert record("Priority: 2 jobs ahead", 1062.0) == "Priority: 2 jobs ahead"  # a new reason: at once


def test_the_scheduler_base_is_kept_between_cycles_and_decides_as_a_fresh_one(world):
    """The loop hands the scheduler the cached node tuple and unchanged running jobs as the same
    objects: its Base is updated, not rebuilt, and every decision equals schedule() on a fresh one."""
    from gpufleet.scheduler import schedule
    ctx, loop = world
    kept, differ = loop._scheduler, []

    def checked(snap, now):
        fresh = schedule(snap, now)  # before the kept one: the same snapshot, untouched
        d = kept(snap, now)
        if d != fresh:
            differ.append((d, fresh))
        return d
    loop._scheduler = checked
    for _ in range(3):
        submit(ctx, gpus=1)
    loop.cycle()
    rebuilds = kept.rebuilds
    submit(ctx, gpus=2)
    submit(ctx, gpus=8)
    loop.cycle()
    ctx.clock.advance(30)
    loop.cycle()
    assert kept.rebuilds == rebuilds  # nothing about the nodes changed
    ctx.store.save_node(ctx.store.get_node(ctx.store.nodes_view()[0].name))
    loop.cycle()
    assert kept.rebuilds == rebuilds + 1  # a node write: a new node tuple, a new Base
    assert differ == []

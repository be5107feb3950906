"""The store keeps the active jobs in memory (store/active.py): every write path marks what it
wrote, so after any service or control-loop operation the cached view equals a fresh read of the
database, WITHOUT the safety nets (a full re-read every jobs_resync_s, the count/max-id version
check) having to step in; those catch writers outside the process."""

from __future__ import annotations

import pytest

import gpufleet.store.active as active
from gpufleet.domain import JobState, NodeState
from gpufleet.services import Ctx
from gpufleet.services import groups as groups_svc
from gpufleet.services import jobs as svc
from gpufleet.services import nodes as node_svc
from gpufleet.store import Store, make_engine
from tests.conftest import DATABASES, database_url
from tests.control.conftest import ADMIN, LoopWorld, make_loop_world

SLOW = {"GPUFLEET_FAKE_SECONDS": "3600"}


@pytest.fixture(params=DATABASES)
def w(request, tmp_path):
    with database_url(request.param, tmp_path, "active") as url:
        engine = make_engine(url)
        try:  # no timed re-read: deltas alone must be right
            yield make_loop_world(tmp_path, store=Store(engine, jobs_resync_s=1e9))
        finally:
            engine.dispose()


def fresh(store: Store):
    """What the database holds now, read by a store with nothing cached."""
    return Store(store.engine).active_jobs()


def check(w: LoopWorld) -> None:
    assert w.store.active_jobs() == fresh(w.store)
    assert w.store._active.full_reads == 1, "a full re-read hid a write path that did not mark its job"


def test_every_write_path_is_seen_without_a_full_read(w):
    check(w)  # the first read is the one full read
    a = w.submit(gpus=2, gpu_model="a100", env=SLOW)
    b = w.submit(gpus=1, gpu_model="rtx4090", env={"GPUFLEET_FAKE_SECONDS": "5"})
    c = w.submit(gpus=8, gpu_model="a100", env=SLOW, priority=-5)  # waits behind a
    svc.submit_many(w.ctx, ADMIN, [{"command": ["x"], "gpus": 1, "gpu_model": "orin", "env": SLOW}] * 2)
    check(w)
    w.loop.cycle()  # placements, launches, reasons
    assert w.state(a) is JobState.RUNNING and w.state(c) is JobState.PENDING
    check(w)
    svc.cancel(w.ctx, ADMIN, c)  # a PENDING job: cancelled at once
    svc.cancel(w.ctx, ADMIN, a)  # a RUNNING one: the decision written, the loop acts
    check(w)
    w.loop.cycle()  # signalled
    w.loop.cycle()  # its end observed
    assert w.state(a) is JobState.CANCELLED
    check(w)
    w.clock.advance(10)
    w.loop.cycle()  # b ended by itself
    assert w.state(b) is JobState.SUCCEEDED
    check(w)
    group = groups_svc.submit(w.ctx, ADMIN, {"command": ["sweep"], "gpus": 1, "gpu_model": "rtx4090",
                                             "env": SLOW, "array": "0-2%1"})
    doomed = w.submit(gpus=1, dependency=f"afterok:{c}")  # c was cancelled: never satisfied
    check(w)
    w.loop.cycle()  # gating: held by %1, the doomed one FAILED
    assert w.state(doomed) is JobState.FAILED
    assert sum(w.state(cell["job_id"]) is JobState.RUNNING for cell in group["cells"]) == 1
    check(w)


def test_node_down_heartbeat_and_launch_failure_paths(w):
    check(w)
    on_dgx = w.submit(gpus=8, gpu_model="a100", env=SLOW)
    hung = w.submit(gpus=1, gpu_model="rtx4090", env=SLOW, heartbeat="1m")
    w.loop.cycle()
    check(w)
    node_svc.set_state(w.ctx, ADMIN, "dgx1", NodeState.DOWN, "power")
    w.clock.advance(61)
    w.loop.cycle()  # decisions written: requeue (node down, heartbeat stopped), then signalled
    check(w)
    w.loop.cycle()  # the ends observed: both requeued (hung placed again at once)
    assert w.store.get_job(on_dgx).restarts == 1 and w.store.get_job(hung).restarts == 1
    assert w.state(on_dgx) is JobState.PENDING
    check(w)
    bad = w.submit(gpus=1, gpu_model="orin")
    w.executor.launch_error = RuntimeError("no such image")
    w.loop.cycle()  # placed, fails to launch
    assert w.state(bad) is JobState.FAILED
    check(w)
    w.store.set_action(on_dgx, "cancel", "by hand")  # a store write with no state check
    check(w)


def test_a_write_path_that_forgets_to_mark_is_caught(w, monkeypatch):
    job = w.submit(gpus=1, env=SLOW)
    w.loop.cycle()
    check(w)
    monkeypatch.setattr(w.store, "jobs_changed", lambda ids: None)  # a write path that forgot
    svc.cancel(w.ctx, ADMIN, job)  # RUNNING: pending_action written, the row stays active
    assert w.store.active_jobs() != fresh(w.store)  # the check of the tests above would fail


def test_writes_from_outside_the_process_are_found(w, monkeypatch):
    w.submit(gpus=1, env=SLOW)
    check(w)
    other = Store(w.store.engine)  # another process: its writes mark nothing here
    job = other.active_jobs()[0]
    svc.submit(Ctx(other, w.executor, w.clock), ADMIN, {"command": ["x"], "gpus": 1})
    assert w.store.active_jobs() == fresh(w.store)  # the count/max-id check disagreed: all re-read
    assert w.store._active.full_reads == 2
    other.set_action(job.id, "cancel", "elsewhere")  # same count, same ids: found at the resync
    assert w.store.active_jobs()[0].extra.get("pending_action") is None
    now = [0.0]
    monkeypatch.setattr(w.store._active, "clock", lambda: now[0])
    w.store._active.resync_s, w.store._active._loaded_at = 60.0, 0.0
    now[0] = 59.0
    assert w.store.active_jobs()[0].extra.get("pending_action") is None
    now[0] = 60.0
    assert w.store.active_jobs()[0].extra.get("pending_action") == "cancel"


def test_readers_get_copies(w):
    job = w.submit(gpus=1)
    first = w.store.active_jobs()[0]
    first.state, first.reason = JobState.RUNNING, "changed by a reader"
    first.extra["pending_action"] = "cancel"
    again = w.store.active_jobs()[0]
    assert (again.id, again.state, again.reason, again.extra) == (job, JobState.PENDING, "Submitted", {})


def test_a_write_during_a_read_is_read_next_time(w, monkeypatch):
    job = w.submit(gpus=1)
    w.store.active_jobs()
    real, calls = active.job_from_light, []

    def slow_mapping(row, spec):  # the read has its rows; a write commits and marks meanwhile
        if not calls:
            w.store.set_action(job, "cancel", "raced")
        calls.append(row.id)
        return real(row, spec)

    monkeypatch.setattr(active, "job_from_light", slow_mapping)
    w.store.set_action(job, None, "")
    assert w.store.active_jobs()[0].extra.get("pending_action") is None  # read before the write
    assert w.store.active_jobs()[0].extra.get("pending_action") == "cancel"
    check(w)


def test_a_failed_read_reads_everything_next_time(w, monkeypatch):
    job = w.submit(gpus=1)
    check(w)
    w.store.set_action(job, "cancel", "lost?")

    def broken(*a, **k):
        raise RuntimeError("database went away")

    monkeypatch.setattr(w.store._active, "_read_some", broken)
    with pytest.raises(RuntimeError):
        w.store.active_jobs()
    monkeypatch.undo()
    assert w.store.active_jobs() == fresh(w.store)  # the dirty ids taken were not lost
    assert w.store._active.full_reads == 2


def test_order_is_by_id_when_a_job_comes_back(w):
    ids = [w.submit(gpus=1, env=SLOW) for _ in range(3)]
    w.store.active_jobs()
    first = w.store.get_job(ids[0])
    first.state = JobState.CANCELLED
    w.store.save_job(first, JobState.PENDING)
    assert [j.id for j in w.store.active_jobs()] == ids[1:]
    first.state = JobState.PENDING  # (no service does this; the cache must still keep id order)
    w.store.save_job(first, JobState.CANCELLED)
    assert [j.id for j in w.store.active_jobs()] == ids
    check(w)

"""Attempts in the store: opened and closed by save_jobs in the job's own transaction, events
carrying the attempt, on SQLite and on a real PostgreSQL (own throwaway database)."""

from __future__ import annotations

import pytest

from gpufleet.domain import Allocation, Job, JobSpec, JobState, Tenant, transition
from gpufleet.store import Store


@pytest.fixture
def store(db_engine):
    return Store(db_engine)


def submitted(store: Store, n: int = 1) -> list[Job]:
    store.put_tenant(Tenant("default", {}))
    jobs = [Job(0, JobSpec(command=("true",)), submitted_at=1.0) for _ in range(n)]
    store.add_jobs(jobs, 1.0, "admin")
    return store.active_jobs()


def place(store: Store, job: Job, node: str, at: float) -> bool:
    job.allocation = (Allocation(node, (0,)),)
    return store.save_job(job, JobState.PENDING, transition(job, JobState.RUNNING, f"placed on {node}", at))


def test_requeue_closes_attempt_1_and_the_next_run_opens_attempt_2(store):
    (job,) = submitted(store)
    assert store.attempts(job.id) == []
    assert place(store, job, "n1", 2.0)
    job.handle = "engine-1"
    assert store.save_job(job, JobState.RUNNING)  # the launch learnt the handle
    (a1,) = store.attempts(job.id)
    assert (a1.n, a1.state, a1.started_at, a1.ended_at, a1.handle) == (1, JobState.RUNNING, 2.0, None, "engine-1")
    assert a1.node_names == ("n1",)
    requeue = transition(job, JobState.PENDING, "Requeued: preempted", 3.0)
    assert store.save_job(job, JobState.RUNNING, requeue, clear_action=True)
    assert place(store, job, "n2", 4.0)
    job.exit_code = 0
    assert store.save_job(job, JobState.RUNNING, transition(job, JobState.SUCCEEDED, "exited with 0", 5.0))
    a1, a2 = store.attempts(job.id)
    assert (a1.n, a1.state, a1.reason, a1.ended_at, a1.handle) == (
        1, JobState.PENDING, "Requeued: preempted", 3.0, "engine-1")
    assert a1.requeued and not a2.requeued
    assert (a2.n, a2.state, a2.exit_code, a2.started_at, a2.ended_at, a2.node_names) == (
        2, JobState.SUCCEEDED, 0, 4.0, 5.0, ("n2",))
    events = [(e.old, e.new, e.attempt) for e in store.events("job", str(job.id))]
    assert events == [("", "PENDING", None), ("PENDING", "RUNNING", 1), ("RUNNING", "PENDING", 1),
                      ("PENDING", "RUNNING", 2), ("RUNNING", "SUCCEEDED", 2)]


def test_a_lost_compare_and_set_writes_no_attempt_and_no_event(store):
    (job,) = submitted(store)
    stale = Job(job.id, job.spec, submitted_at=1.0)
    assert place(store, job, "n1", 2.0)
    assert not place(store, stale, "n2", 2.5)  # the row is no longer PENDING
    assert [a.node_names for a in store.attempts(job.id)] == [("n1",)]
    assert len(store.events("job", str(job.id))) == 2


def test_bulk_placement_opens_one_attempt_per_job_in_one_call(store):
    jobs = submitted(store, 50)
    items = []
    for i, job in enumerate(jobs):
        job.allocation = (Allocation(f"n{i}", (0,)),)
        items.append((job, JobState.PENDING, transition(job, JobState.RUNNING, "placed", 2.0)))
    assert store.save_jobs(items) == [True] * 50
    for i, job in enumerate(jobs):
        (a,) = store.attempts(job.id)
        assert (a.n, a.node_names, a.state) == (1, (f"n{i}",), JobState.RUNNING)


def test_pending_saves_and_cancel_of_a_pending_job_leave_attempts_alone(store):
    (job,) = submitted(store)
    job.reason = "Resources"
    assert store.save_job(job, JobState.PENDING)
    assert store.save_job(job, JobState.PENDING, transition(job, JobState.CANCELLED, "by alice", 2.0))
    assert store.attempts(job.id) == []
    assert store.events("job", str(job.id))[-1].attempt is None

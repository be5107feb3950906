"""A migrated store on SQLite and on a real PostgreSQL (own throwaway database), and builders that
write jobs and their attempts straight through Store.save_jobs with chosen times."""

from __future__ import annotations

import pytest

from gpufleet.domain import Allocation, Gpu, Job, JobSpec, JobState, Node, NodeKind, Tenant, transition
from gpufleet.store import Store


@pytest.fixture
def store(db_engine):
    return Store(db_engine)


def lab(store: Store) -> None:
    """dgx1: a server with 8 a100; desk-001/002: desktops with 2 rtx4090; tenants vision, speech."""
    store.sync_nodes([
        Node("dgx1", NodeKind.SERVER, gpus=tuple(Gpu(i, "a100") for i in range(8))),
        Node("desk-001", NodeKind.DESKTOP, gpus=(Gpu(0, "rtx4090"), Gpu(1, "rtx4090"))),
        Node("desk-002", NodeKind.DESKTOP, gpus=(Gpu(0, "rtx4090"), Gpu(1, "rtx4090"))),
    ])
    for t in (Tenant("default"), Tenant("vision", {"a100": 4}), Tenant("speech", {"a100": 2, "rtx4090": 4})):
        store.put_tenant(t)


def submit(store: Store, user: str, tenant: str, at: float, gpus: int = 1, nodes: int = 1) -> Job:
    job = Job(0, JobSpec(command=("true",), gpus=gpus, nodes=nodes, tenant=tenant), user=user, submitted_at=at)
    store.add_jobs([job], at, user)
    return job


def run(store: Store, job: Job, at: float, *alloc: tuple[str, tuple[int, ...]]) -> None:
    job.allocation = tuple(Allocation(n, g) for n, g in alloc)
    assert store.save_job(job, JobState.PENDING, transition(job, JobState.RUNNING, "placed", at))


def end(store: Store, job: Job, at: float, state: JobState = JobState.SUCCEEDED) -> None:
    job.exit_code = 0 if state is JobState.SUCCEEDED else 1
    assert store.save_job(job, JobState.RUNNING, transition(job, state, "ended", at))


def requeue(store: Store, job: Job, at: float) -> None:
    assert store.save_job(job, JobState.RUNNING, transition(job, JobState.PENDING, "Requeued: preempted", at))

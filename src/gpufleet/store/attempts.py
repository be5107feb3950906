"""What one `Store.save_jobs` transaction writes besides the job rows: events and attempts, in bulk.

Bulk placement saves thousands of PENDING -> RUNNING changes in one call (the hot path of a
scheduling cycle), so the rows are collected while the jobs are compare-and-set and then written
with one executemany per kind of statement.
"""

from __future__ import annotations

from typing import Any, Callable

from sqlalchemy import Connection, Table, bindparam, func, insert, update

from gpufleet.domain import Job, JobState, StateChange
from gpufleet.store.rows import AttemptRow, EventRow
from gpufleet.store.usage import NodeFacts, UsageWrites

RUNNING = JobState.RUNNING.value
_ATTEMPTS: Table = AttemptRow.__table__  # type: ignore[assignment]
_EVENTS: Table = EventRow.__table__  # type: ignore[assignment]


class Attempts:
    """Collects, per saved job, its event and what happens to its attempt; `write` sends them."""

    def __init__(self, nodes: Callable[[], NodeFacts] = dict) -> None:
        self.usage = UsageWrites(nodes)  # the attempt's accounting rows (store/usage.py)
        self.events: list[dict[str, Any]] = []
        self.opened: list[dict[str, Any]] = []
        self.closed: list[dict[str, Any]] = []
        self.handles: list[dict[str, Any]] = []

    def note(self, job: Job, change: StateChange | None, allocation: list) -> None:
        if change is None:
            if job.state is JobState.RUNNING and job.handle is not None:
                self.handles.append({"b_job": job.id, "b_handle": job.handle})
            return
        self.events.append({"kind": change.kind, "key": change.key, "at": change.at, "old": change.old,
                            "new": change.new, "reason": change.reason, "attempt": change.attempt})
        if change.old == RUNNING:  # the run ends: how (PENDING = requeued)
            self.closed.append({"b_job": job.id, "b_state": change.new, "b_reason": change.reason,
                                "b_at": change.at, "b_exit": job.exit_code, "b_handle": job.handle})
            self.usage.close(job, change.at)
        if change.new == RUNNING:
            self.opened.append({"job_id": job.id, "n": change.attempt or job.attempt, "state": RUNNING,
                                "reason": "", "started_at": change.at, "ended_at": None,
                                "exit_code": None, "allocation": allocation, "handle": job.handle})
            self.usage.open(job, change.attempt or job.attempt, change.at, allocation)

    def write(self, conn: Connection) -> None:
        if self.events:
            conn.execute(insert(_EVENTS), self.events)
        if self.closed:
            conn.execute(_CLOSE, self.closed)
        if self.opened:
            conn.execute(_insert_new(conn), self.opened)
        if self.handles:
            conn.execute(_HANDLE, self.handles)
        self.usage.write(conn)


_OPEN = (_ATTEMPTS.c.job_id == bindparam("b_job")) & _ATTEMPTS.c.ended_at.is_(None)
_CLOSE = update(_ATTEMPTS).where(_OPEN).values(
    state=bindparam("b_state"), reason=bindparam("b_reason"), ended_at=bindparam("b_at"),
    exit_code=bindparam("b_exit"), handle=func.coalesce(bindparam("b_handle"), _ATTEMPTS.c.handle))
_HANDLE = update(_ATTEMPTS).where(_OPEN).values(handle=bindparam("b_handle"))


def _insert_new(conn: Connection):
    """INSERT that leaves an existing (job, n) alone: a broken invariant must not wedge placement."""
    name = conn.dialect.name
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    elif name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:  # pragma: no cover - the two supported databases are above
        return insert(_ATTEMPTS)
    return dialect_insert(_ATTEMPTS).on_conflict_do_nothing(index_elements=["job_id", "n"])

"""The Store: every read and write of durable state goes through here (short transactions only)."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Iterable, Iterator, Mapping, Sequence

from sqlalchemy import Connection, Engine, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from gpufleet.domain import (
    Attempt, Booking, Job, JobState, Node, NotFound, StateChange, Tenant, User,
)
from gpufleet.store import groups
from gpufleet.store.active import ActiveJobs
from gpufleet.store.attempts import Attempts
from gpufleet.store.tokens import TokenRepo, hash_token  # noqa: F401 (hash_token: re-exported)
from gpufleet.store.usage import add_busy
from gpufleet.store.mapping import (
    attempt_from_row, booking_from_row, job_from_row, job_to_row, job_values, node_from_row,
    node_to_row, tenant_from_row,
)
from gpufleet.store.rows import (
    AttemptRow, AuditRow, BookingRow, EventRow, JobRow, MetaRow, NodeRow, TenantRow, UserRow,
)

__all__ = ["DuplicateKey", "Store", "hash_token"]


class DuplicateKey(Exception):
    """An idempotency key this user already used (a concurrent submission won the race)."""


class Store(TokenRepo):
    def __init__(self, engine: Engine, jobs_resync_s: float = 60.0):
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        # the active jobs, kept in memory: every job write below marks its ids (jobs_changed)
        # after its commit; all re-read every `jobs_resync_s` (store/active.py)
        self._active = ActiveJobs(engine, jobs_resync_s)
        # the node table, read once and kept until a node write (the loop and the API read it all
        # the time; at 10k nodes a read is ORM rows and JSON for every node). A read caches only
        # if no write finished meanwhile (the generation), so a slow reader never keeps stale rows.
        self._node_cache: tuple[Node, ...] | None = None
        self._node_facts: dict | None = None  # for usage rows (store/usage.py)
        self._node_gen = 0
        self._node_lock = threading.Lock()

    @contextmanager
    def tx(self) -> Iterator[Session]:
        with self._sessions.begin() as s:
            yield s

    # ---- jobs -------------------------------------------------------------------------------
    def add_jobs(self, jobs: Sequence[Job], now: float, audit_user: str,
                 keys: Sequence[str | None] | None = None, group: dict | None = None) -> None:
        # (the submit audit lines are written here, in the same transaction, not via Ctx.audit)
        """Insert new jobs, their first events and the audit lines in ONE transaction. `keys`:
        idempotency keys, unique per user: a key taken meanwhile raises DuplicateKey (nothing stored)."""
        try:
            self._add_jobs(jobs, now, audit_user, keys or [None] * len(jobs), group)
        except IntegrityError as e:
            if not any(keys or ()):
                raise
            raise DuplicateKey(str(e.orig)) from None

    def jobs_by_key(self, user: str, keys: Sequence[str]) -> dict[str, Job]:
        """The jobs `user` submitted under these idempotency keys (key -> job)."""
        with self.tx() as s:
            rows = s.scalars(select(JobRow).where(JobRow.user == user, JobRow.idempotency_key.in_(list(keys))))
            return {r.idempotency_key: job_from_row(r) for r in rows}

    def _add_jobs(self, jobs: Sequence[Job], now: float, audit_user: str, keys: Sequence[str | None],
                  group: dict | None = None) -> None:
        """`group`: a job group's row (store/groups.py) written with its jobs, its id set in it."""
        try:
            self._insert_jobs(jobs, now, audit_user, keys, group)
        finally:  # after the commit (or its failure: ids given by a rolled-back flush read as gone)
            self.jobs_changed(j.id for j in jobs if j.id)

    def _insert_jobs(self, jobs: Sequence[Job], now: float, audit_user: str, keys: Sequence[str | None],
                     group: dict | None) -> None:
        with self.tx() as s:
            rows = [job_to_row(j) for j in jobs]
            for row, key in zip(rows, keys):
                row.idempotency_key = key
            if group is not None:
                groups.insert_group(s, group, jobs, rows)
            s.add_all(rows)
            s.flush()
            for job, row in zip(jobs, rows):
                job.id = row.id
            groups.insert_dependencies(s, jobs)
            if group is not None:
                groups.finish_group(s, group, jobs)
            for job, row in zip(jobs, rows):
                job.id = row.id
                s.add(EventRow(kind="job", key=str(row.id), at=now, old="", new=job.state.value,
                               reason="submitted"))
                s.add(AuditRow(at=now, user=audit_user, action="submit", target=f"job/{row.id}",
                               detail={"tenant": job.tenant, "gpus": job.spec.total_gpus}))

    def get_job(self, job_id: int) -> Job:
        with self.tx() as s:
            row = s.get(JobRow, job_id)
            if row is None:
                raise NotFound("job", job_id)
            return job_from_row(row)

    def list_jobs(self, states: Sequence[str] | None = None, tenant: str | None = None,
                  limit: int = 1000, ids: Sequence[int] | None = None, after: int | None = None) -> list[Job]:
        """Newest first; `after`: the page after the job with that id (keyset: ids below it).
        Several states are read as one index-ordered query each (an IN list would sort the
        matches), merged here."""
        def query(state: str | None):
            q = select(JobRow)
            if state is not None:
                q = q.where(JobRow.state == state)
            if tenant:
                q = q.where(JobRow.tenant == tenant)
            if ids is not None:
                q = q.where(JobRow.id.in_(list(ids)))
            if after is not None:
                q = q.where(JobRow.id < after)
            return q.order_by(JobRow.id.desc()).limit(limit)

        with self.tx() as s:
            rows = [r for st in (list(dict.fromkeys(states)) if states else [None]) for r in s.scalars(query(st))]
            rows.sort(key=lambda r: r.id, reverse=True)
            return [job_from_row(r) for r in rows[:limit]]

    def running_allocations(self) -> list[tuple[int, str, list[dict]]]:
        """(job id, tenant, allocation) of every RUNNING job: three columns, no specs or rows."""
        q = select(JobRow.id, JobRow.tenant, JobRow.allocation).where(JobRow.state == JobState.RUNNING.value)
        with self.tx() as s:
            return [(job_id, tenant, list(alloc or ())) for job_id, tenant, alloc in s.execute(q)]

    def active_jobs(self) -> list[Job]:
        """PENDING and RUNNING jobs, oldest first (copies the caller may change). The control
        loop calls this every cycle: kept in memory, only rows written since re-read."""
        return self._active.jobs()

    def jobs_changed(self, ids: Iterable[int]) -> None:
        """These jobs' rows were written: every write to `jobs` calls this after its commit."""
        self._active.changed(ids)

    def save_job(self, job: Job, expected: JobState, change: StateChange | None = None,
                 clear_action: bool = False) -> bool:
        """Compare-and-set: write `job` only if its row is still in state `expected`."""
        return self.save_jobs([(job, expected, change)], clear_action)[0]

    def save_jobs(self, items: Iterable[tuple[Job, JobState, StateChange | None]],
                  clear_action: bool = False) -> list[bool]:
        """Compare-and-set each job; in the same transaction its event, and its attempt: a change
        into RUNNING opens one (n = job.attempt), a change out of RUNNING closes the open one, a
        RUNNING job saved without a change (its handle learnt) stamps the open one's handle."""
        items = list(items)
        try:
            return self._save_jobs(items, clear_action)
        finally:
            self.jobs_changed(job.id for job, _, _ in items)

    def _save_jobs(self, items: list[tuple[Job, JobState, StateChange | None]], clear_action: bool) -> list[bool]:
        out: list[bool] = []
        stmt = _SAVE_CLEARING if clear_action else _SAVE
        with self.tx() as s:
            conn = s.connection()
            saved = Attempts(lambda: self.node_facts(conn))
            for job, expected, change in items:
                values = job_values(job)
                params = {f"b_{k}": v for k, v in values.items()}
                params.update(b_id=job.id, b_expected=expected.value)
                ok = conn.execute(stmt, params).rowcount == 1  # one statement, compiled once
                if ok:
                    saved.note(job, change, values["allocation"])
                out.append(ok)
            saved.write(conn)
        return out

    def set_action(self, job_id: int, action: str | None, reason: str = "",
                   only_state: JobState | None = None) -> bool:
        """Record a decision to act on a job (cancel/preempt/requeue) before acting on it."""
        try:
            with self.tx() as s:
                q = update(JobRow).where(JobRow.id == job_id)
                if only_state is not None:
                    q = q.where(JobRow.state == only_state.value)
                return s.execute(q.values(pending_action=action, action_reason=reason)).rowcount == 1
        finally:
            self.jobs_changed((job_id,))

    def events(self, kind: str, key: str) -> list[StateChange]:
        with self.tx() as s:
            rows = s.scalars(select(EventRow).where(EventRow.kind == kind, EventRow.key == key)
                             .order_by(EventRow.id))
            return [StateChange(r.kind, r.key, r.old, r.new, r.reason, r.at, r.attempt) for r in rows]

    def attempts(self, job_id: int) -> list[Attempt]:
        """The runs of a job, first to last (a job that never ran has none)."""
        with self.tx() as s:
            rows = s.scalars(select(AttemptRow).where(AttemptRow.job_id == job_id).order_by(AttemptRow.n))
            return [attempt_from_row(r) for r in rows]

    def add_events(self, changes: Iterable[StateChange]) -> None:
        with self.tx() as s:
            s.add_all(_event_row(c) for c in changes)

    # ---- nodes ------------------------------------------------------------------------------
    def node_facts(self, conn: Connection) -> dict[str, tuple[str, dict[int, str], str]]:
        """node -> (kind, {gpu index: model}, GPU SKU), what usage rows record (read on `conn`, the
        caller's transaction); cached until a node write."""
        facts = self._node_facts
        if facts is None:
            gen = self._node_gen
            q = select(NodeRow.name, NodeRow.kind, NodeRow.gpus, NodeRow.labels)
            facts = {name: (kind, {g["index"]: g["model"] for g in gpus or ()}, str((labels or {}).get("sku") or ""))
                     for name, kind, gpus, labels in conn.execute(q)}
            with self._node_lock:
                if gen == self._node_gen:
                    self._node_facts = facts
        return facts

    def nodes_changed(self) -> None:
        """Forget the cached node table; every write to `nodes` calls this after its commit."""
        with self._node_lock:
            self._node_gen += 1
            self._node_cache = self._node_facts = None

    def add_busy(self, items: Sequence[Mapping[str, Any]]) -> None:
        """Sampled busy GPU-seconds onto running attempts' usage rows (store/usage.add_busy)."""
        if items:
            with self.engine.begin() as conn:
                add_busy(conn, items)

    def nodes(self) -> list[Node]:
        """All nodes by name: fresh copies (callers may change them) of the cached table."""
        return [replace(n, labels=dict(n.labels)) for n in self.nodes_view()]

    def nodes_view(self) -> tuple[Node, ...]:
        """All nodes by name, the cached objects themselves: to read, never to change."""
        cached = self._node_cache
        if cached is None:
            gen = self._node_gen
            with self.tx() as s:
                cached = tuple(node_from_row(r) for r in s.scalars(select(NodeRow).order_by(NodeRow.name)))
            with self._node_lock:
                if gen == self._node_gen:
                    self._node_cache = cached
        return cached

    def get_node(self, name: str) -> Node:
        with self.tx() as s:
            row = s.get(NodeRow, name)
            if row is None:
                raise NotFound("node", name)
            return node_from_row(row)

    def sync_nodes(self, nodes: Sequence[Node], keep_state: bool = True, prune: bool = True) -> None:
        """Make the node table match an inventory. Admin drain state survives unless told."""
        try:
            with self.tx() as s:
                existing = {r.name: r for r in s.scalars(select(NodeRow))}
                for n in nodes:
                    row = existing.pop(n.name, None)
                    if row is not None and keep_state:
                        n.state, n.reason = type(n.state)(row.state), row.reason
                    s.add(node_to_row(n, row))
                if prune:
                    for row in existing.values():
                        s.delete(row)
        finally:
            self.nodes_changed()

    def save_node(self, node: Node, change: StateChange | None = None) -> None:
        try:
            with self.tx() as s:
                s.merge(node_to_row(node))
                if change is not None:
                    s.add(_event_row(change))
        finally:
            self.nodes_changed()

    # ---- tenants, users, tokens -------------------------------------------------------------
    def tenants(self) -> list[Tenant]:
        with self.tx() as s:
            return [tenant_from_row(r) for r in s.scalars(select(TenantRow).order_by(TenantRow.name))]

    def get_tenant(self, name: str) -> Tenant:
        with self.tx() as s:
            row = s.get(TenantRow, name)
            if row is None:
                raise NotFound("tenant", name)
            return tenant_from_row(row)

    def put_tenant(self, t: Tenant, now: float = 0.0) -> None:
        with self.tx() as s:
            row = s.get(TenantRow, t.name) or TenantRow(name=t.name, created_at=now)
            row.quota, row.limit, row.weight, row.can_borrow = dict(t.quota), t.limit, t.weight, t.can_borrow
            s.add(row)

    def get_user(self, name: str) -> User | None:
        with self.tx() as s:
            row = s.get(UserRow, name)
            return User(row.name, row.tenant, row.admin) if row else None

    # users and tokens: see store/tokens.py (TokenRepo)

    # ---- bookings ---------------------------------------------------------------------------
    def add_booking(self, b: Booking) -> Booking:
        with self.tx() as s:
            row = BookingRow(name=b.name, tenant=b.tenant, user=b.user, nodes=list(b.nodes),
                             start=b.start, end=b.end, exclusive=b.exclusive, gpus=b.gpus,
                             gpu_model=b.gpu_model, approval=b.approval)
            s.add(row)
            s.flush()
            b.id = row.id
        return b

    def bookings(self, now: float | None = None, approval: Sequence[str] | None = ("approved",)) -> list[Booking]:
        """Bookings in force: not cancelled, approved (and, given `now`, not yet over).
        `approval=None`: whatever their approval (requested and rejected ones too)."""
        q = select(BookingRow).where(BookingRow.cancelled.is_(False))
        if approval is not None:
            q = q.where(BookingRow.approval.in_(list(approval)))
        if now is not None:
            q = q.where(BookingRow.end > now)
        with self.tx() as s:
            return [booking_from_row(r) for r in s.scalars(q.order_by(BookingRow.start))]

    def get_booking(self, booking_id: int) -> Booking:
        with self.tx() as s:
            row = s.get(BookingRow, booking_id)
            if row is None or row.cancelled:
                raise NotFound("booking", booking_id)
            return booking_from_row(row)

    def set_booking_approval(self, booking_id: int, approval: str, expected: str = "requested") -> bool:
        """Compare-and-set the approval of a booking (False: it was not `expected` any more)."""
        with self.tx() as s:
            return s.execute(update(BookingRow).where(BookingRow.id == booking_id,
                                                      BookingRow.approval == expected,
                                                      BookingRow.cancelled.is_(False))
                             .values(approval=approval)).rowcount == 1

    def cancel_booking(self, booking_id: int) -> None:
        with self.tx() as s:
            row = s.get(BookingRow, booking_id)
            if row is None:
                raise NotFound("booking", booking_id)
            row.cancelled = True

    # ---- audit and meta ---------------------------------------------------------------------
    def audit(self, at: float, user: str, action: str, target: str, detail: dict | None = None) -> None:
        with self.tx() as s:
            s.add(AuditRow(at=at, user=user, action=action, target=target, detail=detail or {}))

    def audit_log(self, limit: int = 100, user: str | None = None, action: str | None = None) -> list[dict]:
        q = select(AuditRow)
        if user:
            q = q.where(AuditRow.user == user)
        if action:
            q = q.where(AuditRow.action == action)
        with self.tx() as s:
            rows = s.scalars(q.order_by(AuditRow.id.desc()).limit(limit))
            return [{"at": r.at, "user": r.user, "action": r.action, "target": r.target,
                     "detail": r.detail} for r in rows]

    def get_meta(self, key: str, default: dict | None = None) -> dict:
        with self.tx() as s:
            row = s.get(MetaRow, key)
            return dict(row.value) if row else (default or {})

    def put_meta(self, key: str, value: dict) -> None:
        with self.tx() as s:
            s.merge(MetaRow(key=key, value=value))


_MUTABLE = ("state", "reason", "submitted_at", "started_at", "ended_at", "exit_code", "allocation",
            "handle", "restarts", "attained_gpu_s", "failures")
_JOBS = JobRow.__table__
_SAVE = (update(_JOBS).where(_JOBS.c.id == bindparam("b_id"), _JOBS.c.state == bindparam("b_expected"))
         .values({c: bindparam(f"b_{c}") for c in _MUTABLE}))
_SAVE_CLEARING = _SAVE.values(pending_action=None)


def _event_row(c: StateChange, key: str | None = None) -> EventRow:
    return EventRow(kind=c.kind, key=key or c.key, at=c.at, old=c.old, new=c.new, reason=c.reason,
                    attempt=c.attempt)

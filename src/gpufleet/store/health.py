"""Health results, remediations and recurring schedules: rows and their repository.

Tables (migration 0002_health):
  health_results (id, node, run_id, check_name, at, status, message, facts JSON, duration_s)
  remediations   (id, node, reason, requeue, phase, round, max_rounds, started_at, updated_at,
                  not_before, ended_at, outcome, ticket JSON, steps JSON)  -- one row per incident,
                  its rounds' steps as a JSON list {round, phase, ok, message, at, duration_s, facts}
  schedules      (name, cron, tz, command JSON, job JSON, enabled, created_at, created_by,
                  last_slot, last_outcome, last_run_at, last_duration_s)
"""

from __future__ import annotations

from typing import Iterable

from sqlalchemy import JSON, Boolean, Float, Index, Integer, String, Text, delete, select, update
from sqlalchemy.orm import Mapped, mapped_column

from gpufleet.domain import Conflict, NotFound
from gpufleet.health.remediation import Phase, Remediation, StepRecord
from gpufleet.health.tickets import TicketRef
from gpufleet.health.types import CheckRecord, NodeHealth, Status
from gpufleet.store.repo import Store
from gpufleet.store.rows import Base

RUNNING = "running"  # = gpufleet.control.recurring.RUNNING (the store does not import control)
SCHEDULE_FIELDS = ("name", "cron", "tz", "command", "job", "enabled", "created_at", "created_by",
                   "last_slot", "last_outcome", "last_run_at", "last_duration_s")


class HealthResultRow(Base):
    __tablename__ = "health_results"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node: Mapped[str] = mapped_column(String(128))
    run_id: Mapped[str] = mapped_column(String(32), default="")
    check_name: Mapped[str] = mapped_column(String(64))
    at: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(8))
    message: Mapped[str] = mapped_column(Text, default="")
    facts: Mapped[dict] = mapped_column(JSON, default=dict)
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    __table_args__ = (Index("ix_health_results_node_at", "node", "at"),
                      Index("ix_health_results_status_at", "status", "at"))


class RemediationRow(Base):
    __tablename__ = "remediations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node: Mapped[str] = mapped_column(String(128), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    requeue: Mapped[bool] = mapped_column(Boolean, default=False)
    phase: Mapped[str] = mapped_column(String(16))
    round: Mapped[int] = mapped_column(Integer, default=1)
    max_rounds: Mapped[int] = mapped_column(Integer, default=3)
    started_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float, default=0.0)
    not_before: Mapped[float] = mapped_column(Float, default=0.0)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    ticket: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    steps: Mapped[list] = mapped_column(JSON, default=list)


class ScheduleRow(Base):
    __tablename__ = "schedules"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    cron: Mapped[str] = mapped_column(String(128))
    tz: Mapped[str] = mapped_column(String(64), default="UTC")
    command: Mapped[list] = mapped_column(JSON, default=list)
    job: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[float] = mapped_column(Float, default=0.0)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    last_slot: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_outcome: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_run_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)


def _record(r: HealthResultRow) -> CheckRecord:
    return CheckRecord(r.node, r.check_name, r.at, Status(r.status), r.message, r.facts or {}, r.duration_s, r.run_id)


def _remediation(r: RemediationRow) -> Remediation:
    t = r.ticket
    return Remediation(
        node=r.node, reason=r.reason, requeue=r.requeue, max_rounds=r.max_rounds, started_at=r.started_at,
        phase=Phase(r.phase), round=r.round, updated_at=r.updated_at, not_before=r.not_before,
        ended_at=r.ended_at, ticket=TicketRef(t["system"], t["id"], t.get("url", "")) if t else None,
        steps=[StepRecord(s["round"], Phase(s["phase"]), s["ok"], s["message"], s["at"], s.get("duration_s", 0.0),
                          s.get("facts") or {}) for s in r.steps or []],
        id=r.id,
    )


def _schedule(r: ScheduleRow) -> dict:
    """Plain values (services/schedules.py makes them `control.recurring.Schedule`s)."""
    return {k: getattr(r, k) for k in SCHEDULE_FIELDS}


class HealthRepo:
    """Short transactions over the lead's Store engine (Store.tx)."""

    def __init__(self, store: Store):
        self.store = store

    # ---- health results ---------------------------------------------------------------------
    def add_results(self, health: NodeHealth) -> None:
        with self.store.tx() as s:
            s.add_all(HealthResultRow(node=r.node, run_id=r.run_id, check_name=r.check, at=r.at,
                                      status=r.status.value, message=r.message, facts=dict(r.facts),
                                      duration_s=r.duration_s) for r in health.records)

    def results(self, node: str | None = None, since: float | None = None, status: str | None = None,
                limit: int = 1000) -> list[CheckRecord]:
        """Newest first."""
        q = select(HealthResultRow)
        if node is not None:
            q = q.where(HealthResultRow.node == node)
        if since is not None:
            q = q.where(HealthResultRow.at >= since)
        if status is not None:
            q = q.where(HealthResultRow.status == status)
        q = q.order_by(HealthResultRow.at.desc(), HealthResultRow.id.desc()).limit(limit)
        with self.store.tx() as s:
            return [_record(r) for r in s.scalars(q)]

    def latest(self, node: str) -> NodeHealth | None:
        """The newest run of the node, reassembled."""
        recent = self.results(node, limit=200)
        if not recent:
            return None
        run_id = recent[0].run_id
        records = sorted((r for r in recent if r.run_id == run_id), key=lambda r: r.at)
        return NodeHealth(node, records[0].at, run_id, tuple(records))

    def prune_results(self, before: float) -> int:
        with self.store.tx() as s:
            return s.execute(delete(HealthResultRow).where(HealthResultRow.at < before)).rowcount

    # ---- remediations -----------------------------------------------------------------------
    def save_remediation(self, rem: Remediation) -> None:
        values = dict(node=rem.node, reason=rem.reason, requeue=rem.requeue, phase=rem.phase.value,
                      round=rem.round, max_rounds=rem.max_rounds, started_at=rem.started_at,
                      updated_at=rem.updated_at, not_before=rem.not_before, ended_at=rem.ended_at,
                      outcome=rem.outcome, steps=[st.to_dict() for st in rem.steps],
                      ticket=None if rem.ticket is None else
                      {"system": rem.ticket.system, "id": rem.ticket.id, "url": rem.ticket.url})
        with self.store.tx() as s:
            if rem.id is None:
                row = RemediationRow(**values)
                s.add(row)
                s.flush()
                rem.id = row.id
            else:
                s.execute(update(RemediationRow).where(RemediationRow.id == rem.id).values(**values))

    def remediations(self, node: str | None = None, open_only: bool = False, limit: int = 100) -> list[Remediation]:
        q = select(RemediationRow)
        if node is not None:
            q = q.where(RemediationRow.node == node)
        if open_only:
            q = q.where(RemediationRow.outcome.is_(None))
        with self.store.tx() as s:
            return [_remediation(r) for r in s.scalars(q.order_by(RemediationRow.id.desc()).limit(limit))]

    def open_remediation(self, node: str) -> Remediation | None:
        found = self.remediations(node, open_only=True, limit=1)
        return found[0] if found else None

    # ---- schedules --------------------------------------------------------------------------
    def add_schedule(self, name: str, cron: str, tz: str, command: list[str], job: dict | None,
                     created_at: float, created_by: str = "", enabled: bool = True) -> None:
        with self.store.tx() as s:
            if s.get(ScheduleRow, name) is not None:
                raise Conflict(f"schedule {name} exists (remove it first)")
            s.add(ScheduleRow(name=name, cron=cron, tz=tz, command=list(command), job=job, enabled=enabled,
                              created_at=created_at, created_by=created_by))

    def schedules(self) -> list[dict]:
        with self.store.tx() as s:
            return [_schedule(r) for r in s.scalars(select(ScheduleRow).order_by(ScheduleRow.name))]

    def get_schedule(self, name: str) -> dict:
        with self.store.tx() as s:
            row = s.get(ScheduleRow, name)
            if row is None:
                raise NotFound("schedule", name)
            return _schedule(row)

    def remove_schedule(self, name: str) -> None:
        with self.store.tx() as s:
            if s.execute(delete(ScheduleRow).where(ScheduleRow.name == name)).rowcount != 1:
                raise NotFound("schedule", name)

    def claim_slot(self, name: str, slot: float, expected: float | None, now: float) -> bool:
        """Compare-and-set of last_slot: True for exactly one caller per slot."""
        cond = ScheduleRow.last_slot.is_(None) if expected is None else ScheduleRow.last_slot == expected
        with self.store.tx() as s:
            q = (update(ScheduleRow).where(ScheduleRow.name == name, cond)
                 .values(last_slot=slot, last_outcome=RUNNING, last_run_at=now, last_duration_s=None))
            return s.execute(q).rowcount == 1

    def record_outcome(self, name: str, slot: float, outcome: str, duration_s: float) -> None:
        with self.store.tx() as s:
            s.execute(update(ScheduleRow).where(ScheduleRow.name == name, ScheduleRow.last_slot == slot)
                      .values(last_outcome=outcome, last_duration_s=duration_s))


def group_runs(records: Iterable[CheckRecord]) -> list[NodeHealth]:
    """Records (any order) back into runs, newest first."""
    runs: dict[tuple[str, str], list[CheckRecord]] = {}
    for r in records:
        runs.setdefault((r.node, r.run_id), []).append(r)
    out = [NodeHealth(node, min(x.at for x in recs), run_id, tuple(sorted(recs, key=lambda x: x.at)))
           for (node, run_id), recs in runs.items()]
    return sorted(out, key=lambda h: h.at, reverse=True)

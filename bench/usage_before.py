"""The report as it was before the rollups (commit 7ccff2e^, verbatim below this note): one GROUP BY
over all of attempt_usage. bench/usage.py times it beside the current one, on the same data."""


from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from sqlalchemy import Engine, Table, and_, case, desc, func, or_, select

from gpufleet.store.rows import UsageRow

U: Table = UsageRow.__table__  # type: ignore[assignment]
GROUPS = ("tenant", "user", "gpu_model", "kind", "node")


@dataclass(frozen=True)
class UsageGroup:
    key: dict[str, str]  # the --by columns -> their values
    gpu_s: float  # GPU-seconds allocated in the period
    attempts: int  # attempts that held GPUs in the period
    started: int  # of which started in the period
    wait_s: float  # queue time before the attempts that started in the period
    busy_gpu_s: float | None  # GPU-seconds sampled busy (None: none of these attempts was sampled)
    sampled_gpu_s: float  # the allocated GPU-seconds that were sampled (idle = this - busy)


@dataclass(frozen=True)
class IdleHolder:
    job_id: int
    user: str
    tenant: str
    gpu_s: float
    busy_gpu_s: float

    @property
    def idle_gpu_s(self) -> float:
        return max(0.0, self.gpu_s - self.busy_gpu_s)


@dataclass(frozen=True)
class UsageReport:
    start: float
    end: float
    by: tuple[str, ...]
    groups: list[UsageGroup]
    total: UsageGroup
    idle: list[IdleHolder] = field(default_factory=list)  # top idle holders (sampled attempts only)


def _measures(start: float, end: float, now: float, dialect: str = "sqlite"):
    """(where, columns) for the rows overlapping [start, end) as seen at `now`. Scalar min/max:
    SQLite's two-argument MIN/MAX, PostgreSQL's LEAST/GREATEST (nested CASEs cost 3x in SQLite)."""
    least, greatest = (func.min, func.max) if dialect == "sqlite" else (func.least, func.greatest)
    ends = least(func.coalesce(U.c.ended_at, now), now)
    secs = greatest(least(ends, end) - greatest(U.c.started_at, start), 0.0)
    full = ends - U.c.started_at
    busy = U.c.busy_gpu_s * secs / func.nullif(full, 0.0)
    sampled = case((U.c.busy_gpu_s.is_not(None), U.c.gpus * secs), else_=0.0)
    first = U.c.part == 0
    began = and_(first, U.c.started_at >= start)
    # SQLite: a scan beats the started_at index for long periods (+0 keeps the planner off it)
    started = U.c.started_at + 0 if dialect == "sqlite" else U.c.started_at
    where = and_(started < end, started < now, or_(U.c.ended_at.is_(None), U.c.ended_at > start))
    cols = [func.sum(U.c.gpus * secs).label("gpu_s"),
            func.sum(case((first, 1), else_=0)).label("attempts"),
            func.sum(case((began, 1), else_=0)).label("started"),
            func.sum(case((began, U.c.wait_s), else_=0.0)).label("wait_s"),
            func.sum(busy).label("busy_gpu_s"),
            func.sum(sampled).label("sampled_gpu_s")]
    return where, cols


def usage_report(engine: Engine, start: float, end: float, now: float, by: Sequence[str] = ("tenant",),
                 tenant: str | None = None, top_idle: int = 10) -> UsageReport:
    """The usage in [start, end) grouped by `by` (columns of GROUPS), only `tenant`'s if given."""
    by = tuple(by)
    dialect = engine.dialect.name
    where, cols = _measures(start, end, now, dialect)
    if tenant is not None:
        where = and_(where, U.c.tenant == tenant)
    keys = [U.c[k] for k in by]
    grouped = select(*keys, *cols).where(where).group_by(*keys).order_by(*keys)
    with engine.connect() as conn:
        rows = conn.execute(grouped).all()  # the groups partition the rows: the total is their sum
        groups = [_group(dict(zip(by, r[:len(by)])), r[len(by):]) for r in rows]
        total = _sum(groups)
        idle = _idle(conn, start, end, now, dialect, where, top_idle) if total.sampled_gpu_s else []
    groups = [g for g in groups if g.gpu_s > 0 or g.attempts]
    return UsageReport(start, end, by, groups, total, idle)


def _sum(groups: list[UsageGroup]) -> UsageGroup:
    busy = [g.busy_gpu_s for g in groups if g.busy_gpu_s is not None]
    return UsageGroup({}, sum(g.gpu_s for g in groups), sum(g.attempts for g in groups),
                      sum(g.started for g in groups), sum(g.wait_s for g in groups),
                      sum(busy) if busy else None, sum(g.sampled_gpu_s for g in groups))


def _group(key: dict, r) -> UsageGroup:
    return UsageGroup(key={k: str(v) for k, v in key.items()}, gpu_s=float(r[0] or 0.0),
                      attempts=int(r[1] or 0), started=int(r[2] or 0), wait_s=float(r[3] or 0.0),
                      busy_gpu_s=None if r[4] is None else float(r[4]), sampled_gpu_s=float(r[5] or 0.0))


def _idle(conn, start: float, end: float, now: float, dialect: str, where, limit: int) -> list[IdleHolder]:
    """The jobs with the most allocated-but-idle GPU-seconds in the period (sampled ones only)."""
    _, cols = _measures(start, end, now, dialect)
    sampled, busy = cols[5].element, cols[4].element  # the sums, without their labels
    q = (select(U.c.job_id, U.c.user, U.c.tenant, sampled.label("s"), busy.label("b"))
         .where(where, U.c.busy_gpu_s.is_not(None))
         .group_by(U.c.job_id, U.c.user, U.c.tenant)
         .order_by(desc(sampled - func.coalesce(busy, 0.0)), U.c.job_id).limit(limit))
    return [IdleHolder(r.job_id, r.user, r.tenant, float(r.s or 0.0), float(r.b or 0.0))
            for r in conn.execute(q)]

"""GPU-seconds per tenant / user / GPU model / SKU / node kind / node / job label over a period.

Each attempt_usage row is `gpus` GPUs held from started_at to ended_at (None: still running, so
until `now`). Inside a period [start, end) a row counts gpus * (min(its end, end) - max(its start,
start)): running attempts and attempts crossing either boundary are cut there. Busy GPU-seconds
(sampled utilisation, where a node could be sampled) are pro-rated the same way.

How a report is read, so that a year over a million attempts stays a few hundred thousand rows:
  1. whole UTC days inside the period: the rollups of closed attempts (usage_blocks for whole
     32-day blocks and usage_daily for the other days, or usage_daily_node with `node`), cut at
     the day boundaries when the attempt closed
  2. the partial days at either end: the closed rows overlapping them (the started_at index for
     rows that started at most a day before, the partial index of multi-day rows for the rest)
  3. running attempts: their rows (the partial index of open rows), cut at the period and now
Node with tenant, user or a label (or node in one tenant's view) reads whole 32-day blocks from
usage_blocks_node and the days around them from the closed rows, as in 2.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from sqlalchemy import JSON, Engine, Table, and_, case, cast, desc, func, literal, literal_column, select

from gpufleet.store.rows import (
    USAGE_BLOCK_DAYS, USAGE_DAY_S, UsageBlockRow, UsageDayRow, UsageJobRow, UsageNodeBlockRow, UsageNodeDayRow,
    UsageRow,
)

U: Table = UsageRow.__table__  # type: ignore[assignment]
DAILY: Table = UsageDayRow.__table__  # type: ignore[assignment]
BLOCKS: Table = UsageBlockRow.__table__  # type: ignore[assignment]
NODE_BLOCKS: Table = UsageNodeBlockRow.__table__  # type: ignore[assignment]
NODE_DAILY: Table = UsageNodeDayRow.__table__  # type: ignore[assignment]
JOBS: Table = UsageJobRow.__table__  # type: ignore[assignment]
GROUPS = ("tenant", "user", "gpu_model", "sku", "kind", "node")  # and label:KEY
DAY = float(USAGE_DAY_S)
NO_LABEL = "-"
LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-/]{0,62}")  # what a job's label key may be
_LONG = literal_column("attempt_usage.ended_at") - literal_column("attempt_usage.started_at") > literal_column(
    str(USAGE_DAY_S))  # the very expression of ix_attempt_usage_long's WHERE (SQLite matches it textually)


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


# measures, in this order, from every source: gpu_s, busy, sampled, started, wait, crossing the start
_N = 6


def _key_expr(table: Table, key: str, dialect: str):
    if key.startswith("label:"):
        name = key.split(":", 1)[1]
        if not LABEL_KEY.fullmatch(name):
            raise ValueError(f"bad label key {name!r}")
        # inlined, not bound: PostgreSQL matches a GROUP BY expression to the SELECT's only then
        if dialect == "postgresql":
            return func.json_extract_path_text(cast(table.c.labels, JSON), literal_column(f"'{name}'"))
        return func.json_extract(table.c.labels, literal_column(f"'$.\"{name}\"'"))
    return table.c[key]


def _pair(dialect: str):
    """Scalar min/max: SQLite's two-argument MIN/MAX, PostgreSQL's LEAST/GREATEST."""
    return (func.min, func.max) if dialect == "sqlite" else (func.least, func.greatest)


def _row_measures(a: float, b: float, ends, dialect: str, crossing: bool, running: bool = False) -> list:
    """The sums over attempt_usage rows cut to [a, b), rows ending at `ends`. A closed row's busy
    GPU-seconds cover its whole length; a running one's the time its readings covered (sampled_s)."""
    least, greatest = _pair(dialect)
    secs = greatest(least(ends, b) - greatest(U.c.started_at, a), 0.0)
    first = U.c.part == 0
    began = and_(first, U.c.started_at >= a)
    length = U.c.sampled_s if running else ends - U.c.started_at
    return [func.sum(U.c.gpus * secs),
            func.sum(U.c.busy_gpu_s * secs / func.nullif(length, 0.0)),
            func.sum(case((U.c.busy_gpu_s.is_not(None), U.c.gpus * secs), else_=0.0)),
            func.sum(case((began, 1), else_=0)),
            func.sum(case((began, U.c.wait_s), else_=0.0)),
            func.sum(case((and_(first, U.c.started_at < a), 1), else_=0)) if crossing else literal_column("0")]


class _Reader:
    def __init__(self, conn, by: tuple[str, ...], tenant: str | None, now: float):
        self.conn, self.by, self.tenant, self.now = conn, by, tenant, now
        self.dialect = conn.dialect.name
        self.acc: dict[tuple, list[float]] = {}

    def _add(self, q, table: Table) -> None:
        keys = [_key_expr(table, k, self.dialect) for k in self.by]
        if self.tenant is not None:
            q = q.where(table.c.tenant == self.tenant)
        for r in self.conn.execute(q.add_columns(*keys).group_by(*keys) if keys else q):
            vals, key = r[:_N], tuple(NO_LABEL if v is None else str(v) for v in r[_N:])
            acc = self.acc.setdefault(key, [0.0] * _N)
            for i, v in enumerate(vals):
                acc[i] += float(v or 0.0)

    def closed(self, a: float, b: float, crossing: bool = False) -> None:
        """Closed rows overlapping [a, b), cut to it: those that started at most a day before a
        (started_at index), then the multi-day ones that started earlier (ix_attempt_usage_long)."""
        cols = _row_measures(a, b, U.c.ended_at, self.dialect, crossing)
        # SQLite: over more than ~3 months a table scan beats the index's lookups (+0 keeps it off)
        started = U.c.started_at + 0 if self.dialect == "sqlite" and b - a > 90 * DAY else U.c.started_at
        recent = and_(started >= a - DAY, started < b, U.c.ended_at > a)
        self._add(select(*cols).where(recent), U)
        older = and_(_LONG, U.c.started_at < a - DAY, U.c.ended_at > a)
        self._add(select(*cols).where(older), U)

    def running(self, a: float, b: float) -> None:
        cols = _row_measures(a, b, literal(float(self.now)), self.dialect, True, running=True)
        self._add(select(*cols).where(U.c.ended_at.is_(None), U.c.started_at < b), U)

    def days(self, table: Table, d1: int, d2: int) -> None:
        """Days [d1, d2): whole 32-day blocks from usage_blocks (with usage_daily), the rest by day."""
        b1, b2 = -(-d1 // USAGE_BLOCK_DAYS), d2 // USAGE_BLOCK_DAYS
        spans = [(d1, d2)]
        if table is DAILY and b1 < b2:
            self.sum(BLOCKS, BLOCKS.c.block, b1, b2)
            spans = [(d1, b1 * USAGE_BLOCK_DAYS), (b2 * USAGE_BLOCK_DAYS, d2)]
        for lo, hi in spans:
            if lo < hi:
                self.sum(table, table.c.day, lo, hi)

    def sum(self, table: Table, column, lo: int, hi: int) -> None:
        cols = [func.sum(table.c[m]) for m in ("gpu_s", "busy_gpu_s", "sampled_gpu_s", "started", "wait_s")]
        self._add(select(*cols, literal_column("0")).where(column >= lo, column < hi), table)


def _rollup_for(by: tuple[str, ...], tenant: str | None) -> Table:
    if "node" not in by:
        return DAILY
    if tenant is None and all(k in ("node", "gpu_model", "sku", "kind") for k in by):
        return NODE_DAILY
    return NODE_BLOCKS  # node with tenant/user/label: whole 32-day blocks, the rest from the rows


def usage_report(engine: Engine, start: float, end: float, now: float, by: Sequence[str] = ("tenant",),
                 tenant: str | None = None, top_idle: int = 10) -> UsageReport:
    """The usage in [start, end) grouped by `by` (GROUPS columns, label:KEY), only `tenant`'s if given."""
    by = tuple(by)
    stop = min(end, now)  # nothing is held after now
    with engine.connect() as conn:
        r = _Reader(conn, by, tenant, now)
        if stop > start:
            table = _rollup_for(by, tenant)
            unit = USAGE_BLOCK_DAYS * DAY if table is NODE_BLOCKS else DAY
            d1, d2 = math.ceil(start / unit), math.floor(stop / unit)
            if table is NODE_BLOCKS and d1 < d2:
                r.closed(start, d1 * unit, crossing=True)
                r.sum(NODE_BLOCKS, NODE_BLOCKS.c.block, d1, d2)
                r.closed(d2 * unit, stop)
            elif d1 < d2:
                r.closed(start, d1 * DAY, crossing=True)  # (an empty head still finds the crossers)
                r.days(table, d1, d2)
                r.closed(d2 * DAY, stop)
            else:
                r.closed(start, stop, crossing=True)
            r.running(start, stop)
        groups = sorted((_group(dict(zip(by, k)), v) for k, v in r.acc.items()), key=lambda g: tuple(g.key.values()))
        total = _sum(groups)
        idle = _idle(conn, start, stop, now, tenant, top_idle) if total.sampled_gpu_s and stop > start else []
    groups = [g for g in groups if g.gpu_s > 0 or g.attempts]
    return UsageReport(start, end, by, groups, total, idle)


def _group(key: dict, v: list[float]) -> UsageGroup:
    sampled = v[2]
    return UsageGroup(key=key, gpu_s=v[0], attempts=int(round(v[3] + v[5])), started=int(round(v[3])),
                      wait_s=v[4], busy_gpu_s=v[1] if sampled > 0 else None, sampled_gpu_s=sampled)


def _sum(groups: list[UsageGroup]) -> UsageGroup:
    busy = [g.busy_gpu_s for g in groups if g.busy_gpu_s is not None]
    return UsageGroup({}, sum(g.gpu_s for g in groups), sum(g.attempts for g in groups),
                      sum(g.started for g in groups), sum(g.wait_s for g in groups),
                      sum(busy) if busy else None, sum(g.sampled_gpu_s for g in groups))


# ---- top idle holders -------------------------------------------------------------------------
def _idle(conn, start: float, stop: float, now: float, tenant: str | None, limit: int) -> list[IdleHolder]:
    """The jobs with the most allocated-but-idle GPU-seconds in [start, stop), exactly: candidates
    come in the order of their idle GPU-seconds over all their closed attempts (usage_jobs, an upper
    bound of their idle time in any period), running sampled jobs first; each batch is measured
    exactly; the search stops once `limit` jobs are at least as idle as the next bound."""
    best: dict[int, IdleHolder] = {}
    running = select(U.c.job_id).where(U.c.ended_at.is_(None), U.c.busy_gpu_s.is_not(None), U.c.started_at < stop)
    if tenant is not None:
        running = running.where(U.c.tenant == tenant)
    _measure(conn, [j for (j,) in conn.execute(running.distinct())], start, stop, now, best)
    q = (select(JOBS.c.job_id, JOBS.c.idle_gpu_s)
         .where(JOBS.c.idle_gpu_s > 0, JOBS.c.last_at > start, JOBS.c.first_at < stop)
         .order_by(desc(JOBS.c.idle_gpu_s), JOBS.c.job_id))
    if tenant is not None:
        q = q.where(JOBS.c.tenant == tenant)
    offset, batch = 0, max(limit, 1) * 2
    while True:
        rows = conn.execute(q.limit(batch).offset(offset)).all()
        if not rows:
            break
        ranked = sorted((h.idle_gpu_s for h in best.values()), reverse=True)
        if len(ranked) >= limit and ranked[limit - 1] >= rows[0].idle_gpu_s:
            break  # no later candidate can beat the ones found
        _measure(conn, [r.job_id for r in rows if r.job_id not in best], start, stop, now, best)
        offset, batch = offset + len(rows), batch * 2
    top = sorted(best.values(), key=lambda h: (-h.idle_gpu_s, h.job_id))
    return [h for h in top if h.idle_gpu_s > 0][:limit]


def _measure(conn, jobs: list[int], start: float, stop: float, now: float, out: dict[int, IdleHolder]) -> None:
    """The exact sampled and busy GPU-seconds of `jobs` in [start, stop)."""
    if not jobs:
        return
    least, greatest = _pair(conn.dialect.name)
    ends = least(func.coalesce(U.c.ended_at, now), now)
    secs = greatest(least(ends, stop) - greatest(U.c.started_at, start), 0.0)
    length = case((U.c.ended_at.is_(None), U.c.sampled_s), else_=ends - U.c.started_at)
    for i in range(0, len(jobs), 500):
        q = (select(U.c.job_id, func.max(U.c.user), func.max(U.c.tenant), func.sum(U.c.gpus * secs),
                    func.sum(U.c.busy_gpu_s * secs / func.nullif(length, 0.0)))
             .where(U.c.job_id.in_(jobs[i:i + 500]), U.c.busy_gpu_s.is_not(None))
             .group_by(U.c.job_id))
        for job_id, user, tenant, sampled, busy in conn.execute(q):
            out[job_id] = IdleHolder(job_id, user, tenant, float(sampled or 0.0), float(busy or 0.0))


def describe(by: Sequence[str], tenant: str | None) -> dict[str, Any]:
    """Which source a report reads (for the benchmark's output)."""
    return {"rollup": _rollup_for(tuple(by), tenant).name}

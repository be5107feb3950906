"""The usage rows of attempts (table attempt_usage), written in the same transaction as the attempt.

An attempt holds GPUs on one or more nodes; accounting groups by GPU model and node kind, so each
attempt gets one flat row per (node, GPU model) it holds: `gpus` there, the node's kind, the job's
tenant and user, when it started and (once closed) ended, and how long it waited in the queue
before starting (counted on part 0 only), the node's GPU SKU and the job's labels. Aggregation
over these rows is plain SQL (accounting/).

When an attempt closes, its rows are also added to the rollups in the same transaction: per UTC
day and group (usage_daily; per node: usage_daily_node), cut at the day boundaries, and per job
its sampled-but-idle GPU-seconds (usage_jobs). `rollup` is the one place that cuts them (the
migration's backfill and bench/usage.py call it too).
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable, Iterable, Mapping, Sequence

from sqlalchemy import Connection, Table, bindparam, case, func, insert, select, update

from gpufleet.domain import Job
from gpufleet.store.rows import (
    USAGE_BLOCK_DAYS, USAGE_DAY_S, AttemptRow, UsageBlockRow, UsageDayRow, UsageJobRow, UsageNodeBlockRow,
    UsageNodeDayRow, UsageRow,
)

# node name -> (kind, {gpu index: model}[, sku]); what the usage rows need to know about the nodes
NodeFacts = Mapping[str, tuple]

_USAGE: Table = UsageRow.__table__  # type: ignore[assignment]
_ATTEMPTS: Table = AttemptRow.__table__  # type: ignore[assignment]
_DAILY: Table = UsageDayRow.__table__  # type: ignore[assignment]
_BLOCKS: Table = UsageBlockRow.__table__  # type: ignore[assignment]
_NODE_BLOCKS: Table = UsageNodeBlockRow.__table__  # type: ignore[assignment]
_NODE_DAILY: Table = UsageNodeDayRow.__table__  # type: ignore[assignment]
_JOBS: Table = UsageJobRow.__table__  # type: ignore[assignment]
UNKNOWN = "unknown"
DAY = float(USAGE_DAY_S)
DAY_KEY = ("tenant", "user", "gpu_model", "sku", "kind", "labels")  # usage_daily's groups
NODE_KEY = ("node", "gpu_model", "sku", "kind")  # usage_daily_node's
NODE_BLOCK_KEY = ("node", *DAY_KEY)  # usage_blocks_node's
MEASURES = ("gpu_s", "busy_gpu_s", "sampled_gpu_s", "started", "wait_s")
# what `rollup` reads of an attempt_usage row
ROW_COLUMNS = ("job_id", "part", "node", "kind", "gpu_model", "sku", "tenant", "user", "labels", "gpus",
               "started_at", "ended_at", "wait_s", "busy_gpu_s")


def labels_text(labels: Mapping[str, str] | None) -> str:
    """A job's labels as the canonical JSON the usage rows hold (sorted keys; '{}' for none)."""
    return json.dumps(dict(sorted((labels or {}).items())), separators=(",", ":"))


def usage_parts(allocation: Sequence[Mapping[str, Any]], nodes: NodeFacts) -> list[dict[str, Any]]:
    """[{node, gpus: [...]}] -> [{part, node, kind, gpu_model, gpus}], one per (node, model)."""
    out: list[dict[str, Any]] = []
    for a in allocation:
        kind, models, *more = nodes.get(a["node"], (UNKNOWN, {}))
        per: dict[str, int] = {}
        for g in a["gpus"]:
            m = models.get(g, UNKNOWN)
            per[m] = per.get(m, 0) + 1
        for model, count in sorted(per.items()):
            out.append({"part": len(out), "node": a["node"], "kind": kind, "gpu_model": model, "gpus": count,
                        "sku": more[0] if more else ""})
    return out


def rollup(rows: Iterable[Mapping[str, Any]]) -> tuple[dict, dict, dict, dict]:
    """Closed attempt_usage rows -> (usage_daily, usage_daily_node, usage_blocks_node, usage_jobs)
    contributions: {(day, *DAY_KEY): [*MEASURES]}, {(day, *NODE_KEY): [...]}, {(block,
    *NODE_BLOCK_KEY): [...]}, {job_id: [first, last, idle, tenant, user]}.
    A row of `gpus` GPUs over [s, e) adds gpus x its seconds inside each UTC day it touches; its
    busy GPU-seconds are spread evenly over its length; its start (part 0) counts on its first day."""
    daily: dict[tuple, list[float]] = {}
    nodes: dict[tuple, list[float]] = {}
    node_blocks: dict[tuple, list[float]] = {}
    jobs: dict[int, list[float]] = {}
    for r in rows:
        s, e, gpus, busy = r["started_at"], r["ended_at"], r["gpus"], r["busy_gpu_s"]
        length = e - s
        first = int(math.floor(s / DAY))
        last = max(first, int(math.ceil(e / DAY)) - 1)
        for day in range(first, last + 1):
            secs = max(0.0, min(e, (day + 1) * DAY) - max(s, day * DAY))
            began = r["part"] == 0 and day == first
            m = (gpus * secs, busy * secs / length if busy is not None and length > 0 else 0.0,
                 gpus * secs if busy is not None else 0.0, 1 if began else 0, r["wait_s"] if began else 0.0)
            for table, key in ((daily, (day, *(r[k] for k in DAY_KEY))), (nodes, (day, *(r[k] for k in NODE_KEY))),
                               (node_blocks, (day // USAGE_BLOCK_DAYS, *(r[k] for k in NODE_BLOCK_KEY)))):
                acc = table.setdefault(key, [0.0, 0.0, 0.0, 0, 0.0])
                for i, v in enumerate(m):
                    acc[i] += v
        if busy is not None:
            idle = max(0.0, gpus * length - busy)
            j = jobs.setdefault(r["job_id"], [s, e, 0.0, r["tenant"], r["user"]])
            j[0], j[1], j[2] = min(j[0], s), max(j[1], e), j[2] + idle
    return daily, nodes, node_blocks, jobs


def blocks(daily: Mapping[tuple, list[float]]) -> dict[tuple, list[float]]:
    """usage_daily contributions -> usage_blocks ones (block = day // USAGE_BLOCK_DAYS)."""
    out: dict[tuple, list[float]] = {}
    for (day, *key), v in daily.items():
        acc = out.setdefault((day // USAGE_BLOCK_DAYS, *key), [0.0, 0.0, 0.0, 0, 0.0])
        for i, x in enumerate(v):
            acc[i] += x
    return out


def write_rollup(conn: Connection, rows: Iterable[Mapping[str, Any]]) -> None:
    """Add closed rows to the rollups (upserts: a group's day row grows)."""
    daily, nodes, node_blocks, jobs = rollup(rows)
    dialect = conn.dialect.name
    for table, first, keys, values in ((_DAILY, "day", DAY_KEY, daily), (_BLOCKS, "block", DAY_KEY, blocks(daily)),
                                       (_NODE_DAILY, "day", NODE_KEY, nodes),
                                       (_NODE_BLOCKS, "block", NODE_BLOCK_KEY, node_blocks)):
        if values:
            conn.execute(_upsert(dialect, table, (first, *keys)),
                         [{first: k[0], **dict(zip(keys, k[1:])), **dict(zip(MEASURES, v))} for k, v in values.items()])
    if jobs:
        conn.execute(_upsert_jobs(dialect), [{"job_id": j, "first_at": v[0], "last_at": v[1], "idle_gpu_s": v[2],
                                              "tenant": v[3], "user": v[4]}
                                             for j, v in jobs.items()])


def _dialect_insert(dialect: str):
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert


def _upsert(dialect: str, table: Table, key: Sequence[str]):
    stmt = _dialect_insert(dialect)(table)
    return stmt.on_conflict_do_update(index_elements=list(key),
                                      set_={m: table.c[m] + stmt.excluded[m] for m in MEASURES})


def _upsert_jobs(dialect: str):
    stmt = _dialect_insert(dialect)(_JOBS)
    ex, c = stmt.excluded, _JOBS.c
    return stmt.on_conflict_do_update(index_elements=["job_id"], set_={
        "first_at": case((ex.first_at < c.first_at, ex.first_at), else_=c.first_at),
        "last_at": case((ex.last_at > c.last_at, ex.last_at), else_=c.last_at),
        "idle_gpu_s": c.idle_gpu_s + ex.idle_gpu_s})


def add_busy(conn: Connection, items: Sequence[Mapping[str, Any]]) -> None:
    """Sampled busy GPU-seconds onto the open rows: [{job_id, n, node, gpu_model, busy_s, seconds}]
    (`seconds`: the time the readings cover, so the busy share extends over the whole attempt)."""
    if items:
        conn.execute(_BUSY, [{"b_job": i["job_id"], "b_n": i["n"], "b_node": i["node"], "b_model": i["gpu_model"],
                              "b_busy": i["busy_s"], "b_secs": i["seconds"]} for i in items])


def extrapolate(row: Mapping[str, Any]) -> float | None:
    """A closed row's busy GPU-seconds over its whole length: the busy share of the time its
    readings covered (the last interval before the end has no reading of its own)."""
    busy, covered = row["busy_gpu_s"], row.get("sampled_s")
    if busy is None or not covered:
        return busy
    length = row["ended_at"] - row["started_at"]
    return min(row["gpus"] * length, busy * length / covered) if length > covered else busy


_BUSY = (update(_USAGE).where(_USAGE.c.job_id == bindparam("b_job"), _USAGE.c.n == bindparam("b_n"),
                              _USAGE.c.node == bindparam("b_node"), _USAGE.c.gpu_model == bindparam("b_model"),
                              _USAGE.c.ended_at.is_(None))
         .values(busy_gpu_s=func.coalesce(_USAGE.c.busy_gpu_s, 0.0) + bindparam("b_busy"),
                 sampled_s=func.coalesce(_USAGE.c.sampled_s, 0.0) + bindparam("b_secs")))


class UsageWrites:
    """Collected by `Attempts.note` while save_jobs compare-and-sets; sent by `write`."""

    def __init__(self, nodes: Callable[[], NodeFacts]):  # called only when an attempt opens
        self._nodes = nodes
        self.opened: list[dict[str, Any]] = []
        self.closed: list[dict[str, Any]] = []

    def open(self, job: Job, n: int, at: float, allocation: Sequence[Mapping[str, Any]]) -> None:
        for part in usage_parts(allocation, self._nodes()):
            self.opened.append({"b_job": job.id, "b_n": n, "b_prev": n - 1, "b_part": part["part"],
                                "b_node": part["node"], "b_kind": part["kind"],
                                "b_model": part["gpu_model"], "b_gpus": part["gpus"],
                                "b_tenant": job.tenant, "b_user": job.user, "b_at": at,
                                "b_submitted": job.submitted_at, "b_sku": part["sku"],
                                "b_labels": labels_text(getattr(job.spec, "labels", None))})

    def close(self, job: Job, at: float) -> None:
        self.closed.append({"b_job": job.id, "b_at": at})

    def write(self, conn: Connection) -> None:
        if self.closed:
            ends = {c["b_job"]: c["b_at"] for c in self.closed}
            cols = [_USAGE.c[k] for k in (*ROW_COLUMNS, "id", "sampled_s")]
            closing = [dict(r._mapping, ended_at=ends[r.job_id]) for r in conn.execute(
                select(*cols).where(_USAGE.c.job_id.in_(list(ends)), _USAGE.c.ended_at.is_(None)))]
            conn.execute(_CLOSE, self.closed)
            extended = []
            for r in closing:
                full = extrapolate(r)
                if full != r["busy_gpu_s"]:
                    r["busy_gpu_s"] = full
                    extended.append({"b_id": r["id"], "b_busy": full})
            if extended:
                conn.execute(_EXTEND, extended)
            write_rollup(conn, closing)
        if self.opened:
            conn.execute(_open(conn.dialect.name), self.opened)


_PREV_END = (select(_ATTEMPTS.c.ended_at)
             .where(_ATTEMPTS.c.job_id == bindparam("b_job"), _ATTEMPTS.c.n == bindparam("b_prev"))
             .scalar_subquery())
# the wait: since the previous attempt ended (it was requeued then), or since submission
_WAIT = bindparam("b_at") - func.coalesce(_PREV_END, bindparam("b_submitted"))
_VALUES = dict(
    job_id=bindparam("b_job"), n=bindparam("b_n"), part=bindparam("b_part"), node=bindparam("b_node"),
    kind=bindparam("b_kind"), gpu_model=bindparam("b_model"), gpus=bindparam("b_gpus"),
    tenant=bindparam("b_tenant"), user=bindparam("b_user"), started_at=bindparam("b_at"),
    ended_at=None, wait_s=_WAIT, busy_gpu_s=None, sku=bindparam("b_sku"), labels=bindparam("b_labels"))
_OPENS: dict[str, Any] = {}


def _open(dialect: str):
    """INSERT that leaves an existing (job, n, part) alone, like the attempt's own insert: an
    attempt opened twice is accounted once."""
    if dialect not in _OPENS:
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        elif dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:  # pragma: no cover - the two supported databases are above
            dialect_insert = insert
        stmt = dialect_insert(_USAGE).values(**_VALUES)
        if dialect in ("sqlite", "postgresql"):
            stmt = stmt.on_conflict_do_nothing(index_elements=["job_id", "n", "part"])
        _OPENS[dialect] = stmt
    return _OPENS[dialect]
_EXTEND = update(_USAGE).where(_USAGE.c.id == bindparam("b_id")).values(busy_gpu_s=bindparam("b_busy"))
_CLOSE = (update(_USAGE).where(_USAGE.c.job_id == bindparam("b_job"), _USAGE.c.ended_at.is_(None))
          .values(ended_at=bindparam("b_at")))

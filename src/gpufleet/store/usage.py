"""The usage rows of attempts (table attempt_usage), written in the same transaction as the attempt.

An attempt holds GPUs on one or more nodes; accounting groups by GPU model and node kind, so each
attempt gets one flat row per (node, GPU model) it holds: `gpus` there, the node's kind, the job's
tenant and user, when it started and (once closed) ended, and how long it waited in the queue
before starting (counted on part 0 only). Aggregation over these rows is plain SQL (accounting/).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from sqlalchemy import Connection, Table, bindparam, func, insert, select, update

from gpufleet.domain import Job
from gpufleet.store.rows import AttemptRow, UsageRow

# node name -> (kind, {gpu index: model}); what the usage rows need to know about the nodes
NodeFacts = Mapping[str, tuple[str, Mapping[int, str]]]

_USAGE: Table = UsageRow.__table__  # type: ignore[assignment]
_ATTEMPTS: Table = AttemptRow.__table__  # type: ignore[assignment]
UNKNOWN = "unknown"


def usage_parts(allocation: Sequence[Mapping[str, Any]], nodes: NodeFacts) -> list[dict[str, Any]]:
    """[{node, gpus: [...]}] -> [{part, node, kind, gpu_model, gpus}], one per (node, model)."""
    out: list[dict[str, Any]] = []
    for a in allocation:
        kind, models = nodes.get(a["node"], (UNKNOWN, {}))
        per: dict[str, int] = {}
        for g in a["gpus"]:
            m = models.get(g, UNKNOWN)
            per[m] = per.get(m, 0) + 1
        for model, count in sorted(per.items()):
            out.append({"part": len(out), "node": a["node"], "kind": kind, "gpu_model": model, "gpus": count})
    return out


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
                                "b_submitted": job.submitted_at})

    def close(self, job: Job, at: float) -> None:
        self.closed.append({"b_job": job.id, "b_at": at})

    def write(self, conn: Connection) -> None:
        if self.closed:
            conn.execute(_CLOSE, self.closed)
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
    ended_at=None, wait_s=_WAIT, busy_gpu_s=None)
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
_CLOSE = (update(_USAGE).where(_USAGE.c.job_id == bindparam("b_job"), _USAGE.c.ended_at.is_(None))
          .values(ended_at=bindparam("b_at")))

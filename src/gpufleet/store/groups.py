"""Job groups (matrices, arrays) and job dependencies: written with the jobs in the same
transaction (Store.add_jobs), read by the groups service and the control loop's gating."""

from __future__ import annotations

from typing import Any, Sequence

from sqlalchemy import Engine, Table, select
from sqlalchemy.orm import Session

from gpufleet.domain import Job, JobState, NotFound
from gpufleet.store.rows import JobDependencyRow, JobGroupRow, JobRow

_G: Table = JobGroupRow.__table__  # type: ignore[assignment]
_D: Table = JobDependencyRow.__table__  # type: ignore[assignment]
_J: Table = JobRow.__table__  # type: ignore[assignment]


def insert_group(s: Session, group: dict[str, Any], jobs: Sequence[Job], rows: Sequence[JobRow]) -> int:
    """Before the jobs are flushed: the group row; its id and each job's index go on the rows."""
    g = JobGroupRow(**{k: v for k, v in group.items() if k != "id"})
    s.add(g)
    s.flush()
    for job, row in zip(jobs, rows):
        row.group_id = g.id
        row.group_index = job.extra.get("group_index")
        job.extra["group_id"] = g.id
    group["id"] = g.id
    return g.id


def finish_group(s: Session, group: dict[str, Any], jobs: Sequence[Job]) -> None:
    """After the jobs are flushed: their ids go into the group's cells."""
    by_index = {j.extra.get("group_index"): j.id for j in jobs}
    cells = [dict(c, job_id=by_index.get(c["index"])) if c.get("job_id") is None and not c.get("reason") else c
             for c in group["cells"]]
    group["cells"] = cells
    row = s.get(JobGroupRow, group["id"])
    row.cells = cells


def insert_dependencies(s: Session, jobs: Sequence[Job]) -> None:
    for job in jobs:
        for kind, target in job.spec.dependency:
            s.add(JobDependencyRow(job_id=job.id, kind=kind, target_id=target))


def get_group(engine: Engine, group_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        m = conn.execute(select(_G).where(_G.c.id == group_id)).mappings().first()
    if m is None:
        raise NotFound("group", group_id)
    return dict(m)


def list_groups(engine: Engine, tenant: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    q = select(_G).order_by(_G.c.id.desc()).limit(limit)
    if tenant is not None:
        q = q.where(_G.c.tenant == tenant)
    with engine.connect() as conn:
        return [dict(m) for m in conn.execute(q).mappings()]


def group_of_job(engine: Engine, job_id: int) -> int | None:
    with engine.connect() as conn:
        return conn.execute(select(_J.c.group_id).where(_J.c.id == job_id)).scalar_one_or_none()


def dependencies(engine: Engine, job_ids: Sequence[int]) -> dict[int, list[tuple[str, int, JobState | None]]]:
    """For each job: (kind, target id, the target's state; None: no such job), in one query."""
    if not job_ids:
        return {}
    q = (select(_D.c.job_id, _D.c.kind, _D.c.target_id, _J.c.state)
         .select_from(_D.outerjoin(_J, _J.c.id == _D.c.target_id))
         .where(_D.c.job_id.in_(list(job_ids))).order_by(_D.c.id))
    out: dict[int, list[tuple[str, int, JobState | None]]] = {}
    with engine.connect() as conn:
        for job_id, kind, target, state in conn.execute(q):
            out.setdefault(job_id, []).append((kind, target, JobState(state) if state else None))
    return out


def array_limits(engine: Engine, group_ids: Sequence[int]) -> dict[int, int]:
    """group id -> max running (arrays with %N only)."""
    if not group_ids:
        return {}
    q = select(_G.c.id, _G.c.max_running).where(_G.c.id.in_(list(group_ids)), _G.c.max_running.is_not(None))
    with engine.connect() as conn:
        return {gid: int(n) for gid, n in conn.execute(q)}

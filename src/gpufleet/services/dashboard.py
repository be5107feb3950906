"""Bounded reads for the web dashboard: a page of the queue, state counts, GPU owners.

Every query here is bounded (a page of rows, or a GROUP BY) so that a page stays fast with
100,000 jobs in the store; who may see what is the same rule as the API (`can_see`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from sqlalchemy import func, select

from gpufleet.domain import Job, JobState, User, ValidationError
from gpufleet.services.context import Ctx
from gpufleet.store.mapping import job_from_row
from gpufleet.store.rows import JobRow

PAGE = 100
ACTIVE = (JobState.PENDING.value, JobState.RUNNING.value)


@dataclass(frozen=True)
class QueuePage:
    jobs: list[Job]
    next_before: int | None  # the `before` of the next (older) page, None when this is the last
    counts: dict[str, int]  # state -> jobs visible with the same filters but any state


def _states(states: Sequence[str] | None) -> tuple[str, ...]:
    if not states:
        return ACTIVE
    wanted = tuple(s.strip().upper() for s in states if s and s.strip())
    bad = [s for s in wanted if s not in JobState.__members__]
    if bad:
        raise ValidationError("state", f"unknown state {bad[0]!r} (one of {', '.join(JobState.__members__)})")
    return wanted or ACTIVE


def queue_page(ctx: Ctx, user: User, *, tenant: str | None = None, owner: str | None = None,
               states: Sequence[str] | None = None, model: str | None = None,
               before: int | None = None, limit: int = PAGE) -> QueuePage:
    """Newest first, `limit` jobs with id < `before`. A non-admin sees their own tenant only
    (asking for another gives an empty page, as the API's job list does)."""
    wanted = _states(states)
    if not user.admin:
        if tenant and tenant != user.tenant:
            return QueuePage([], None, {})
        tenant = user.tenant
    conds = []
    if tenant:
        conds.append(JobRow.tenant == tenant)
    if owner:
        conds.append(JobRow.user == owner)
    if model:
        conds.append(JobRow.spec["gpu_model"].as_string() == model.strip().lower())
    q = select(JobRow).where(JobRow.state.in_(wanted), *conds)
    if before is not None:
        q = q.where(JobRow.id < before)
    q = q.order_by(JobRow.id.desc()).limit(limit + 1)
    counted = select(JobRow.state, func.count()).where(*conds).group_by(JobRow.state)
    with ctx.store.tx() as s:
        rows = list(s.scalars(q))
        counts = {state: n for state, n in s.execute(counted)}
    jobs = [job_from_row(r) for r in rows[:limit]]
    more = len(rows) > limit
    return QueuePage(jobs, jobs[-1].id if more and jobs else None, counts)


def gpu_owners(ctx: Ctx, user: User) -> dict[tuple[str, int], tuple[int, str]]:
    """(node, gpu index) -> (job id, tenant) of the RUNNING job holding it; other tenants' jobs
    have id 0 for a non-admin (the GPU shows as taken, not by whom)."""
    out: dict[tuple[str, int], tuple[int, str]] = {}
    for job_id, tenant, alloc in ctx.store.running_allocations():
        mine = user.admin or tenant == user.tenant
        for a in alloc:
            for g in a.get("gpus", ()):
                out[(a.get("node"), int(g))] = (job_id, tenant) if mine else (0, "")
    return out

"""`sacct --parsable2`-compatible export of the jobs that ran in a period (what `gpufleet sim
--format sacct` replays: see sim/importers.py). One line per job, like sacct without --duplicates:
its latest attempt in the period (Start/End), with AllocTRES from the GPUs that attempt held."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterator

from sqlalchemy import Engine, and_, or_, select

from gpufleet.domain import format_duration
from gpufleet.store.rows import JobRow, UsageRow

COLUMNS = ("JobID", "JobName", "User", "Account", "State", "Submit", "Start", "End", "Elapsed",
           "NNodes", "NodeList", "AllocTRES", "ReqTRES", "Timelimit", "Priority", "ExitCode")
# gpufleet state -> Slurm's (an attempt still RUNNING, or PENDING = requeued)
_STATES = {"SUCCEEDED": "COMPLETED", "FAILED": "FAILED", "CANCELLED": "CANCELLED", "TIMEOUT": "TIMEOUT",
           "LOST": "NODE_FAIL", "RUNNING": "RUNNING", "PENDING": "REQUEUED"}


def sacct_lines(engine: Engine, start: float, end: float, tenant: str | None = None) -> Iterator[str]:
    """The header, then one line per job with an attempt overlapping [start, end)."""
    U, J = UsageRow.__table__.c, JobRow.__table__.c  # type: ignore[attr-defined]
    where = and_(U.started_at < end, or_(U.ended_at.is_(None), U.ended_at > start))
    if tenant is not None:
        where = and_(where, U.tenant == tenant)
    q = (select(U.job_id, U.n, U.node, U.gpu_model, U.gpus, U.started_at, U.ended_at, J.name, J.user,
                J.tenant, J.state, J.submitted_at, J.priority, J.exit_code, J.spec)
         .join(JobRow.__table__, J.id == U.job_id).where(where).order_by(U.job_id, U.n, U.part))
    yield "|".join(COLUMNS)
    with engine.connect() as conn:
        job: list = []
        for r in conn.execute(q).yield_per(5000):
            if job and (r.job_id != job[0].job_id or r.n != job[0].n):
                if r.job_id != job[0].job_id:
                    yield _line(job)
                job = []
            job.append(r)
        if job:
            yield _line(job)


def _line(parts: list) -> str:
    r = parts[0]
    gpus = sum(p.gpus for p in parts)
    nodes = list(dict.fromkeys(p.node for p in parts))
    models: dict[str, int] = {}
    for p in parts:
        models[p.gpu_model] = models.get(p.gpu_model, 0) + p.gpus
    tres = ",".join([f"gres/gpu={gpus}", *(f"gres/gpu:{m}={n}" for m, n in sorted(models.items())),
                     f"node={len(nodes)}"])
    running = r.ended_at is None
    state = "RUNNING" if running else (r.state if r.state not in ("PENDING", "RUNNING") else "PENDING")
    limit = (r.spec or {}).get("time_limit_s")
    exit_code = r.exit_code if r.exit_code is not None and not running else 0
    return "|".join(str(x) for x in (
        r.job_id, _clean(r.name), _clean(r.user), _clean(r.tenant), _STATES.get(state, state),
        _iso(r.submitted_at), _iso(r.started_at), "Unknown" if running else _iso(r.ended_at),
        _elapsed((r.ended_at or r.started_at) - r.started_at), len(nodes), ",".join(nodes), tres, tres,
        _elapsed(limit) if limit else "UNLIMITED", r.priority, f"{max(0, exit_code)}:0"))


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def _elapsed(seconds: float) -> str:
    text = format_duration(max(0.0, seconds))
    return text if text.count(":") == 2 else f"00:{int(seconds) // 60:02d}:{int(seconds) % 60:02d}"


def _clean(text: str) -> str:
    return str(text).replace("|", "_").replace("\n", " ")

"""Interactive sessions: a terminal (or one command) in a running job's allocation.

Who may: the job's owner, or an admin; a job of another tenant is not found (as everywhere),
one of the same tenant but another user is refused (a terminal runs as the job's account, with
its files: more than seeing the job). The process itself is the engine's (`open_session`,
Ability.SESSIONS; executors/local/sessions.py); the API relays its bytes (api/routers/sessions.py).
"""

from __future__ import annotations

from typing import Any, Sequence

from gpufleet.domain import Forbidden, JobState, User, ValidationError
from gpufleet.services import jobs as job_svc
from gpufleet.services.context import Ctx

MAX_ARGS = 256


def open_session(ctx: Ctx, user: User, job_id: int, argv: Sequence[str], *, rows: int = 24, cols: int = 80,
                 term: str = "xterm-256color", tty_mode: bool = True) -> Any:
    """Start `argv` (empty: the account's shell) on a pty in rank 0 of job `job_id`."""
    job = job_svc.get(ctx, user, job_id)  # NotFound for another tenant's job
    if job.user != user.name and not user.admin:
        raise Forbidden(f"job {job_id} is {job.user}'s: only its owner or an admin may open a terminal in it")
    if len(argv) > MAX_ARGS or any("\0" in a for a in argv):
        raise ValidationError("cmd", f"at most {MAX_ARGS} arguments, without NUL bytes")
    if not (0 < rows < 10000 and 0 < cols < 10000):
        raise ValidationError("rows", "rows and cols must be between 1 and 9999")
    if job.state is not JobState.RUNNING:
        why = f" ({job.reason})" if job.reason else ""
        raise ValidationError("job", f"job {job_id} is {job.state.value}{why}, not RUNNING")
    proc = ctx.executor.open_session(job, list(argv), rows=rows, cols=cols, term=term, tty_mode=tty_mode)
    ctx.audit(user, "session", f"job/{job_id}", command=" ".join(argv)[:200] or "shell")
    return proc


def job_state(ctx: Ctx, job_id: int) -> JobState:
    return ctx.store.get_job(job_id).state


def end_job(ctx: Ctx, user: User, job_id: int, reason: str) -> None:
    """The session of a `gpufleet shell` job ended: so does the job (like leaving salloc's shell)."""
    if job_state(ctx, job_id) in (JobState.PENDING, JobState.RUNNING):
        job_svc.cancel(ctx, user, job_id, reason)


__all__ = ["end_job", "job_state", "open_session"]

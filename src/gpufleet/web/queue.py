"""Queue: pending and running jobs with their reasons, filters, a job's detail, live logs, cancel."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from gpufleet.api.params import AttemptNo, JobId, Offset
from gpufleet.domain import JobState, ValidationError
from gpufleet.services import dashboard
from gpufleet.services import jobs as svc
from gpufleet.web.auth import check_csrf, signed_in
from gpufleet.web.render import DOMAIN_ERRORS, back, failure, form, fragment, page

router = APIRouter()
STATES = [s.value for s in JobState]


def _int(value: str | None, field: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        n = int(value)
    except ValueError:
        raise ValidationError(field, f"must be a whole number, got {value!r}") from None
    if not 0 <= n < 2**63:
        raise ValidationError(field, "out of range")
    return n


@router.get("/queue")
def queue(request: Request):
    user, session = signed_in(request)
    q = request.query_params
    filters = {k: q.get(k, "").strip() for k in ("tenant", "user", "state", "model")}
    try:
        result = dashboard.queue_page(
            request.app.state.ctx, user, tenant=filters["tenant"] or None, owner=filters["user"] or None,
            states=[filters["state"]] if filters["state"] else None, model=filters["model"] or None,
            before=_int(q.get("before"), "before"), limit=dashboard.PAGE)
    except ValidationError as e:
        return failure(request, user, session, e)
    tenants = sorted(request.app.state.ctx.tenant_names()) if user.admin else [user.tenant]
    models = sorted({g.model for n in request.app.state.ctx.nodes() for g in n.gpus})
    return page(request, "queue.html", user, session, active="queue", result=result, filters=filters,
                states=STATES, tenants=tenants, models=models)


@router.get("/jobs/{job_id}")
def job(request: Request, job_id: JobId, attempt: AttemptNo = None):
    user, session = signed_in(request)
    ctx = request.app.state.ctx
    try:
        j = svc.get(ctx, user, job_id)
    except DOMAIN_ERRORS as e:
        return failure(request, user, session, e)
    attempts = ctx.store.attempts(job_id)
    events = ctx.store.events("job", str(job_id))[-200:]
    can_cancel = not j.state.terminal and (user.admin or j.tenant == user.tenant)
    return page(request, "job.html", user, session, active="queue", job=j, attempts=attempts,
                events=events, can_cancel=can_cancel, attempt=attempt)


@router.get("/jobs/{job_id}/logs")
def logs(request: Request, job_id: JobId, offset: Offset = 0, attempt: AttemptNo = None):
    """A piece of the log from `offset`, and (while the run goes on) the poller for the next."""
    user, _ = signed_in(request)
    try:
        chunk = svc.logs(request.app.state.ctx, user, job_id, offset, 0, attempt)
    except DOMAIN_ERRORS as e:
        return HTMLResponse(f"<span class=err>{type(e).__name__}</span>", status_code=404)
    return fragment("_logs.html", job_id=job_id, text=chunk.data.decode("utf-8", "replace"),
                    offset=chunk.offset, complete=chunk.complete, note=chunk.note, attempt=attempt)


@router.post("/jobs/{job_id}/cancel")
async def cancel(request: Request, job_id: JobId):
    user, session = signed_in(request)
    check_csrf(request, session, (await form(request)).get("csrf"))
    try:
        j = svc.cancel(request.app.state.ctx, user, job_id)
    except DOMAIN_ERRORS as e:
        return failure(request, user, session, e)
    said = ("was already over" if j.extra.get("already_finished")
            else "is being stopped" if j.extra.get("pending_action") else "cancelled")
    return back(f"/jobs/{job_id}", session, "ok", f"job {job_id} {said}")

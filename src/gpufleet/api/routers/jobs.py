from __future__ import annotations

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from gpufleet.api.convert import job_detail, job_out, json_list
from gpufleet.api.deps import current_user, get_ctx
from gpufleet.api.params import MAX_PAGE, PAGE, After, AttemptNo, JobId, Offset, Rank, next_link
from gpufleet.api.schemas import CancelOut, JobCreate, JobDetail, JobOut
from gpufleet.domain import User
from gpufleet.services import Ctx
from gpufleet.services import jobs as svc

router = APIRouter(prefix="/jobs", tags=["jobs"])


IdempotencyKey = Header(None, alias="Idempotency-Key", description=(
    "a client-chosen key (<= 128 of A-Z a-z 0-9 _ . : + / = -): a retry with the same key returns the job "
    "made the first time (200 instead of 201), never a second copy; for /batch item i is KEY#i"))


@router.post("", response_model=JobOut, status_code=201)
def submit(body: JobCreate, response: Response, idempotency_key: str | None = IdempotencyKey,
           ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    key = svc.check_key(idempotency_key) if idempotency_key is not None else None
    job = svc.submit(ctx, user, body.model_dump(exclude_unset=True), key)
    if job.extra.get("replayed"):
        response.status_code = 200
    return job_out(job)


@router.post("/batch", response_model=list[JobOut], status_code=201)
def submit_batch(body: list[JobCreate], response: Response, idempotency_key: str | None = IdempotencyKey,
                 ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    """Submit several jobs in one call: all are validated, then all are stored in one transaction."""
    keys = svc.batch_keys(idempotency_key, len(body))
    jobs = svc.submit_many(ctx, user, [b.model_dump(exclude_unset=True) for b in body], keys)
    if jobs and all(j.extra.get("replayed") for j in jobs):
        response.status_code = 200
    return [job_out(j) for j in jobs]


@router.get("", response_model=list[JobOut])
def list_jobs(request: Request, state: list[str] | None = Query(None),
              tenant: str | None = None, all: bool = False, limit: int = Query(PAGE, ge=1, le=MAX_PAGE),
              after: After = None, ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    """Newest first, a page at a time: a full page carries `Link: <…&after=ID>; rel="next"`."""
    jobs = svc.list_jobs(ctx, user, state, tenant, all, limit, after)
    link = {"Link": next_link(request, jobs[-1].id)} if len(jobs) == limit else None
    return json_list(JobOut, [job_out(j) for j in jobs], link)


@router.get("/{job_id}", response_model=JobDetail)
def show(job_id: JobId, ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    job = svc.get(ctx, user, job_id)
    return job_detail(job, ctx.store.events("job", str(job_id)), ctx.store.attempts(job_id))


@router.post("/{job_id}/cancel", response_model=CancelOut)
def cancel(job_id: JobId, ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    job = svc.cancel(ctx, user, job_id)
    return CancelOut(id=job.id, state=job.state.value, pending_action=job.extra.get("pending_action"),
                     already_finished=bool(job.extra.get("already_finished")))


@router.get("/{job_id}/logs")
def logs(job_id: JobId, offset: Offset = 0, rank: Rank = 0, attempt: AttemptNo = None,
         ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    """Output of one rank of one attempt; X-Gpufleet-Attempt says which (none: the latest)."""
    chunk = svc.logs(ctx, user, job_id, offset, rank, attempt)
    job = ctx.store.get_job(job_id)
    return Response(content=chunk.data, media_type="application/octet-stream", headers={
        "X-Gpufleet-Offset": str(chunk.offset),
        "X-Gpufleet-Complete": "1" if chunk.complete else "0",
        "X-Gpufleet-State": job.state.value,
        "X-Gpufleet-Note": chunk.note.replace("\n", " ")[:500],
        "X-Gpufleet-Attempt": str(chunk.attempt or ""),
    })

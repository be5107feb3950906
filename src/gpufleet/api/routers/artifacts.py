"""/jobs/{id}/artifacts (list, one file), /artifacts/gc and /artifacts/policies.

Tenant isolation as for logs: another tenant's job is 404, whatever it holds."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict

from gpufleet.api.deps import current_user, get_ctx
from gpufleet.api.params import AttemptNo, JobId
from gpufleet.domain import User, parse_duration
from gpufleet.domain.artifact import Artifact, parse_bytes
from gpufleet.services import Ctx

router = APIRouter(tags=["artifacts"])


class PolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_bytes: int | str | None = None  # 500M, 50G; None: the server's default
    retention: int | str | None = None  # 30d, 12h; None: the server's default


def _service(ctx: Ctx):
    if ctx.artifacts is None:
        raise HTTPException(503, "artifacts are not enabled on this server")
    return ctx.artifacts


def artifact_out(a: Artifact) -> dict[str, Any]:
    return {"path": a.path, "attempt": a.attempt, "rank": a.rank, "size": a.size, "sha256": a.sha256,
            "sha1": a.sha1, "store": a.store, "created_at": a.created_at, "expires_at": a.expires_at,
            **({"location": a.location} if a.store == "http" else {})}


@router.get("/jobs/{job_id}/artifacts")
def list_artifacts(job_id: JobId, attempt: AttemptNo = None, ctx: Ctx = Depends(get_ctx),
                   user: User = Depends(current_user)):
    return {"job": job_id, "artifacts": [artifact_out(a) for a in _service(ctx).list(ctx, user, job_id, attempt)]}


@router.get("/jobs/{job_id}/artifacts/file")
def get_artifact(job_id: JobId, path: str = Query(..., max_length=1024), attempt: AttemptNo = None,
                 rank: int | None = Query(None, ge=0, le=100_000), ctx: Ctx = Depends(get_ctx),
                 user: User = Depends(current_user)):
    """The bytes of one artifact (latest attempt, rank 0 unless asked), with its sha256."""
    a, chunks = _service(ctx).open(ctx, user, job_id, path, attempt, rank)
    return StreamingResponse(chunks, media_type="application/octet-stream", headers={
        "Content-Length": str(a.size), "X-Checksum-Sha256": a.sha256,
        "X-Gpufleet-Attempt": str(a.attempt), "X-Gpufleet-Rank": str(a.rank)})


@router.post("/artifacts/gc")
def gc(ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    """Admin: remove expired artifacts, then the oldest of tenants over their quota."""
    return _service(ctx).gc(ctx, user)


@router.get("/artifacts/policies")
def policies(ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    return {"policies": _service(ctx).policies(ctx, user)}


@router.put("/artifacts/policies/{tenant}")
def set_policy(tenant: str, body: PolicyIn, ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    """Admin: a tenant's quota and expiry; a field left out stays, null means the server default."""
    changes: dict[str, Any] = {}
    if "max_bytes" in body.model_fields_set:
        changes["max_bytes"] = parse_bytes(body.max_bytes, "max_bytes")
    if "retention" in body.model_fields_set:
        changes["retention_s"] = parse_duration(body.retention, "retention")
    p = _service(ctx).set_policy(ctx, user, tenant, changes)
    return {"tenant": p.tenant, "max_bytes": p.max_bytes, "retention_s": p.retention_s}

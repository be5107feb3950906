"""/groups: job groups (test matrices, arrays). A group's cells: cell -> job -> state -> result."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Response
from pydantic import ConfigDict

from gpufleet.api.deps import current_user, get_ctx
from gpufleet.api.schemas import JobCreate
from gpufleet.domain import User
from gpufleet.services import Ctx
from gpufleet.services import groups as svc
from gpufleet.services.jobs import check_key

router = APIRouter(prefix="/groups", tags=["groups"])


class GroupCreate(JobCreate):
    """The job fields, plus `matrix` ({key: [values]} or ["key=a,b"]) or `array` ("0-99%10")."""

    model_config = ConfigDict(extra="forbid")
    matrix: dict[str, list[str] | str] | list[str] | str | None = None
    array: str | int | None = None


@router.post("", status_code=201)
def submit(body: GroupCreate, response: Response,
           idempotency_key: str | None = Header(None, alias="Idempotency-Key"),
           ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)) -> dict[str, Any]:
    """One job per matrix cell the inventory can satisfy (cells it cannot: `reason`, no job), or
    one per array index. 422 naming the field when nothing could run."""
    key = check_key(idempotency_key, 2) if idempotency_key is not None else None
    g = svc.submit(ctx, user, body.model_dump(exclude_unset=True), key)
    if g.pop("replayed", False):
        response.status_code = 200
    return g


@router.get("")
def list_groups(limit: int = Query(100, ge=1, le=10_000), ctx: Ctx = Depends(get_ctx),
                user: User = Depends(current_user)) -> dict[str, Any]:
    return {"groups": svc.list_groups(ctx, user, limit)}


@router.get("/{group_id}")
def show(group_id: int, ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)) -> dict[str, Any]:
    return svc.show(ctx, user, group_id)


@router.post("/{group_id}/cancel")
def cancel(group_id: int, ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)) -> dict[str, Any]:
    """Cancel every job of the group still pending or running."""
    return svc.cancel(ctx, user, group_id)

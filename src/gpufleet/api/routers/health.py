"""/api/v1/health: run checks, show a node's history, flakiness summary, remediations, faults.

Mounted by `create_app(ctx, health_service=..., schedule_service=...)`; the app needs
`app.state.health` (a HealthService) and `app.state.schedules` (a ScheduleService)."""

from __future__ import annotations

from typing import Any, Optional

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict

from gpufleet.api.deps import current_user, optional_service
from gpufleet.domain import User

router = APIRouter(prefix="/health", tags=["health"])


class HealthRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    nodes: Optional[list[str]] = None


class FaultIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    node: str
    fault: str
    gpu: int = 0


get_health = optional_service("health", "health checks")


@router.post("/run")
def run(body: HealthRunIn | None = None, svc: Any = Depends(get_health), user: User = Depends(current_user)):
    return [h.to_dict() for h in svc.run(user, body.nodes if body else None)]


@router.get("/nodes")
def summary(weeks: int = Query(8, ge=1, le=104), svc: Any = Depends(get_health),
            user: User = Depends(current_user)):
    return svc.summary(weeks)


@router.get("/nodes/{name}")
def show(name: str, limit: int = Query(200, ge=1, le=10_000), weeks: int = Query(8, ge=1, le=104),
         svc: Any = Depends(get_health), user: User = Depends(current_user)):
    return svc.show(name, limit, weeks)


@router.get("/remediations")
def remediations(node: Optional[str] = None, open: bool = False, svc: Any = Depends(get_health),
                 user: User = Depends(current_user)):
    return svc.remediations(node, open_only=open)


@router.post("/faults", status_code=204)
def inject(body: FaultIn, svc: Any = Depends(get_health), user: User = Depends(current_user)):
    svc.inject(user, body.model_dump())

"""/api/v1/schedules: recurring automation (cron)."""

from __future__ import annotations

from typing import Any, Optional

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict

from gpufleet.api.deps import current_user, optional_service
from gpufleet.domain import User

router = APIRouter(prefix="/schedules", tags=["schedules"])


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    cron: str
    command: list[str] = []
    job: Optional[dict[str, Any]] = None
    tz: str = "UTC"


get_schedules = optional_service("schedules", "recurring schedules")


@router.get("")
def list_schedules(svc: Any = Depends(get_schedules), user: User = Depends(current_user)):
    return svc.list()


@router.post("", status_code=201)
def add(body: ScheduleIn, svc: Any = Depends(get_schedules), user: User = Depends(current_user)):
    return svc.add(user, body.name, body.cron, body.command, body.job, body.tz)


@router.delete("/{name}", status_code=204)
def remove(name: str, svc: Any = Depends(get_schedules), user: User = Depends(current_user)):
    svc.remove(user, name)

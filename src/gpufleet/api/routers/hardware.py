"""GET /nodes/{name}/hardware (identity discovered from NVML, its changes) and GET /jobs/{id}/perf
(a perf job's runs: prolog/epilog verdicts, perf_valid, sampled conditions, optionally samples)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from gpufleet.api.deps import current_user, get_ctx
from gpufleet.domain import User
from gpufleet.services import Ctx
from gpufleet.services import hardware as svc

router = APIRouter(tags=["hardware"])


@router.get("/nodes/{name}/hardware")
def node_hardware(name: str, ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)) -> dict[str, Any]:
    return svc.node_hardware(ctx, name)


@router.get("/jobs/{job_id}/perf")
def job_perf(job_id: int, samples: bool = False, ctx: Ctx = Depends(get_ctx),
             user: User = Depends(current_user)) -> list[dict[str, Any]]:
    return svc.job_perf(ctx, user, job_id, samples)

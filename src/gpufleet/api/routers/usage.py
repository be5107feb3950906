"""GET /usage (sreport-style totals) and GET /usage/export (sacct --parsable2 text)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from gpufleet.api.deps import current_user, get_ctx
from gpufleet.api.usage_schemas import IdleHolderOut, UsageGroupOut, UsageOut
from gpufleet.domain import User, ValidationError
from gpufleet.services import Ctx
from gpufleet.services import usage as svc

router = APIRouter(tags=["usage"])
NO_BUSY = ("no busy GPU data in this period: none of these attempts ran on a node whose GPU utilisation "
           "gpufleet samples through NVML (idle = unknown)")


@router.get("/usage", response_model=UsageOut)
def usage(start: str | None = Query(None, alias="from"), end: str | None = Query(None, alias="to"),
          by: list[str] | None = Query(None), tenant: str | None = None,
          ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    """GPU-hours in [from, to) grouped by tenant, user, gpu_model, sku, kind, node, label:KEY (non-admins: their
    own tenant only). Running attempts and attempts crossing the boundaries are cut there."""
    u = svc.usage(ctx, user, start, end, by, tenant)
    r = u.report
    total = r.total.gpu_s
    groups = [UsageGroupOut(**svc.group_out(g), share=g.gpu_s / total if total else None,
                            quota_share=u.quota_share(i)) for i, g in enumerate(r.groups)]
    notes = [] if r.total.busy_gpu_s is not None else [NO_BUSY]
    return UsageOut(start=r.start, end=r.end, by=list(r.by), groups=groups,
                    total=UsageGroupOut(**svc.group_out(r.total), share=1.0 if total else None),
                    idle=[IdleHolderOut(job_id=h.job_id, user=h.user, tenant=h.tenant, gpu_s=h.gpu_s,
                                        busy_gpu_s=h.busy_gpu_s, idle_gpu_s=h.idle_gpu_s) for h in r.idle],
                    notes=notes)


@router.get("/usage/export")
def export(format: str = "sacct", start: str | None = Query(None, alias="from"),
           end: str | None = Query(None, alias="to"), tenant: str | None = None,
           ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    """The jobs of the period as `sacct --parsable2` text (replay: gpufleet sim --format sacct)."""
    if format != "sacct":
        raise ValidationError("format", f"unknown export format {format!r}; use sacct")
    lines = svc.export_sacct(ctx, user, start, end, tenant)
    return StreamingResponse((line + "\n" for line in lines), media_type="text/plain; charset=utf-8")

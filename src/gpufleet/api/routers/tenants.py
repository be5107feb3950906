from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from gpufleet.api.convert import tenant_out
from gpufleet.api.deps import current_user, get_ctx
from gpufleet.api.schemas import TenantIn, TenantOut, WhoAmI
from gpufleet.domain import User
from gpufleet.services import Ctx
from gpufleet.services import tenants as svc
from gpufleet.services.context import require_admin

router = APIRouter(tags=["tenants"])


@router.get("/tenants", response_model=list[TenantOut])
def list_tenants(ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    running: dict[str, dict[str, int]] = {}
    pending: dict[str, int] = {}
    models = {n.name: {g.index: g.model for g in n.gpus} for n in ctx.store.nodes()}
    for job in ctx.store.active_jobs():
        if job.allocation:
            per = running.setdefault(job.tenant, {})
            for a in job.allocation:
                for g in a.gpus:
                    m = models.get(a.node, {}).get(g, "?")
                    per[m] = per.get(m, 0) + 1
        else:
            pending[job.tenant] = pending.get(job.tenant, 0) + 1
    usage = ctx.store.get_meta("fairshare_usage")
    return [tenant_out(t, running_gpus=running.get(t.name, {}), pending_jobs=pending.get(t.name, 0),
                       usage_gpu_hours=round(float(usage.get(t.name, 0.0)) / 3600, 3))
            for t in ctx.store.tenants() if user.admin or t.name == user.tenant]


@router.post("/tenants/{name}", response_model=TenantOut, status_code=201)
def create(name: str, body: TenantIn, ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    return tenant_out(svc.put_tenant(ctx, user, name, body.quota, body.limit, body.weight,
                                     body.can_borrow, create=True))


@router.patch("/tenants/{name}", response_model=TenantOut)
def update(name: str, body: TenantIn, ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    return tenant_out(svc.put_tenant(ctx, user, name, body.quota, body.limit, body.weight,
                                     body.can_borrow))


@router.get("/whoami", response_model=WhoAmI)
def whoami(ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    return WhoAmI(user=user.name, tenant=user.tenant, admin=user.admin, executor=ctx.executor.name)


@router.get("/audit")
def audit(limit: int = Query(100, ge=1, le=10_000), user_name: str | None = None, action: str | None = None,
          ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)) -> list[dict]:
    """Who submitted, cancelled, drained, booked... newest first (admin)."""
    require_admin(user, "reading the audit log")
    return ctx.store.audit_log(min(limit, 10_000), user_name, action)

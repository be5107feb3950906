"""Usage (the accounting service), Health (remediations, flakiness), Performance (results)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from gpufleet.accounting import GROUPS
from gpufleet.services import usage as usage_svc
from gpufleet.services.usage import group_out
from gpufleet.web.auth import signed_in
from gpufleet.web.render import DOMAIN_ERRORS, failure, page

router = APIRouter()
WEEKS = 8
WEEK_S = 7 * 86400
HEALTH_PAGE = 50


def _weekly(ctx, user, tenant: str | None) -> tuple[list[float], list[dict]]:
    """GPU-hours per tenant in each of the last WEEKS weeks (one aggregate query a week)."""
    now = ctx.clock()
    starts = [now - (WEEKS - i) * WEEK_S for i in range(WEEKS)]
    series: dict[str, list[float]] = {}
    for i, t0 in enumerate(starts):
        for g in usage_svc.usage(ctx, user, t0, t0 + WEEK_S, ["tenant"], tenant).report.groups:
            series.setdefault(g.key["tenant"], [0.0] * WEEKS)[i] = g.gpu_s / 3600
    top = max((v for s in series.values() for v in s), default=0.0) or 1.0
    rows = [{"tenant": t, "hours": s, "pct": [v / top * 100 for v in s]} for t, s in sorted(series.items())]
    return starts, rows


@router.get("/usage")
def usage(request: Request):
    user, session = signed_in(request)
    ctx = request.app.state.ctx
    q = request.query_params
    by = [b for b in q.getlist("by") if b] or ["tenant"]
    tenant = q.get("tenant") or None
    try:
        result = usage_svc.usage(ctx, user, q.get("from") or None, q.get("to") or None, by, tenant)
        weeks, weekly = _weekly(ctx, user, tenant)
    except DOMAIN_ERRORS as e:
        return failure(request, user, session, e)
    groups = [{**group_out(g), "quota_share": result.quota_share(i)} for i, g in enumerate(result.report.groups)]
    total = group_out(result.report.total)
    top = max((g["gpu_hours"] for g in groups), default=0.0) or 1.0
    return page(request, "usage.html", user, session, active="usage", report=result.report, groups=groups,
                total=total, top=top, by=by, choices=GROUPS, weeks=weeks, weekly=weekly,
                frm=q.get("from", ""), to=q.get("to", ""), tenant=tenant or "")


@router.get("/health")
def health(request: Request):
    user, session = signed_in(request)
    svc = request.app.state.health
    node = request.query_params.get("node") or None
    if svc is None:
        return page(request, "health.html", user, session, active="health", enabled=False)
    try:
        detail = svc.show(node, limit=50) if node else None
    except DOMAIN_ERRORS as e:
        return failure(request, user, session, e)
    names = sorted(n.name for n in request.app.state.ctx.nodes())
    page_no = _page_no(request)
    shown = names[(page_no - 1) * HEALTH_PAGE: page_no * HEALTH_PAGE]
    summary = sorted(svc.summary(WEEKS, only=shown), key=lambda s: s["node"]) if not node else []
    rems = svc.remediations(node)[:100]
    return page(request, "health.html", user, session, active="health", enabled=True, summary=summary,
                remediations=rems, node=node, detail=detail, page_no=page_no,
                pages=max(1, -(-len(names) // HEALTH_PAGE)))


def _page_no(request: Request) -> int:
    try:
        return max(1, int(request.query_params.get("page") or 1))
    except ValueError:
        return 1

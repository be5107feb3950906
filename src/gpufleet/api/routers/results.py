"""/results: import JSON Lines, series, a series' trend, compare, regressions, outliers."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from gpufleet.api.deps import current_user, get_ctx
from gpufleet.domain import User, ValidationError
from gpufleet.services import Ctx
from gpufleet.services import results as svc

router = APIRouter(tags=["results"])
MAX_IMPORT_BYTES = 256 * 1024 * 1024


@router.post("/results/import")
async def import_results(request: Request, ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    """The body: JSON Lines (one measurement per line, with provenance fields). All lines or none:
    a bad line answers 422 naming `line N: field`."""
    body = await request.body()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError("file", "not UTF-8 text") from None
    n = await run_in_threadpool(svc.import_lines, ctx, user, text.splitlines())
    return {"imported": n}


@router.get("/results")
def list_series(benchmark: str | None = None, tenant: str | None = None,
                ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    """One row per series: results, first and last time."""
    return {"series": svc.list_series(ctx, user, benchmark, tenant)}


@router.get("/results/show")
def show(series: str | None = None, job: int | None = None, tenant: str | None = None,
         limit: int = Query(1000, ge=1, le=100000),
         ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    rs, cases = svc.show(ctx, user, series, job, tenant, limit)
    return {"results": [svc.result_out(r) for r in rs],
            "test_cases": [{"suite": c.suite, "classname": c.classname, "name": c.name, "outcome": c.outcome,
                            "time_s": c.time_s, "message": c.message, "node": c.node, "attempt": c.attempt}
                           for c in cases]}


@router.get("/results/trend")
def trend(series: str, tenant: str | None = None, ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    rs, changes = svc.trend(ctx, user, series, tenant)
    return {"series": series, "results": [svc.result_out(r) for r in rs],
            "changes": [svc.regression_out(g) for g in changes]}


@router.get("/results/compare")
def compare(a: str, b: str, tenant: str | None = None, ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    return {"a": a, "b": b, "rows": svc.compare(ctx, user, a, b, tenant)}


@router.get("/results/regressions")
def regressions(since: str | None = None, key: str | None = None, tenant: str | None = None,
                open: bool = False, ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    """Change points of every series (E-Divisive) and guard hits of the newest results."""
    found = svc.find_regressions(ctx, user, since, key, tenant, open)
    return {"regressions": [svc.regression_out(g) for g in found]}


@router.get("/results/outliers")
def outliers(benchmark: str | None = None, tenant: str | None = None, since: str | None = None,
             ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    """Nodes outside the fleet's distribution (median/MAD across nodes) per benchmark x SKU, among
    the results since `since` (-30d, a date, epoch; default: all)."""
    return {"outliers": [svc.outlier_out(o) for o in svc.find_outliers(ctx, user, tenant, benchmark, since)]}

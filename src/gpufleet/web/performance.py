"""Performance: result series, a trend per series with its change points marked, outlier nodes
(the results service; an SVG drawn on the server, no chart library)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from gpufleet.services import results as svc
from gpufleet.web.auth import signed_in
from gpufleet.web.render import DOMAIN_ERRORS, failure, page

router = APIRouter()
W, H, PAD = 900, 260, 40
MAX_POINTS = 2000
MAX_SERIES = 200


def chart(results, changes) -> dict:
    """Points and change-point markers scaled into a W x H box (newest MAX_POINTS results)."""
    rs = [r for r in results if r.valid][-MAX_POINTS:]
    if not rs:
        return {"points": "", "marks": [], "dots": []}
    t0, t1 = rs[0].at, rs[-1].at or 1
    lo, hi = min(r.value for r in rs), max(r.value for r in rs)
    span_t, span_v = (t1 - t0) or 1.0, (hi - lo) or 1.0

    def xy(r):
        return (PAD + (r.at - t0) / span_t * (W - 2 * PAD), H - PAD - (r.value - lo) / span_v * (H - 2 * PAD))

    pts = [xy(r) for r in rs]
    marks = [{"x": xy(c.first)[0], "label": f"{c.direction} {c.change_pct:+.1f}%", "bad": c.direction == "regression"}
             for c in changes if t0 <= c.first.at <= t1]
    return {"points": " ".join(f"{x:.1f},{y:.1f}" for x, y in pts), "marks": marks,
            "dots": [{"x": x, "y": y, "r": r} for (x, y), r in zip(pts[-300:], rs[-300:])],
            "lo": lo, "hi": hi, "t0": t0, "t1": t1, "unit": rs[-1].unit}


@router.get("/performance")
def performance(request: Request):
    user, session = signed_in(request)
    ctx = request.app.state.ctx
    series = request.query_params.get("series") or None
    try:
        listed = svc.list_series(ctx, user)[:MAX_SERIES]
        trend = svc.trend(ctx, user, series) if series else None
        outliers = svc.find_outliers(ctx, user)[:50] if not series else []
    except DOMAIN_ERRORS as e:
        return failure(request, user, session, e)
    drawn = chart(*trend) if trend else None
    return page(request, "performance.html", user, session, active="performance", series=listed,
                chosen=series, chart=drawn, changes=trend[1] if trend else [], outliers=outliers,
                W=W, H=H, PAD=PAD)

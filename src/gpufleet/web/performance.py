"""Performance: result series, a trend per series with its change points marked, outlier nodes
(the results service; an SVG drawn on the server, no chart library).

Outliers and change points are computed over whole series (seconds with 100,000s of results), so
they are kept per visible scope (a tenant, or all for admins) until that scope's results change:
the version is the series list's (count, newest time) that the page reads anyway."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable

from fastapi import APIRouter, Request

from gpufleet.services import results as svc
from gpufleet.web.auth import signed_in
from gpufleet.web.render import DOMAIN_ERRORS, failure, page

router = APIRouter()
W, H, PAD = 900, 260, 40
MAX_POINTS = 2000
MAX_SERIES = 200
CACHED = 64  # (scope, what) entries kept


class _Cache:
    """LRU of computed views keyed by (scope, what), valid while the version they were made at holds.
    A view made at an older version is served while a new one is made in the background (a page
    never waits for a recompute after new results; only the very first view of a scope does)."""

    def __init__(self, size: int = CACHED):
        self._items: OrderedDict[tuple, tuple[Any, Any]] = OrderedDict()
        self._making: set[tuple] = set()
        self._lock = threading.Lock()
        self.size = size

    def get(self, key: tuple, version: Any, make: Callable[[], Any], stale_ok: bool = False) -> Any:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and (hit[0] == version or stale_ok):
                self._items.move_to_end(key)
                if hit[0] != version and key not in self._making:
                    self._making.add(key)
                    threading.Thread(target=self._make, args=(key, version, make), daemon=True).start()
                return hit[1]
        return self._make(key, version, make)

    def _make(self, key: tuple, version: Any, make: Callable[[], Any]) -> Any:
        try:
            value = make()
        finally:
            with self._lock:
                self._making.discard(key)
        with self._lock:
            self._items[key] = (version, value)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


_cache = _Cache()


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
    scope = None if user.admin else user.tenant
    try:
        every = svc.list_series(ctx, user)
        listed = every[:MAX_SERIES]
        if series:
            one = [(s["results"], s["last_at"]) for s in every if s["series"] == series]
            trend = _cache.get((scope, "trend", series), one, lambda: svc.trend(ctx, user, series))
            outliers = []
        else:
            version = (sum(s["results"] for s in every), max((s["last_at"] for s in every), default=None))
            trend = None
            outliers = _cache.get((scope, "outliers"), version, lambda: svc.find_outliers(ctx, user)[:50],
                                  stale_ok=True)
    except DOMAIN_ERRORS as e:
        return failure(request, user, session, e)
    drawn = chart(*trend) if trend else None
    return page(request, "performance.html", user, session, active="performance", series=listed,
                chosen=series, chart=drawn, changes=trend[1] if trend else [], outliers=outliers,
                W=W, H=H, PAD=PAD)

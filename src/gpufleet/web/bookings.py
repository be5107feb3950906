"""Bookings: a timeline per node, create and cancel within the booking rules, approve (admins)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from gpufleet.api.params import BookingId
from gpufleet.domain import ValidationError
from gpufleet.domain.node import normalise_model
from gpufleet.domain.units import parse_duration, parse_time
from gpufleet.services import bookings as svc
from gpufleet.services.context import can_see
from gpufleet.web.auth import check_csrf, signed_in
from gpufleet.web.render import DOMAIN_ERRORS, back, failure, form, page

router = APIRouter()
PAGE = 100
DAYS = 7


def _bars(bookings, t0: float, t1: float) -> dict[str, list[dict]]:
    """node -> bars of the timeline, as percentages of [t0, t1)."""
    span = t1 - t0
    out: dict[str, list[dict]] = {}
    for b, mine in bookings:
        if b.end <= t0 or b.start >= t1:
            continue
        left = max(0.0, (b.start - t0) / span * 100)
        width = max(0.6, (min(b.end, t1) - max(b.start, t0)) / span * 100)
        label = (b.name or f"#{b.id} {b.tenant}") if mine else "booked by another tenant"
        for n in b.nodes:
            out.setdefault(n, []).append({"left": left, "width": width, "label": label, "mine": mine,
                                          "approval": b.approval, "b": b if mine else None})
    return out


@router.get("/bookings")
def bookings(request: Request):
    user, session = signed_in(request)
    ctx = request.app.state.ctx
    now = ctx.clock()
    t0 = now - now % 3600
    t1 = t0 + DAYS * 86400
    mine = svc.list_bookings(ctx, user)
    theirs = [b for b in ctx.store.bookings(now) if not can_see(user, b.tenant)]  # shown anonymously
    bars = _bars([(b, True) for b in mine] + [(b, False) for b in theirs], t0, t1)
    all_nodes = sorted(ctx.nodes(), key=lambda n: (n.name not in bars, n.name))
    try:
        page_no = max(1, int(request.query_params.get("page") or 1))
    except ValueError:
        page_no = 1
    shown = all_nodes[(page_no - 1) * PAGE: page_no * PAGE]
    ticks = [{"left": d / DAYS * 100, "t": t0 + d * 86400} for d in range(DAYS)]
    models = sorted({g.model for n in all_nodes for g in n.gpus})
    return page(request, "bookings.html", user, session, active="bookings", bookings=mine, bars=bars,
                nodes=shown, ticks=ticks, t0=t0, t1=t1, models=models, page_no=page_no,
                pages=max(1, -(-len(all_nodes) // PAGE)))


def _create_args(data: dict[str, str], now: float) -> dict:
    nodes = [n.strip() for n in data.get("nodes", "").replace(" ", ",").split(",") if n.strip()]
    gpus = data.get("gpus", "").strip()
    if gpus and not gpus.isdigit():
        raise ValidationError("gpus", f"must be a whole number, got {gpus!r}")
    if not nodes and not gpus:
        raise ValidationError("nodes", "give nodes or a number of GPUs")
    model = data.get("gpu_model", "").strip()
    return dict(start=parse_time(data.get("start", "").strip() or "now", now, "start"),
                duration_s=parse_duration(data.get("duration", "").strip() or "0", "duration") or 0,
                nodes=nodes, gpus=int(gpus) if gpus and not nodes else None,
                gpu_model=normalise_model(model) if model else None,
                exclusive=True, name=data.get("name", "").strip(),
                tenant=data.get("tenant", "").strip() or None)


@router.post("/bookings")
async def create(request: Request):
    user, session = signed_in(request)
    data = await form(request)
    check_csrf(request, session, data.get("csrf"))
    ctx = request.app.state.ctx
    try:
        b = svc.book(ctx, user, **_create_args(data, ctx.clock()))
    except DOMAIN_ERRORS as e:
        return failure(request, user, session, e)
    said = f"booking {b.id} on {', '.join(b.nodes)}: {b.approval}" + (f" ({b.note})" if b.note else "")
    return back("/bookings", session, "ok" if b.approval == "approved" else "warn", said)


def _act(name: str):
    async def handler(request: Request, booking_id: BookingId):
        user, session = signed_in(request)
        check_csrf(request, session, (await form(request)).get("csrf"))
        ctx = request.app.state.ctx
        try:
            if name == "cancel":
                svc.cancel_booking(ctx, user, booking_id)
            else:
                getattr(svc, name)(ctx, user, booking_id)
        except DOMAIN_ERRORS as e:
            return failure(request, user, session, e)
        return back("/bookings", session, "ok", f"booking {booking_id}: {name} done")
    return handler


for _name in ("cancel", "approve", "reject"):
    router.add_api_route(f"/bookings/{{booking_id}}/{_name}", _act(_name), methods=["POST"])

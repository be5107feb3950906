"""Bookings: a time window in which only the owner's tenant runs on some nodes."""

from __future__ import annotations

from typing import Sequence

from gpufleet.domain import (
    Booking, BookingLimits, Conflict, NodeState, NotFound, User, ValidationError, format_duration,
)
from gpufleet.domain.spec import _text as one_line
from gpufleet.executors.base import Ability
from gpufleet.services.context import Ctx, can_see, require_admin


def book(ctx: Ctx, user: User, *, start: float, duration_s: int, tenant: str | None = None,
         nodes: Sequence[str] = (), gpus: int | None = None, gpu_model: str | None = None,
         exclusive: bool = True, name: str = "") -> Booking:
    """Book nodes for a window. A non-admin's booking beyond the tenant's limits (settings
    `bookings:`) is stored as approval="requested": not in force until an admin approves it;
    `booking.extra_note` then says which limit it exceeds."""
    tenant = tenant or user.tenant
    if not user.admin and tenant != user.tenant:
        raise ValidationError("tenant", f"user {user.name} may only book for tenant {user.tenant}")
    try:
        ctx.store.get_tenant(tenant)
    except NotFound:
        raise ValidationError("tenant", f"unknown tenant {tenant!r}") from None
    if duration_s <= 0:
        raise ValidationError("duration", "must be positive")
    if start + duration_s <= ctx.clock():
        raise ValidationError("start", "the window is already over")
    if name:
        one_line(name, "name")
        if len(name) > 128:
            raise ValidationError("name", "at most 128 characters")
    all_nodes = {n.name: n for n in ctx.store.nodes()}
    chosen = list(nodes) if nodes else _pick_nodes(ctx, list(all_nodes.values()), gpus, gpu_model,
                                                     start, start + duration_s)
    unknown = [n for n in chosen if n not in all_nodes]
    if unknown:
        raise ValidationError("nodes", f"unknown node {unknown[0]!r}")
    _check_overlap(ctx, user, chosen, start, start + duration_s)
    b = Booking(0, tenant, tuple(chosen), start, start + duration_s, exclusive, gpus, gpu_model, user.name, name)
    beyond = "" if user.admin else beyond_limits(ctx, b)
    b.approval = "requested" if beyond else "approved"
    b = ctx.store.add_booking(b)
    if b.approval == "approved":
        _in_force(ctx, b)
    ctx.audit(user, "book" if not beyond else "book-request", f"booking/{b.id}", nodes=list(chosen),
              start=start, end=b.end, **({"beyond": beyond} if beyond else {}))
    b.note = beyond and f"beyond the limits of tenant {tenant} ({beyond}): waits for an admin's approval"
    return b


def beyond_limits(ctx: Ctx, b: Booking) -> str:
    """Which of the tenant's booking limits `b` exceeds ('' when none)."""
    lim = ctx.booking_limits.get(b.tenant) or ctx.booking_limits.get("*") or BookingLimits()
    now = ctx.clock()
    if lim.max_duration_s is not None and b.end - b.start > lim.max_duration_s:
        return f"max_duration {format_duration(lim.max_duration_s)}"
    if lim.max_horizon_s is not None and b.end - now > lim.max_horizon_s:
        return f"max_horizon {format_duration(lim.max_horizon_s)}"
    if lim.node_hours_per_week is not None:
        mine = [o for o in ctx.store.bookings(now) if o.tenant == b.tenant]
        week = 7 * 86400  # the 7 days that end with it, and the 7 days that start with it
        held = max(_node_hours(mine, b.end - week, b.end), _node_hours(mine, b.start, b.start + week))
        if held + b.node_hours > lim.node_hours_per_week + 1e-9:
            return (f"node_hours_per_week {lim.node_hours_per_week:g}: {held:g} already booked within "
                    f"7 days of it, it adds {b.node_hours:g}")
    return ""


def _node_hours(bookings: Sequence[Booking], start: float, end: float) -> float:
    return sum(len(o.nodes) * max(0.0, min(o.end, end) - max(o.start, start)) / 3600 for o in bookings)


def approve(ctx: Ctx, admin: User, booking_id: int) -> Booking:
    """Put a requested booking in force (admin, audited), if its nodes are still free then."""
    require_admin(admin, "approving bookings")
    b = ctx.store.get_booking(booking_id)
    if b.approval != "requested":
        raise Conflict(f"booking {booking_id} is {b.approval}, not waiting for approval")
    if b.end <= ctx.clock():
        raise Conflict(f"booking {booking_id} is over")
    _check_overlap(ctx, admin, list(b.nodes), b.start, b.end)
    if not ctx.store.set_booking_approval(booking_id, "approved"):
        raise Conflict(f"booking {booking_id} changed meanwhile")
    b.approval = "approved"
    _in_force(ctx, b)
    ctx.audit(admin, "book-approve", f"booking/{booking_id}", tenant=b.tenant)
    return b


def reject(ctx: Ctx, admin: User, booking_id: int, reason: str = "") -> Booking:
    require_admin(admin, "rejecting bookings")
    b = ctx.store.get_booking(booking_id)
    if b.approval != "requested" or not ctx.store.set_booking_approval(booking_id, "rejected"):
        raise Conflict(f"booking {booking_id} is {b.approval}, not waiting for approval")
    b.approval = "rejected"
    ctx.audit(admin, "book-reject", f"booking/{booking_id}", tenant=b.tenant, reason=reason)
    return b


def _in_force(ctx: Ctx, b: Booking) -> None:
    if Ability.BOOKINGS in ctx.executor.abilities:
        ctx.executor.book(b)
    ctx.wake()


def _pick_nodes(ctx: Ctx, nodes, gpus, gpu_model, start, end) -> list[str]:
    """Fewest whole nodes of the model that cover `gpus` and are not booked in the window."""
    if not gpus or gpus <= 0:
        raise ValidationError("nodes", "give --nodes or a positive --gpus")
    busy = {n for b in ctx.store.bookings() if b.start < end and start < b.end for n in b.nodes}
    cands = [n for n in nodes if n.state is not NodeState.DOWN and n.name not in busy
             and n.gpus and (not gpu_model or n.gpu_model == gpu_model)]
    cands.sort(key=lambda n: (-len(n.gpus), n.name))
    chosen, total = [], 0
    for n in cands:
        if total >= gpus:
            break
        chosen.append(n.name)
        total += len(n.gpus)
    if total < gpus:
        what = f" {gpu_model}" if gpu_model else ""
        raise ValidationError("gpus", f"only {total}{what} GPUs on nodes free of bookings in that window")
    return chosen


def _check_overlap(ctx: Ctx, user: User, nodes, start, end) -> None:
    """Bookings in force may not overlap. Another tenant's booking is not named to a non-admin."""
    for b in ctx.store.bookings():
        clash = set(b.nodes).intersection(nodes)
        if clash and b.start < end and start < b.end:
            whose = f"booking {b.id}" if can_see(user, b.tenant) else "by another tenant"
            raise ValidationError("nodes", f"{sorted(clash)[0]} is already booked in that window ({whose})")


def list_bookings(ctx: Ctx, user: User) -> list[Booking]:
    """Current and future bookings the user may see, requested and rejected ones included."""
    return [b for b in ctx.store.bookings(ctx.clock(), approval=None) if can_see(user, b.tenant)]


def cancel_booking(ctx: Ctx, user: User, booking_id: int) -> None:
    b = ctx.store.get_booking(booking_id)
    if not can_see(user, b.tenant):
        raise NotFound("booking", booking_id)
    ctx.store.cancel_booking(booking_id)
    if Ability.BOOKINGS in ctx.executor.abilities and b.approval == "approved":
        ctx.executor.unbook(b)
    ctx.audit(user, "unbook", f"booking/{booking_id}")
    ctx.wake()

"""Bookings: a time window in which only the owner's tenant runs on some nodes."""

from __future__ import annotations

from typing import Sequence

from gpufleet.domain import Booking, NodeState, NotFound, User, ValidationError
from gpufleet.executors.base import Ability
from gpufleet.services.context import Ctx, can_see


def book(ctx: Ctx, user: User, *, start: float, duration_s: int, tenant: str | None = None,
         nodes: Sequence[str] = (), gpus: int | None = None, gpu_model: str | None = None,
         exclusive: bool = True, name: str = "") -> Booking:
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
    all_nodes = {n.name: n for n in ctx.store.nodes()}
    chosen = list(nodes) if nodes else _pick_nodes(ctx, list(all_nodes.values()), gpus, gpu_model,
                                                     start, start + duration_s)
    unknown = [n for n in chosen if n not in all_nodes]
    if unknown:
        raise ValidationError("nodes", f"unknown node {unknown[0]!r}")
    _check_overlap(ctx, chosen, start, start + duration_s)
    b = ctx.store.add_booking(Booking(0, tenant, tuple(chosen), start, start + duration_s, exclusive,
                                      gpus, gpu_model, user.name, name))
    if Ability.BOOKINGS in ctx.executor.abilities:
        ctx.executor.book(b)
    ctx.audit(user, "book", f"booking/{b.id}", nodes=list(chosen), start=start, end=b.end)
    ctx.wake()
    return b


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


def _check_overlap(ctx: Ctx, nodes, start, end) -> None:
    for b in ctx.store.bookings():
        clash = set(b.nodes).intersection(nodes)
        if clash and b.start < end and start < b.end:
            raise ValidationError("nodes", f"{sorted(clash)[0]} is already booked (booking {b.id})")


def list_bookings(ctx: Ctx, user: User) -> list[Booking]:
    return [b for b in ctx.store.bookings(ctx.clock()) if can_see(user, b.tenant)]


def cancel_booking(ctx: Ctx, user: User, booking_id: int) -> None:
    b = ctx.store.get_booking(booking_id)
    if not can_see(user, b.tenant):
        raise NotFound("booking", booking_id)
    ctx.store.cancel_booking(booking_id)
    if Ability.BOOKINGS in ctx.executor.abilities:
        ctx.executor.unbook(b)
    ctx.audit(user, "unbook", f"booking/{booking_id}")
    ctx.wake()

from __future__ import annotations

from fastapi import APIRouter, Depends

from gpufleet.api.convert import booking_out
from gpufleet.api.deps import current_user, get_ctx
from gpufleet.api.params import BookingId
from gpufleet.api.schemas import BookingIn, BookingOut
from gpufleet.domain import User
from gpufleet.domain.node import normalise_model
from gpufleet.domain.units import parse_duration, parse_time
from gpufleet.services import Ctx
from gpufleet.services import bookings as svc

router = APIRouter(prefix="/bookings", tags=["bookings"])


@router.post("", response_model=BookingOut, status_code=201)
def book(body: BookingIn, ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    b = svc.book(ctx, user, start=parse_time(body.start, ctx.clock()),
                 duration_s=parse_duration(body.duration, "duration") or 0, tenant=body.tenant,
                 nodes=body.nodes, gpus=body.gpus,
                 gpu_model=normalise_model(body.gpu_model) if body.gpu_model else None,
                 exclusive=body.exclusive, name=body.name)
    return booking_out(b)


@router.get("", response_model=list[BookingOut])
def list_bookings(ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    return [booking_out(b) for b in svc.list_bookings(ctx, user)]


@router.delete("/{booking_id}", status_code=204)
def cancel(booking_id: BookingId, ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    svc.cancel_booking(ctx, user, booking_id)


@router.post("/{booking_id}/approve", response_model=BookingOut)
def approve(booking_id: BookingId, ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    """Admin: put a requested booking in force (409 if its nodes were booked meanwhile)."""
    return booking_out(svc.approve(ctx, user, booking_id))


@router.post("/{booking_id}/reject", response_model=BookingOut)
def reject(booking_id: BookingId, ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    return booking_out(svc.reject(ctx, user, booking_id))

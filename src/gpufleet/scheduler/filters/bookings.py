"""Bookings: time windows [start, end) in which only the booking's tenant runs on its nodes.

- Inside the window, a node of the booking hosts only jobs of the booking's tenant; with
  `exclusive` (the default) only the jobs submitted with `spec.booking == booking.id`.
- Before the window, anyone's job may use the nodes if its time limit ends by the start.
- A job with `spec.booking` runs only inside its booking, only on its nodes, and waits with
  `WaitingForBooking(...)` before the start.
- When a window opens, running jobs that may not be there are preempted (step 0 of the cycle).
"""

from __future__ import annotations

from typing import Iterable, Mapping

from gpufleet.domain import Booking, Job
from gpufleet.scheduler.reasons import fmt_in


class BookingRules:
    name = "Booking"

    def __init__(self, bookings: Iterable[Booking], pos: Mapping[str, int], now: float):
        self.now = now
        self.by_id: dict[int, Booking] = {}
        self.on_node: dict[int, list[Booking]] = {}
        for b in bookings:
            self.by_id[b.id] = b
            if b.end <= now:
                continue
            for name in b.nodes:
                if name in pos:
                    self.on_node.setdefault(pos[name], []).append(b)
        self.active_tenants = frozenset(b.tenant for b in self.by_id.values() if b.active(now))
        self.upcoming = tuple(sorted({b.start for b in self.by_id.values() if b.start > now}))

    def __bool__(self) -> bool:
        return bool(self.on_node)

    def own(self, job: Job) -> tuple[Booking | None, str]:
        """The job's own booking when it may run in it now, else a reason why it waits."""
        bid = job.spec.booking
        if bid is None:
            return None, ""
        b = self.by_id.get(bid)
        if b is None:
            return None, f"BookingNotFound(booking {bid})"
        if b.tenant != job.spec.tenant:
            return None, f"BookingNotYours(booking {bid} belongs to tenant {b.tenant})"
        if self.now < b.start:
            return None, f"WaitingForBooking(booking {bid} starts in {fmt_in(b.start - self.now)})"
        if self.now >= b.end:
            return None, f"BookingEnded(booking {bid})"
        return b, ""

    def allows(self, b: Booking, job: Job, end: float) -> bool:
        if b.start <= self.now:  # the window is open
            return job.spec.tenant == b.tenant and (not b.exclusive or job.spec.booking == b.id)
        return end <= b.start  # before the window: only if it ends by then

    def blocker(self, i: int, job: Job, end: float) -> Booking | None:
        """The booking that keeps `job` (running until `end`) off node i, if any."""
        for b in self.on_node.get(i, ()):
            if not self.allows(b, job, end):
                return b
        return None

    def context(self, job: Job, end: float) -> tuple:
        """Everything `blocker` depends on for this job, as a cache key."""
        if not self.on_node:
            return ()
        tenant = job.spec.tenant if job.spec.tenant in self.active_tenants else None
        return (tenant, job.spec.booking, sum(1 for s in self.upcoming if end <= s))

    def evictions(self, running: Iterable[Job], pos: Mapping[str, int]) -> list[tuple[Job, Booking]]:
        """Running jobs on the nodes of an open window that may not be there."""
        out = []
        for job in running:
            for a in job.allocation:
                i = pos.get(a.node)
                hit = next((b for b in self.on_node.get(i, ()) if b.start <= self.now  # type: ignore[arg-type]
                            and not self.allows(b, job, self.now)), None) if i is not None else None
                if hit is not None:
                    out.append((job, hit))
                    break
        return out

    def describe(self, b: Booking) -> str:
        if b.start <= self.now:
            return f"Booked(booking {b.id} of tenant {b.tenant}, {fmt_in(b.end - self.now)} left)"
        return f"Booked(booking {b.id} of tenant {b.tenant} starts in {fmt_in(b.start - self.now)})"

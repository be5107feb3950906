"""Step 2: admit against quota. Guaranteed quota per GPU model, borrowing, hard limits.

- A tenant's `quota[model]` ("*" = every model not named) is guaranteed: its jobs within it are
  admitted first and may reclaim it by preempting other tenants' borrowed jobs.
- Above its quota a tenant *borrows* idle GPUs (if `can_borrow`); borrowed jobs are preemptible.
- `limit[model]` is a hard cap on what a tenant holds, borrowed or not; `can_borrow=False` caps at quota.
- A running job is *borrowed* when it lies above its tenant's quota, counting the tenant's jobs on
  that model oldest first (the newest jobs are the borrowed ones).
- Jobs running inside their booking (`spec.booking`) are outside quota: the booking is their admission.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from gpufleet.domain import Tenant


@dataclass(slots=True)
class Held:
    """What one running job holds, as the scheduler sees it."""

    job_id: int
    tenant: str
    model: str | None
    gpus: int
    started_at: float
    booked: bool  # runs inside its booking: outside quota
    leaving: bool = False  # being stopped (preempted, cancelled): counts as used, never reclaimable


@dataclass(slots=True)
class Admission:
    guaranteed: list[str] = field(default_factory=list)  # models it may take within its quota
    borrowing: list[str] = field(default_factory=list)  # models it may take by borrowing
    reason: str = ""  # QuotaExceeded(...) when no model is allowed


class QuotaBook:
    """Quota view of one cycle. `held` (or a function returning it, evaluated on first need) lists
    the running jobs; `used` may give their per-tenant, per-model GPU totals precomputed (never
    changed here: copied on write). Which running jobs are *borrowed* is only worked out when
    preemption asks."""

    def __init__(self, tenants: Mapping[str, Tenant], held: Iterable[Held] | Callable[[], Iterable[Held]],
                 used: dict[str, dict[str, int]] | None = None):
        self.tenants = tenants
        self._held = held
        self._limits: dict[tuple[str, str], tuple[int, int | None]] = {}
        self.borrow_heads: dict[tuple[str, str], int] = {}  # (tenant, model) -> job waiting for its quota
        self.limit_heads: dict[tuple[str, str], int] = {}  # (tenant, model) -> job waiting under the limit
        self._borrowed: set[int] | None = None
        self._borrowed_left: dict[tuple[str, str], int] = {}
        self._own: set[str] = set()  # tenants whose `used` entry is this book's own copy
        if used is None:
            used = {}
            for h in self._held_list():
                if not h.booked and h.model is not None and h.gpus:
                    per = used.setdefault(h.tenant, {})
                    per[h.model] = per.get(h.model, 0) + h.gpus
            self._own.update(used)
        self.used = dict(used)

    def _held_list(self) -> list[Held]:
        held = self._held
        if callable(held):
            held = held()
        self._held = held = list(held)
        return held

    @property
    def borrowed(self) -> set[int]:
        """Running job ids above their tenant's quota."""
        if self._borrowed is None:
            self._mark()
        return self._borrowed  # type: ignore[return-value]

    @property
    def borrowed_left(self) -> dict[tuple[str, str], int]:
        """(tenant, model) -> reclaimable GPUs (borrowed ones not yet chosen as victims)."""
        if self._borrowed is None:
            self._mark()
        return self._borrowed_left

    def _mark(self) -> None:
        """A running job is borrowed when it lies above its tenant's quota, counting the tenant's jobs
        on that model oldest first (the newest jobs are the borrowed ones)."""
        self._borrowed = set()
        tally: dict[tuple[str, str], int] = {}
        for h in sorted(self._held_list(), key=lambda h: (h.started_at, h.job_id)):
            if h.booked or h.model is None or not h.gpus:
                continue
            key = (h.tenant, h.model)
            before = tally.get(key, 0)
            tally[key] = before + h.gpus
            if before + h.gpus > self.limits(h.tenant, h.model)[0] and not h.leaving:
                self._borrowed.add(h.job_id)
                self._borrowed_left[key] = self._borrowed_left.get(key, 0) + h.gpus

    def limits(self, tenant: str, model: str) -> tuple[int, int | None]:
        """(guaranteed quota, hard cap or None) of a tenant on a model. Unknown tenants: 0 and no cap."""
        key = (tenant, model)
        got = self._limits.get(key)
        if got is None:
            t = self.tenants.get(tenant)
            if t is None:
                got = (0, None)
            else:
                quota, cap = t.quota_for(model), t.limit_for(model)
                if not t.can_borrow:
                    cap = quota if cap is None else min(cap, quota)
                if cap is not None:
                    quota = min(quota, cap)  # a quota above the hard limit guarantees only the limit
                got = (quota, cap)
            self._limits[key] = got
        return got

    def admit(self, tenant: str, models: Iterable[str], gpus: int, job_id: int = 0) -> Admission:
        """Which models `gpus` more GPUs of `tenant` may take. A job blocked by the hard limit that
        would fit under it becomes the tenant's *limit head* on that model: the tenant's later jobs
        there wait behind it, so its small jobs cannot keep a big one under the limit forever."""
        out = Admission()
        blocked: tuple[str, int, int, str] | None = None
        per = self.used.get(tenant, {})
        for model in models:
            key = (tenant, model)
            used = per.get(model, 0)
            quota, cap = self.limits(tenant, model)
            head = self.limit_heads.get(key)
            if cap is not None and (used + gpus > cap or (head is not None and head != job_id)):
                if head is None and gpus <= cap and job_id:
                    self.limit_heads[key] = head = job_id
                if blocked is None:
                    behind = f"behind job {head}" if head is not None and head != job_id else ""
                    blocked = (model, used, cap, behind)
            elif used + gpus <= quota and self.borrow_heads.get(key, job_id) == job_id:
                out.guaranteed.append(model)
            else:
                out.borrowing.append(model)
        if blocked and not out.guaranteed and not out.borrowing:
            out.reason = quota_reason(blocked[0], blocked[1], blocked[2], gpus, blocked[3])
        return out

    def wait_for_quota(self, tenant: str, models: Iterable[str], gpus: int, job_id: int) -> None:
        """`job_id` waits to fit its tenant's guaranteed quota (it would borrow now): the tenant's later
        jobs may not take that quota as guaranteed in this pass (they borrow, after everyone's
        guaranteed jobs), so it gets in as the tenant's own jobs end."""
        for model in models:
            if gpus <= self.limits(tenant, model)[0]:
                self.borrow_heads.setdefault((tenant, model), job_id)

    def started(self, job_id: int) -> None:
        for heads in (self.borrow_heads, self.limit_heads):
            for key in [k for k, v in heads.items() if v == job_id]:
                del heads[key]

    def within_quota(self, tenant: str, model: str, gpus: int) -> bool:
        return self.used.get(tenant, {}).get(model, 0) + gpus <= self.limits(tenant, model)[0]

    def take(self, tenant: str, model: str, gpus: int) -> None:
        if tenant not in self._own:
            self._own.add(tenant)
            self.used[tenant] = dict(self.used.get(tenant, {}))
        per = self.used[tenant]
        per[model] = per.get(model, 0) + gpus

    def reclaimable(self, model: str, but: str) -> int:
        """GPUs of `model` other tenants than `but` hold beyond their quota."""
        return sum(n for (t, m), n in self.borrowed_left.items() if m == model and t != but)

    def release_borrowed(self, job_id: int, tenant: str, model: str, gpus: int) -> None:
        """A borrowed job was chosen as a victim: it no longer counts as reclaimable."""
        if job_id in self.borrowed:
            key = (tenant, model)
            self._borrowed_left[key] = max(0, self._borrowed_left.get(key, 0) - gpus)


def quota_reason(model: str, used: int, cap: int, gpus: int, behind: str = "") -> str:
    if behind:
        return f"QuotaExceeded({model}: {used}/{cap}, {behind})"
    if used >= cap:
        return f"QuotaExceeded({model}: {used}/{cap})"
    return f"QuotaExceeded({model}: {used}/{cap}, needs {gpus})"

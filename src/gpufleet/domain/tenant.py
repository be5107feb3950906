"""Tenants (teams), users, bookings."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from gpufleet.domain.errors import ValidationError
from gpufleet.domain.units import parse_duration


@dataclass(slots=True)
class Tenant:
    """A team. `quota` is guaranteed GPUs per model; `limit` caps use incl. borrowing (None = no cap).

    The special model key "*" in either dict applies to every model not named.
    """

    name: str
    quota: dict[str, int] = field(default_factory=dict)
    limit: dict[str, int] | None = None
    weight: float = 1.0
    can_borrow: bool = True

    def quota_for(self, model: str) -> int:
        return self.quota.get(model, self.quota.get("*", 0))

    def limit_for(self, model: str) -> int | None:
        if self.limit is None:
            return None
        return self.limit.get(model, self.limit.get("*"))


@dataclass(slots=True)
class User:
    name: str
    tenant: str
    admin: bool = False


@dataclass(slots=True)
class Booking:
    """A window [start, end) in which only `tenant` runs on `nodes` (whole nodes)."""

    id: int
    tenant: str
    nodes: tuple[str, ...]
    start: float
    end: float
    exclusive: bool = True
    gpus: int | None = None  # asked size, when the booking was made by GPU count
    gpu_model: str | None = None
    user: str = ""
    name: str = ""
    approval: str = "approved"  # "approved" (in force) | "requested" (waits for an admin) | "rejected"
    note: str = ""  # a word for the user about this booking (e.g. why it waits); not stored

    def active(self, now: float) -> bool:
        return self.start <= now < self.end

    @property
    def node_hours(self) -> float:
        return len(self.nodes) * (self.end - self.start) / 3600


@dataclass(frozen=True, slots=True)
class BookingLimits:
    """What a non-admin may book without an admin's approval (None: no bound)."""

    max_duration_s: int | None = 24 * 3600
    max_horizon_s: int | None = 14 * 86400  # how far ahead the booking may end
    node_hours_per_week: float | None = 7 * 24.0  # a tenant's booked node-hours in any 7 days


def parse_booking_limits(data: dict | None) -> dict[str, BookingLimits]:
    """The `bookings:` settings -> {"*": defaults, tenant: limits}. Keys: max_duration,
    max_horizon (durations or null), node_hours_per_week (a number or null), tenants: {name: {...}}."""
    def one(d: dict, base: BookingLimits, where: str) -> BookingLimits:
        if not isinstance(d, dict):
            raise ValidationError(where, "must be a mapping")
        bad = set(d) - {"max_duration", "max_horizon", "node_hours_per_week"}
        if bad:
            raise ValidationError(f"{where}.{sorted(bad)[0]}", "unknown booking setting")
        out = base
        for key, attr in (("max_duration", "max_duration_s"), ("max_horizon", "max_horizon_s")):
            if key in d:
                v = d[key]
                out = replace(out, **{attr: None if v is None else parse_duration(v, f"{where}.{key}")})
        if "node_hours_per_week" in d:
            v = d["node_hours_per_week"]
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
                raise ValidationError(f"{where}.node_hours_per_week", f"must be a number >= 0, got {v!r}")
            out = replace(out, node_hours_per_week=None if v is None else float(v))
        return out

    data = dict(data or {})
    tenants = data.pop("tenants", None) or {}
    default = one(data, BookingLimits(), "bookings")
    if not isinstance(tenants, dict):
        raise ValidationError("bookings.tenants", "must be a mapping of tenant -> limits")
    return {"*": default, **{str(t): one(v, default, f"bookings.tenants.{t}") for t, v in tenants.items()}}


@dataclass(slots=True)
class ApiToken:
    """A bearer token's lifecycle (the secret itself is never stored, only its hash)."""

    id: int
    user: str
    tenant: str
    admin: bool
    created_at: float
    expires_at: float | None = None  # None: never
    last_used_at: float | None = None
    revoked_at: float | None = None
    note: str = ""

    def usable(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

"""Tenants (teams), users, bookings."""

from __future__ import annotations

from dataclasses import dataclass, field


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

    def active(self, now: float) -> bool:
        return self.start <= now < self.end


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

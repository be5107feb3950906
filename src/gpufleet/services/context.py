"""What every use-case needs: the store, the clock, the executor, a way to wake the loop."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from gpufleet.domain import BookingLimits, Forbidden, Node, Tenant, User
from gpufleet.executors.base import Executor
from gpufleet.executors.local.account import Accounts
from gpufleet.observability.logs import get_logger
from gpufleet.store import Store


_audit_log = get_logger("gpufleet.audit")


@dataclass
class Ctx:
    store: Store
    executor: Executor
    clock: Callable[[], float] = time.time
    wake: Callable[[], None] = field(default=lambda: None)
    cache_ttl_s: float = 2.0
    accounts: Accounts | None = None  # Unix accounts: who jobs run as, who the socket's peers are
    _cache: dict[str, tuple[float, object]] = field(default_factory=dict, repr=False)
    # the API's login caches (token -> user, peer uid -> user): emptied when a token is revoked or
    # a user changes, so neither outlives the change (see services/accounts.py)
    login_caches: list[dict] = field(default_factory=list, repr=False)
    # what non-admins may book without approval, per tenant ("*": everyone else); from the settings
    booking_limits: dict[str, BookingLimits] = field(default_factory=lambda: {"*": BookingLimits()})
    artifacts: Any = None  # services.artifacts.ArtifactService (None: this server keeps no artifacts)

    def tenant_names(self) -> set[str]:
        """Known tenants, cached briefly for the submit path (invalidated by tenant writes)."""
        return self._cached("tenants", lambda: {t.name for t in self.store.tenants()})

    def nodes(self) -> tuple[Node, ...]:
        """Nodes for validation and pages, to read only (the store keeps them until a node write)."""
        return self.store.nodes_view()

    def forget_logins(self) -> None:
        for cache in self.login_caches:
            cache.clear()

    def invalidate(self, *keys: str) -> None:
        for k in keys or tuple(self._cache):
            self._cache.pop(k, None)

    def _cached(self, key: str, load: Callable[[], object]):
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is None or hit[0] < now:
            hit = (now + self.cache_ttl_s, load())
            self._cache[key] = hit
        return hit[1]

    def audit(self, user: User, action: str, target: str, **detail: object) -> None:
        """Record who did what (submit, cancel, drain, book...): the audit table, and one
        structured log line with audit=true."""
        self.store.audit(self.clock(), user.name, action, target, dict(detail))
        _audit_log.info(f"{user.name} {action} {target}", audit=True, actor=user.name, action=action,
                        target=target, **detail)


def require_admin(user: User, what: str) -> None:
    if not user.admin:
        raise Forbidden(f"{what} needs an admin token (user {user.name} is not an admin)")


def can_see(user: User, tenant: str) -> bool:
    return user.admin or user.tenant == tenant

"""What every use-case needs: the store, the clock, the executor, a way to wake the loop."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from gpufleet.domain import Forbidden, User
from gpufleet.executors.base import Executor
from gpufleet.store import Store


@dataclass
class Ctx:
    store: Store
    executor: Executor
    clock: Callable[[], float] = time.time
    wake: Callable[[], None] = field(default=lambda: None)

    def audit(self, user: User, action: str, target: str, **detail: object) -> None:
        self.store.audit(self.clock(), user.name, action, target, dict(detail))


def require_admin(user: User, what: str) -> None:
    if not user.admin:
        raise Forbidden(f"{what} needs an admin token (user {user.name} is not an admin)")


def can_see(user: User, tenant: str) -> bool:
    return user.admin or user.tenant == tenant

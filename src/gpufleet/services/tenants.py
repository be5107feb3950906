"""Tenants, users and tokens."""

from __future__ import annotations

import secrets
from typing import Mapping

from gpufleet.domain import ApiToken, NotFound, Tenant, User, ValidationError, parse_duration
from gpufleet.domain.node import normalise_model
from gpufleet.domain.spec import _name as valid_name
from gpufleet.domain.units import MAX_INT
from gpufleet.services.context import Ctx, require_admin


def parse_quota(value: str | Mapping[str, int] | None, field: str) -> dict[str, int] | None:
    """`a100=16,h100=8` (or a mapping) -> {"a100": 16, "h100": 8}."""
    if value is None:
        return None
    if isinstance(value, str):
        pairs = {}
        for part in filter(None, (p.strip() for p in value.split(","))):
            k, sep, v = part.partition("=")
            if not sep:
                raise ValidationError(field, f"expected MODEL=N, got {part!r}")
            pairs[k] = v
        value = pairs
    out: dict[str, int] = {}
    for k, v in value.items():
        try:
            n = int(v)
        except (TypeError, ValueError):
            raise ValidationError(field, f"{k}: not an integer: {v!r}") from None
        if not 0 <= n <= MAX_INT:
            raise ValidationError(field, f"{k}: must be between 0 and {MAX_INT}")
        out["*" if k == "*" else normalise_model(str(k))] = n
    return out


def put_tenant(ctx: Ctx, user: User, name: str, quota=None, limit=None, weight: float | None = None,
               can_borrow: bool | None = None, create: bool = False) -> Tenant:
    require_admin(user, "changing tenants")
    valid_name(name, "name")
    try:
        t = ctx.store.get_tenant(name)
        if create:
            raise ValidationError("name", f"tenant {name} already exists")
    except NotFound:
        if not create:
            raise
        t = Tenant(name)
    if quota is not None:
        t.quota = parse_quota(quota, "quota") or {}
    if limit is not None:
        t.limit = parse_quota(limit, "limit") if limit not in ("", "none") else None
    if weight is not None:
        if weight <= 0:
            raise ValidationError("weight", "must be positive")
        t.weight = float(weight)
    if can_borrow is not None:
        t.can_borrow = can_borrow
    ctx.store.put_tenant(t, ctx.clock())
    ctx.invalidate("tenants")
    ctx.audit(user, "tenant-create" if create else "tenant-set", f"tenant/{name}",
              quota=t.quota, limit=t.limit, weight=t.weight)
    ctx.wake()
    return t


def create_token(ctx: Ctx, admin: User, user_name: str, tenant: str | None = None,
                 is_admin: bool | None = None, expires: str | int | None = None,
                 note: str = "") -> tuple[str, ApiToken]:
    """A fresh bearer token for `user_name`, made (in `tenant`) if new. For an existing user,
    `tenant` and `is_admin` must match when given: `gpufleet user set` changes them, not this.
    `expires`: a duration (30d, 12h). Only the hash is stored; the secret is returned once."""
    require_admin(admin, "creating tokens")
    valid_name(user_name, "user")
    if len(note) > 256 or "\0" in note or "\n" in note:
        raise ValidationError("note", "one line of at most 256 characters")
    ttl = parse_duration(expires, "expires") if expires not in (None, "", "never") else None
    existing = ctx.store.get_user(user_name)
    if existing is None:
        if not tenant:
            raise ValidationError("tenant", f"user {user_name} is new: give the tenant it belongs to")
        try:
            ctx.store.get_tenant(tenant)
        except NotFound:
            raise ValidationError("tenant", f"unknown tenant {tenant!r}") from None
        ctx.store.put_user(User(user_name, tenant, bool(is_admin)))
    else:
        _same_user(existing, tenant, is_admin)
    now = ctx.clock()
    token = "gf_" + secrets.token_urlsafe(32)
    token_id = ctx.store.add_token(user_name, token, now, now + ttl if ttl else None, note)
    ctx.audit(admin, "token-create", f"user/{user_name}", token=token_id,
              tenant=existing.tenant if existing else tenant,
              admin=existing.admin if existing else bool(is_admin), expires_at=now + ttl if ttl else None)
    return token, ctx.store.get_token(token_id)


def _same_user(u: User, tenant: str | None, is_admin: bool | None) -> None:
    if tenant is not None and tenant != u.tenant:
        raise ValidationError("tenant", f"user {u.name} is in tenant {u.tenant}, not {tenant} "
                                        f"(to move them: gpufleet user set {u.name} --tenant {tenant})")
    if is_admin is not None and is_admin != u.admin:
        flag = "--admin" if is_admin else "--no-admin"
        raise ValidationError("admin", f"user {u.name} is {'' if u.admin else 'not '}an admin "
                                       f"(to change it: gpufleet user set {u.name} {flag})")


def bootstrap(ctx: Ctx, tenants: list[Tenant]) -> None:
    """First start: a `default` tenant, the inventory's tenants, an `admin` user."""
    known = {t.name for t in ctx.store.tenants()}
    for t in [Tenant("default"), *tenants]:
        if t.name not in known:
            ctx.store.put_tenant(t, ctx.clock())
    ctx.store.put_user(User("admin", "default", admin=True))


def mint_token(ctx: Ctx, user: str) -> str:
    token = "gf_" + secrets.token_urlsafe(32)
    ctx.store.add_token(user, token, ctx.clock())
    return token

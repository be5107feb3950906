"""Logins, the token lifecycle (list, revoke, expiry, last use) and changing a user (admin)."""

from __future__ import annotations

from gpufleet.domain import ApiToken, NotFound, User, ValidationError
from gpufleet.services.context import Ctx, require_admin


def authenticate(ctx: Ctx, token: str) -> tuple[User, float | None] | None:
    """(user, expires_at) for a usable bearer token, else None. Stamps last_used_at (at most
    once a minute; the API caches the answer for a few seconds on top)."""
    return ctx.store.login(token, ctx.clock())


def list_tokens(ctx: Ctx, user: User) -> list[ApiToken]:
    """Admin: every token. Anyone else: their own."""
    return ctx.store.tokens(None if user.admin else user.name)


def revoke_token(ctx: Ctx, user: User, token_id: int) -> ApiToken:
    """Admin: any token; anyone else: their own (another's is 'not found'). Effective at once."""
    tok = ctx.store.get_token(token_id)
    if not user.admin and tok.user != user.name:
        raise NotFound("token", token_id)
    if tok.revoked_at is None:
        ctx.store.revoke_token(token_id, ctx.clock())
        ctx.forget_logins()
        ctx.audit(user, "token-revoke", f"token/{token_id}", owner=tok.user)
    return ctx.store.get_token(token_id)


def list_users(ctx: Ctx, user: User) -> list[User]:
    if user.admin:
        return ctx.store.users()
    return [u for u in ctx.store.users() if u.name == user.name]


def set_user(ctx: Ctx, admin: User, name: str, tenant: str | None = None,
             is_admin: bool | None = None) -> User:
    """Move a user to another tenant and/or grant or take admin (admin only, audited)."""
    require_admin(admin, "changing users")
    u = ctx.store.get_user(name)
    if u is None:
        raise NotFound("user", name)
    if tenant is not None:
        if tenant not in ctx.tenant_names() and tenant not in {t.name for t in ctx.store.tenants()}:
            raise ValidationError("tenant", f"unknown tenant {tenant!r}")
    if is_admin is False and u.admin and name == admin.name:
        raise ValidationError("admin", "an admin cannot take their own admin flag (ask another admin)")
    new = User(name, tenant if tenant is not None else u.tenant, u.admin if is_admin is None else is_admin)
    if (new.tenant, new.admin) != (u.tenant, u.admin):
        ctx.store.put_user(new)
        ctx.forget_logins()
        ctx.audit(admin, "user-set", f"user/{name}", tenant=new.tenant, admin=new.admin,
                  was_tenant=u.tenant, was_admin=u.admin)
    return new

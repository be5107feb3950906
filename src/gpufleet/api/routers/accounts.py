"""Tokens (create, list, revoke) and users (list, change tenant/admin)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from gpufleet.api.deps import current_user, get_ctx
from gpufleet.api.params import TokenId
from gpufleet.api.schemas import TokenIn, TokenInfoOut, TokenOut, UserOut, UserPatch
from gpufleet.domain import ApiToken, User
from gpufleet.services import Ctx
from gpufleet.services import accounts as svc
from gpufleet.services import tenants as tenants_svc

router = APIRouter(tags=["accounts"])


def token_info(t: ApiToken) -> TokenInfoOut:
    return TokenInfoOut(id=t.id, user=t.user, tenant=t.tenant, admin=t.admin, created_at=t.created_at,
                        expires_at=t.expires_at, last_used_at=t.last_used_at, revoked_at=t.revoked_at,
                        note=t.note)


@router.post("/tokens", response_model=TokenOut, status_code=201)
def create_token(body: TokenIn, ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    secret, t = tenants_svc.create_token(ctx, user, body.user, body.tenant, body.admin, body.expires, body.note)
    return TokenOut(user=t.user, tenant=t.tenant, token=secret, id=t.id, expires_at=t.expires_at)


@router.get("/tokens", response_model=list[TokenInfoOut])
def list_tokens(ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    """Admin: every token; anyone else: their own. Never the secrets."""
    return [token_info(t) for t in svc.list_tokens(ctx, user)]


@router.post("/tokens/{token_id}/revoke", response_model=TokenInfoOut)
def revoke_token(token_id: TokenId, ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    """Admin: any token; anyone else: their own. The token stops working at once."""
    return token_info(svc.revoke_token(ctx, user, token_id))


@router.get("/users", response_model=list[UserOut])
def list_users(ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    return [UserOut(name=u.name, tenant=u.tenant, admin=u.admin) for u in svc.list_users(ctx, user)]


@router.patch("/users/{name}", response_model=UserOut)
def set_user(name: str, body: UserPatch, ctx: Ctx = Depends(get_ctx), user: User = Depends(current_user)):
    """Move a user to another tenant, grant or take admin (admin only, audited)."""
    u = svc.set_user(ctx, user, name, body.tenant, body.admin)
    return UserOut(name=u.name, tenant=u.tenant, admin=u.admin)

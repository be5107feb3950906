"""Request-scoped dependencies: the service context and the caller (from the bearer token)."""

from __future__ import annotations

import time

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gpufleet.domain import User
from gpufleet.services import Ctx

_bearer = HTTPBearer(auto_error=False)
_CACHE_S = 10.0


def get_ctx(request: Request) -> Ctx:
    return request.app.state.ctx


def optional_service(attr: str, what: str):
    """A dependency returning app.state.<attr>, or 503 when the server runs without it."""
    def get(request: Request):
        svc = getattr(request.app.state, attr, None)
        if svc is None:
            raise HTTPException(503, f"{what} are not enabled on this server")
        return svc
    return get


def current_user(request: Request,
                 cred: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> User:
    if cred is None or not cred.credentials:
        raise HTTPException(401, "missing bearer token (set GPUFLEET_TOKEN or run on the server host)",
                            headers={"WWW-Authenticate": "Bearer"})
    cache: dict[str, tuple[float, User]] = request.app.state.token_cache
    hit = cache.get(cred.credentials)
    if hit and hit[0] > time.monotonic():
        return hit[1]
    user = request.app.state.ctx.store.user_for_token(cred.credentials)
    if user is None:
        raise HTTPException(401, "invalid token", headers={"WWW-Authenticate": "Bearer"})
    cache[cred.credentials] = (time.monotonic() + _CACHE_S, user)
    return user

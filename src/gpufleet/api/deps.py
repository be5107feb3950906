"""Request-scoped dependencies: the service context and the caller (from the bearer token)."""

from __future__ import annotations

import hmac
import time

from fastapi import Depends, HTTPException, Request
from starlette.requests import HTTPConnection
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gpufleet.api.peer import scope_peer
from gpufleet.domain import User
from gpufleet.services import Ctx
from gpufleet.services.accounts import authenticate
from gpufleet.services.peers import user_for_peer

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
    if (cred is None or not cred.credentials) and (peer := scope_peer(request.scope)) is not None:
        return _peer_user(request, peer.uid)  # the local socket: the kernel says who it is
    if cred is None or not cred.credentials:
        raise HTTPException(401, "missing bearer token (set GPUFLEET_TOKEN or run on the server host)",
                            headers={"WWW-Authenticate": "Bearer"})
    cache: dict[str, tuple[float, User]] = request.app.state.token_cache
    hit = cache.get(cred.credentials)
    if hit and hit[0] > time.monotonic():
        return hit[1]
    ctx: Ctx = request.app.state.ctx
    login = authenticate(ctx, cred.credentials)  # None: unknown, revoked or expired
    if login is None:
        raise HTTPException(401, "invalid, revoked or expired token", headers={"WWW-Authenticate": "Bearer"})
    user, expires_at = login
    ttl = _CACHE_S if expires_at is None else min(_CACHE_S, expires_at - ctx.clock())
    cache[cred.credentials] = (time.monotonic() + ttl, user)  # revoke / user set empty the cache
    return user


def connection_user(conn: HTTPConnection) -> User:
    """`current_user` for a connection FastAPI's bearer dependency does not serve (a WebSocket):
    the same token (Authorization: Bearer) or, on the local socket, the same peer credentials."""
    scheme, _, token = conn.headers.get("authorization", "").partition(" ")
    cred = HTTPAuthorizationCredentials(scheme=scheme, credentials=token.strip()) \
        if scheme.lower() == "bearer" and token.strip() else None
    return current_user(conn, cred)  # type: ignore[arg-type]  # it reads .scope and .app only


def _peer_user(request: Request, uid: int) -> User:
    cache: dict[int, tuple[float, User]] = request.app.state.peer_cache
    hit = cache.get(uid)
    if hit and hit[0] > time.monotonic():
        return hit[1]
    user = user_for_peer(request.app.state.ctx, uid)  # Forbidden (403) for an account refused
    cache[uid] = (time.monotonic() + _CACHE_S, user)
    return user


def metrics_reader(scrape_token: str | None):
    """Who may read /metrics (per-tenant usage, queue and restart series): the scrape token
    (`<home>/metrics.token`, for Prometheus) or an admin; `scrape_token` None leaves it open
    (setting metrics_auth: none)."""
    def check(request: Request, cred: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
        if scrape_token is None:
            return
        if cred is not None and hmac.compare_digest(cred.credentials.encode(), scrape_token.encode()):
            return
        if not current_user(request, cred).admin:  # 401 without a valid token
            raise HTTPException(403, "metrics are for admins and the scrape token (<home>/metrics.token)")
    return check

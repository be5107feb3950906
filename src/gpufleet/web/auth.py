"""Dashboard sign-in: a token once, then a server-side session behind an opaque cookie.

The cookie holds a random session id only (HttpOnly, SameSite=Strict, Secure over https); the
token stays on the server, in memory, and is checked again on every request through the API's
own login cache (so a revoked or expired token ends its sessions within that cache's 10 s, at
once when revoked here: revoke empties the cache). Every action carries the session's CSRF token
(a synchronizer token: a form field, or the X-CSRF-Token header for htmx), compared in constant
time; sign-in itself is guarded by a double-submit cookie."""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field

from fastapi import HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials

from gpufleet.api.deps import current_user
from gpufleet.domain import User

COOKIE = "gpufleet_session"
LOGIN_COOKIE = "gpufleet_login_csrf"
CSRF_HEADER = "x-csrf-token"
SESSION_S = 12 * 3600
MAX_SESSIONS = 10_000


@dataclass
class Session:
    token: str
    csrf: str
    expires: float
    flash: list[tuple[str, str]] = field(default_factory=list)  # (kind, text) shown once


class NotSignedIn(Exception):
    """Raised by `signed_in`; the app answers with a redirect to the sign-in page."""


def sessions(request: Request) -> dict[str, Session]:
    state = request.app.state
    if not hasattr(state, "web_sessions"):
        state.web_sessions = {}
    return state.web_sessions


def new_session(request: Request, token: str) -> str:
    store = sessions(request)
    now = time.monotonic()
    if len(store) >= MAX_SESSIONS:  # drop the expired ones, then the oldest
        for sid in [k for k, s in store.items() if s.expires < now] or list(store)[:len(store) // 10 + 1]:
            store.pop(sid, None)
    sid = secrets.token_urlsafe(32)
    store[sid] = Session(token=token, csrf=secrets.token_urlsafe(32), expires=now + SESSION_S)
    return sid


def session_of(request: Request) -> Session | None:
    sid = request.cookies.get(COOKIE)
    if not sid:
        return None
    s = sessions(request).get(sid)
    if s is None or s.expires < time.monotonic():
        sessions(request).pop(sid, None)
        return None
    return s


def end_session(request: Request) -> None:
    sid = request.cookies.get(COOKIE)
    if sid:
        sessions(request).pop(sid, None)


def user_for_token(request: Request, token: str) -> User | None:
    """The API's own check (cache, expiry, revocation); None for a bad token."""
    try:
        return current_user(request, HTTPAuthorizationCredentials(scheme="Bearer", credentials=token))
    except HTTPException:
        return None


def signed_in(request: Request) -> tuple[User, Session]:
    s = session_of(request)
    user = user_for_token(request, s.token) if s else None
    if s is None or user is None:
        end_session(request)
        raise NotSignedIn()
    return user, s


def check_csrf(request: Request, session: Session, sent: str | None) -> None:
    sent = sent or request.headers.get(CSRF_HEADER) or ""
    if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
        raise HTTPException(403, "CSRF check failed: reload the page and try again")


def cookie_args(request: Request) -> dict:
    return {"httponly": True, "samesite": "strict", "secure": request.url.scheme == "https", "path": "/"}

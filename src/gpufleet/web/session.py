"""Sign in (a token -> a session cookie), sign out, and `/`."""

from __future__ import annotations

import hmac
import secrets

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from gpufleet.web.auth import (
    COOKIE, LOGIN_COOKIE, check_csrf, cookie_args, end_session, new_session, signed_in, user_for_token,
)
from gpufleet.web.render import SECURITY_HEADERS, env, form

router = APIRouter()


def _safe_next(target: str | None) -> str:
    """Only a path of this site (never //host or a scheme): no open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/queue"
    return target


@router.get("/")
def home(request: Request):
    signed_in(request)
    return RedirectResponse("/queue", status_code=303)


def _login_page(request: Request, error: str = "", status: int = 200) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    html = env.get_template("login.html").render(
        request=request, error=error, login_csrf=token, next=_safe_next(request.query_params.get("next")))
    resp = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
    resp.set_cookie(LOGIN_COOKIE, token, max_age=3600, **cookie_args(request))
    return resp


@router.get("/login")
def login_form(request: Request):
    return _login_page(request)


@router.post("/login")
async def login(request: Request):
    data = await form(request)
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(data.get("csrf", "").encode(), expected.encode()):
        return _login_page(request, "the sign-in form expired: try again", 403)
    token = data.get("token", "").strip()
    if not token or user_for_token(request, token) is None:
        return _login_page(request, "token: unknown, revoked or expired", 401)
    end_session(request)  # a fresh id at every sign-in (no session fixation)
    resp = RedirectResponse(_safe_next(data.get("next")), status_code=303)
    resp.set_cookie(COOKIE, new_session(request, token), **cookie_args(request))
    resp.delete_cookie(LOGIN_COOKIE, path="/")
    return resp


@router.post("/logout")
async def logout(request: Request):
    _, session = signed_in(request)
    check_csrf(request, session, (await form(request)).get("csrf"))
    end_session(request)
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/")
    return resp

"""Templates, filters, and the small helpers every dashboard page uses."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from gpufleet.domain import Conflict, Forbidden, IllegalTransition, NotFound, User, ValidationError
from gpufleet.domain.units import format_duration
from gpufleet.web.auth import Session

HERE = Path(__file__).parent
NAV = [("queue", "/queue", "Queue"), ("nodes", "/nodes", "Nodes"), ("bookings", "/bookings", "Bookings"),
       ("usage", "/usage", "Usage"), ("health", "/health", "Health"), ("performance", "/performance", "Performance")]


def _when(ts: float | None) -> str:
    if ts is None:
        return "—"
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _short(ts: float | None) -> str:
    if ts is None:
        return "—"
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%m-%d %H:%M")


def _dur(seconds: float | None) -> str:
    return "—" if seconds is None else (format_duration(max(0, int(seconds))) or "0s")


env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                  trim_blocks=True, lstrip_blocks=True)
env.filters.update(when=_when, short=_short, dur=_dur)
env.globals.update(NAV=NAV)


# no inline script, no framing, forms post only here (inline style attributes draw the bars)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
}


def page(request: Request, template: str, user: User, session: Session, status: int = 200,
         **data: Any) -> HTMLResponse:
    flash, session.flash = session.flash, []
    html = env.get_template(template).render(
        request=request, user=user, csrf=session.csrf, flash=flash, now=request.app.state.ctx.clock(),
        query=lambda **kw: _query(request, **kw), **data)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def fragment(template: str, **data: Any) -> HTMLResponse:
    return HTMLResponse(env.get_template(template).render(**data), headers=SECURITY_HEADERS)


def _query(request: Request, **changes: Any) -> str:
    """This page's query string with `changes` applied (None removes a key)."""
    params = dict(request.query_params)
    for k, v in changes.items():
        if v is None or v == "":
            params.pop(k, None)
        else:
            params[k] = str(v)
    return "?" + urlencode(params) if params else "?"


def back(to: str, session: Session, kind: str = "", text: str = "") -> RedirectResponse:
    if text:
        session.flash.append((kind or "ok", text))
    return RedirectResponse(to, status_code=303)


async def form(request: Request) -> dict[str, str]:
    """An urlencoded form body (the only kind the dashboard sends), last value wins."""
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}


_STATUS_OF = {"ValidationError": 422, "Forbidden": 403, "NotFound": 404, "Conflict": 409,
              "IllegalTransition": 409}


def failure(request: Request, user: User, session: Session, e: Exception) -> HTMLResponse:
    """A domain error as a page: 422 names the field (`field: reason`), like the API and CLI."""
    status = _STATUS_OF.get(type(e).__name__, 400)
    text = f"{e.field}: {e.message}" if hasattr(e, "field") else str(e)
    return page(request, "error.html", user, session, status=status, error=text,
                back=request.headers.get("referer") or "/queue")


DOMAIN_ERRORS = (ValidationError, Forbidden, NotFound, Conflict, IllegalTransition)

"""The web dashboard: server-rendered pages at `/` over the same services as the API.

`mount(app)` adds the pages, the sign-in and the vendored static files to the API's FastAPI
app (same port, same sockets, same tokens)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from gpufleet.web.auth import NotSignedIn
from gpufleet.web.render import HERE


def mount(app: FastAPI) -> None:
    from gpufleet.web import bookings, nodes, performance, queue, reports, session

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for module in (session, queue, nodes, bookings, reports, performance):
        app.include_router(module.router, include_in_schema=False)

    @app.exception_handler(NotSignedIn)
    async def _sign_in(request: Request, _: NotSignedIn):
        if request.method != "GET" or request.headers.get("hx-request"):
            return RedirectResponse("/login", status_code=303, headers={"HX-Redirect": "/login"})
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={_quote(target)}", status_code=303)


def _quote(s: str) -> str:
    from urllib.parse import quote
    return quote(s, safe="")

"""The FastAPI application: routers under /api/v1, errors that name the field, /metrics."""

from __future__ import annotations

from typing import Callable

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from gpufleet import __version__
from gpufleet.api.deps import metrics_reader
from gpufleet.api.limits import DEFAULT_MAX_BODY_BYTES, BodySizeLimit
from gpufleet.api.routers import accounts, bookings, health, jobs, nodes, schedules, tenants
from gpufleet.api.routers import results, usage
from gpufleet.api.routers import hardware
from gpufleet.api.routers import artifacts, groups
from gpufleet.api.routers import sessions
from gpufleet.domain import Conflict, Forbidden, IllegalTransition, NotFound, ValidationError
from gpufleet.services import Ctx

API_PREFIX = "/api/v1"


def create_app(ctx: Ctx, metrics: Callable[[], tuple[bytes, str]] | None = None,
               health_service: object | None = None, schedule_service: object | None = None,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, session_idle_s: int | None = None,
               metrics_token: str | None = None) -> FastAPI:
    """The API over the services. Health and schedule routes answer 503 when their service is not
    given (e.g. a bare test app). Request bodies over `max_body_bytes` get 413. /metrics wants
    `metrics_token` or an admin's token when a token is given (metrics_reader)."""
    app = FastAPI(title="gpufleet", version=__version__,
                  description="Control plane for a GPU lab", openapi_url="/openapi.json")
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes,
                       larger={f"{API_PREFIX}/results/import": results.MAX_IMPORT_BYTES})
    app.state.ctx = ctx
    app.state.token_cache = {}
    app.state.peer_cache = {}
    ctx.login_caches = [app.state.token_cache, app.state.peer_cache]  # emptied on revoke / user set
    app.state.health = health_service
    app.state.schedules = schedule_service
    app.state.session_idle_s = session_idle_s or sessions.DEFAULT_IDLE_S  # gpufleet shell/attach/exec
    for r in (jobs.router, nodes.router, tenants.router, accounts.router, bookings.router, health.router,
              schedules.router, usage.router, results.router, hardware.router, artifacts.router,
              groups.router, sessions.router):
        app.include_router(r, prefix=API_PREFIX)
    _errors(app)
    from gpufleet.web import mount as mount_dashboard

    mount_dashboard(app)  # the web dashboard at / (same port, same auth)

    @app.get("/healthz", include_in_schema=False)
    def healthz():
        accounts = ctx.accounts
        return {"ok": True, "version": __version__, "executor": ctx.executor.name,
                "jobs_run_as": "owner" if accounts and accounts.run_as_owner else "server",
                "notice": accounts.notice if accounts else None}

    if metrics is not None:
        @app.get("/metrics", include_in_schema=False, dependencies=[Depends(metrics_reader(metrics_token))])
        def prometheus_metrics():
            body, content_type = metrics()
            return Response(body, media_type=content_type)

    return app


def _field_error(status: int, field: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={
        "detail": [{"loc": ["body", field], "msg": message, "type": "value_error"}],
        "field": field, "message": message,
    })


_STATUS = {NotFound: 404, Forbidden: 403, Conflict: 409, IllegalTransition: 409}


def _errors(app: FastAPI) -> None:
    @app.exception_handler(ValidationError)
    async def _validation(_: Request, e: ValidationError):
        return _field_error(422, e.field, e.message)

    async def _plain(_: Request, e: Exception):
        return JSONResponse(status_code=_STATUS[type(e)], content={"detail": str(e)})

    for exc in _STATUS:
        app.add_exception_handler(exc, _plain)

"""httpx client of /api/v1. Finds the server like the CLI does: GPUFLEET_URL / GPUFLEET_TOKEN,
else the files the server wrote in GPUFLEET_HOME (server.json, admin.token)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import httpx

from gpufleet.api.schemas import (
    BookingOut, CancelOut, JobDetail, JobOut, NodeOut, TenantOut, TokenOut, WhoAmI,
)

DEFAULT_URL = "http://127.0.0.1:8765"


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(f"{field}: {message}" if field else message)
        self.status = status
        self.message = message
        self.field = field


class ServerUnreachable(Exception):
    pass


@dataclass(frozen=True)
class LogPage:
    data: bytes
    offset: int
    complete: bool
    state: str
    note: str


def _home() -> Path:
    env = os.environ.get("GPUFLEET_HOME")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("gpufleet"))


def find_server() -> tuple[str, str | None]:
    """(url, token) from the environment, else from the files of a server on this machine."""
    home = _home()
    url = os.environ.get("GPUFLEET_URL")
    if not url:
        try:
            url = json.loads((home / "server.json").read_text())["url"]
        except (OSError, ValueError, KeyError):
            url = DEFAULT_URL
    token = os.environ.get("GPUFLEET_TOKEN")
    if not token:
        try:
            token = (home / "admin.token").read_text().strip()
        except OSError:
            token = None
    return url.rstrip("/"), token


class Client:
    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, timeout: float = 30.0):
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=timeout)

    @classmethod
    def from_env(cls, timeout: float = 30.0) -> "Client":
        url, token = find_server()
        return cls(url, token, timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method: str, path: str, **kw) -> httpx.Response:
        try:
            r = self._http.request(method, path, **kw)
        except httpx.TransportError as e:
            raise ServerUnreachable(f"cannot reach gpufleet at {self.url} ({e.__class__.__name__}); "
                                    "is `gpufleet serve` running? (set GPUFLEET_URL)") from None
        if r.status_code >= 400:
            raise _error(r)
        return r

    # jobs
    def submit(self, spec: dict[str, Any]) -> JobOut:
        return JobOut.model_validate(self._call("POST", "/jobs", json=spec).json())

    def submit_many(self, specs: Sequence[dict[str, Any]]) -> list[JobOut]:
        return [JobOut.model_validate(j) for j in self._call("POST", "/jobs/batch", json=list(specs)).json()]

    def jobs(self, state: Sequence[str] | None = None, tenant: str | None = None,
             all: bool = False, limit: int = 1000) -> list[JobOut]:
        params: dict[str, Any] = {"all": all, "limit": limit}
        if state:
            params["state"] = list(state)
        if tenant:
            params["tenant"] = tenant
        return [JobOut.model_validate(j) for j in self._call("GET", "/jobs", params=params).json()]

    def job(self, job_id: int) -> JobDetail:
        return JobDetail.model_validate(self._call("GET", f"/jobs/{job_id}").json())

    def cancel(self, job_id: int) -> CancelOut:
        return CancelOut.model_validate(self._call("POST", f"/jobs/{job_id}/cancel").json())

    def logs(self, job_id: int, offset: int = 0, rank: int = 0) -> LogPage:
        r = self._call("GET", f"/jobs/{job_id}/logs", params={"offset": offset, "rank": rank})
        h = r.headers
        return LogPage(r.content, int(h.get("X-Gpufleet-Offset", offset)),
                       h.get("X-Gpufleet-Complete") == "1", h.get("X-Gpufleet-State", ""),
                       h.get("X-Gpufleet-Note", ""))

    # nodes
    def nodes(self) -> list[NodeOut]:
        return [NodeOut.model_validate(n) for n in self._call("GET", "/nodes").json()]

    def node(self, name: str) -> NodeOut:
        return NodeOut.model_validate(self._call("GET", f"/nodes/{name}").json())

    def set_node(self, name: str, action: str, reason: str = "") -> NodeOut:
        """action: drain | resume | down"""
        return NodeOut.model_validate(self._call("POST", f"/nodes/{name}/{action}", json={"reason": reason}).json())

    # tenants, tokens
    def tenants(self) -> list[TenantOut]:
        return [TenantOut.model_validate(t) for t in self._call("GET", "/tenants").json()]

    def put_tenant(self, name: str, create: bool = False, **fields: Any) -> TenantOut:
        body = {k: v for k, v in fields.items() if v is not None}
        r = self._call("POST" if create else "PATCH", f"/tenants/{name}", json=body)
        return TenantOut.model_validate(r.json())

    def create_token(self, user: str, tenant: str, admin: bool = False) -> TokenOut:
        r = self._call("POST", "/tokens", json={"user": user, "tenant": tenant, "admin": admin})
        return TokenOut.model_validate(r.json())

    def whoami(self) -> WhoAmI:
        return WhoAmI.model_validate(self._call("GET", "/whoami").json())

    # bookings
    def book(self, **fields: Any) -> BookingOut:
        body = {k: v for k, v in fields.items() if v is not None}
        return BookingOut.model_validate(self._call("POST", "/bookings", json=body).json())

    def bookings(self) -> list[BookingOut]:
        return [BookingOut.model_validate(b) for b in self._call("GET", "/bookings").json()]

    def unbook(self, booking_id: int) -> None:
        self._call("DELETE", f"/bookings/{booking_id}")

    # generic access for routers mounted by other modules (health, schedules)
    def get(self, path: str, **params: Any) -> Any:
        return self._call("GET", path, params=params).json()

    def post(self, path: str, body: Any = None) -> Any:
        r = self._call("POST", path, json=body)
        return r.json() if r.content else None

    def delete(self, path: str) -> None:
        self._call("DELETE", path)


def _error(r: httpx.Response) -> ApiError:
    try:
        body = r.json()
    except ValueError:
        return ApiError(r.status_code, r.text or r.reason_phrase)
    if isinstance(body, dict) and body.get("field"):
        return ApiError(r.status_code, body.get("message", ""), body["field"])
    detail = body.get("detail") if isinstance(body, dict) else body
    if isinstance(detail, list) and detail:  # FastAPI/pydantic validation errors
        first = detail[0]
        loc = []
        for x in first.get("loc", []):
            if x in ("body", "query", "path"):
                continue
            if isinstance(x, int) or "[" in str(x):  # pydantic's union branch / list index
                break
            loc.append(str(x))
        return ApiError(r.status_code, first.get("msg", ""), ".".join(loc) or None)
    return ApiError(r.status_code, str(detail))

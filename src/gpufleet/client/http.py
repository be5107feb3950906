"""httpx client of /api/v1. Finds the server like the CLI does (see `locate_server`): a token over
TCP (GPUFLEET_URL / GPUFLEET_TOKEN, or the files the server wrote in GPUFLEET_HOME), or, with no
token, the server's Unix socket on this host, where the kernel tells the server who calls."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Sequence

import httpx

from gpufleet.api.schemas import (
    BookingOut, CancelOut, JobDetail, JobOut, NodeOut, TenantOut, TokenInfoOut, TokenOut, UserOut, WhoAmI,
)
from gpufleet.api.usage_schemas import UsageOut

DEFAULT_URL = "http://127.0.0.1:8765"
SUBMIT_RETRIES = 3  # after a connection error a submission is sent again, with the same key
RETRY_PAUSE_S = 0.5
PAGE_MAX = 1000  # the largest page the server gives (api/params.py MAX_PAGE)


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
    attempt: int | None = None  # which run the data is of


def _home() -> Path:
    env = os.environ.get("GPUFLEET_HOME")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("gpufleet"))


WELL_KNOWN_SOCKET = "/run/gpufleet/gpufleet.sock"  # a root server's socket, for every user of the host
SOCKET_URL = "http://gpufleet.sock"  # the URL of requests over a Unix socket (the host is not used)


@dataclass(frozen=True)
class ServerAddress:
    url: str
    token: str | None = None
    socket: str | None = None  # a Unix socket: the server knows the caller by its uid (no token)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _is_socket(path: str | Path) -> bool:
    import stat

    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def locate_server() -> ServerAddress:
    """Where the server is and how to authenticate, in this order: GPUFLEET_SOCKET; GPUFLEET_TOKEN
    (over GPUFLEET_URL or the home's server.json); GPUFLEET_URL (with the home's admin.token when
    readable); the home's socket (<GPUFLEET_HOME>/gpufleet.sock); the home's admin.token; the
    well-known socket of a root server (/run/gpufleet/gpufleet.sock); else the default URL."""
    home = _home()
    token = os.environ.get("GPUFLEET_TOKEN") or None
    if os.environ.get("GPUFLEET_SOCKET"):
        return ServerAddress(SOCKET_URL, token, os.environ["GPUFLEET_SOCKET"])
    url = os.environ.get("GPUFLEET_URL")
    if not url:
        try:
            url = json.loads((home / "server.json").read_text())["url"]
        except (OSError, ValueError, KeyError, TypeError):
            url = None
    if token or os.environ.get("GPUFLEET_URL"):
        return ServerAddress((url or DEFAULT_URL).rstrip("/"), token or _read(home / "admin.token"))
    if _is_socket(home / "gpufleet.sock"):
        return ServerAddress(SOCKET_URL, None, str(home / "gpufleet.sock"))
    admin = _read(home / "admin.token")
    if admin or not _is_socket(WELL_KNOWN_SOCKET):
        return ServerAddress((url or DEFAULT_URL).rstrip("/"), admin)
    return ServerAddress(SOCKET_URL, None, WELL_KNOWN_SOCKET)


def find_server() -> tuple[str, str | None]:
    """(url, token) as `locate_server` finds them (for callers that only speak TCP)."""
    a = locate_server()
    return a.url, a.token


class Client:
    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, timeout: float = 30.0,
                 socket: str | None = None):
        self.url = url.rstrip("/")
        self.socket = socket
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        transport = httpx.HTTPTransport(uds=socket) if socket else None
        self._http = httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=timeout,
                                  transport=transport)

    @classmethod
    def from_env(cls, timeout: float = 30.0) -> "Client":
        a = locate_server()
        return cls(a.url, a.token, timeout, socket=a.socket)

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
            where = f"the socket {self.socket}" if self.socket else self.url
            raise ServerUnreachable(f"cannot reach gpufleet at {where} ({e.__class__.__name__}); "
                                    "is `gpufleet serve` running? (set GPUFLEET_URL)") from None
        if r.status_code >= 400:
            raise _error(r)
        return r

    # jobs
    def submit(self, spec: dict[str, Any], idempotency_key: str | None = None) -> JobOut:
        """Submit a job. It carries an Idempotency-Key (a fresh uuid4 unless given) and is sent
        again with the same key after a connection error, so a retry never makes a second job."""
        return JobOut.model_validate(self._submit("/jobs", spec, idempotency_key).json())

    def submit_many(self, specs: Sequence[dict[str, Any]], idempotency_key: str | None = None) -> list[JobOut]:
        r = self._submit("/jobs/batch", list(specs), idempotency_key)
        return [JobOut.model_validate(j) for j in r.json()]

    def _submit(self, path: str, body: Any, key: str | None) -> httpx.Response:
        headers = {"Idempotency-Key": key or str(uuid.uuid4())}
        for attempt in range(SUBMIT_RETRIES + 1):
            try:
                return self._call("POST", path, json=body, headers=headers)
            except ServerUnreachable:
                if attempt == SUBMIT_RETRIES:
                    raise
                time.sleep(RETRY_PAUSE_S * (attempt + 1))  # the server may be restarting
        raise AssertionError("unreachable")

    def jobs(self, state: Sequence[str] | None = None, tenant: str | None = None,
             all: bool = False, limit: int = 1000) -> list[JobOut]:
        """Newest first, up to `limit`, following the server's pages (`Link: rel="next"`)."""
        params: dict[str, Any] = {"all": all}
        if state:
            params["state"] = list(state)
        if tenant:
            params["tenant"] = tenant
        return [JobOut.model_validate(j) for j in self._pages("/jobs", params, limit)]

    def _pages(self, path: str, params: dict[str, Any], limit: int) -> list[Any]:
        out: list[Any] = []
        after = None
        while len(out) < limit:
            page = {**params, "limit": min(PAGE_MAX, limit - len(out))} | ({"after": after} if after else {})
            r = self._call("GET", path, params=page)
            out.extend(r.json())
            nxt = r.links.get("next", {}).get("url")
            if not nxt:
                break
            after = httpx.URL(nxt).params.get("after")
        return out

    def job(self, job_id: int) -> JobDetail:
        return JobDetail.model_validate(self._call("GET", f"/jobs/{job_id}").json())

    def open_pty(self, job_id: int, cmd: Sequence[str] = (), **options: Any):
        """A terminal in running job `job_id` (client/pty.py: PtyConnection; options: rows, cols,
        term, tty, end_job, idle_timeout)."""
        from gpufleet.client.pty import PtyConnection

        return PtyConnection.open(self, job_id, cmd, **options)

    def cancel(self, job_id: int) -> CancelOut:
        return CancelOut.model_validate(self._call("POST", f"/jobs/{job_id}/cancel").json())

    def logs(self, job_id: int, offset: int = 0, rank: int = 0, attempt: int | None = None) -> LogPage:
        """One page of a rank's output of attempt `attempt` (None: the latest run)."""
        params = {"offset": offset, "rank": rank} | ({"attempt": attempt} if attempt is not None else {})
        r = self._call("GET", f"/jobs/{job_id}/logs", params=params)
        h = r.headers
        served = h.get("X-Gpufleet-Attempt", "")
        return LogPage(r.content, int(h.get("X-Gpufleet-Offset", offset)),
                       h.get("X-Gpufleet-Complete") == "1", h.get("X-Gpufleet-State", ""),
                       h.get("X-Gpufleet-Note", ""), int(served) if served.isdigit() else None)

    def info(self) -> dict[str, Any]:
        """/healthz: version, engine, whom jobs run as, and a notice when they are not isolated."""
        return self._call("GET", self.url + "/healthz").json()

    # nodes
    def nodes(self) -> list[NodeOut]:
        return [NodeOut.model_validate(n) for n in self._call("GET", "/nodes").json()]

    def node(self, name: str) -> NodeOut:
        return NodeOut.model_validate(self._call("GET", f"/nodes/{name}").json())

    def node_hardware(self, name: str) -> dict:
        """The node's hardware identity (NVML) and its changes over time."""
        return self._call("GET", f"/nodes/{name}/hardware").json()

    def job_perf(self, job_id: int, samples: bool = False) -> list[dict]:
        """A perf job's runs: perf_valid, reason, prolog/epilog checks, conditions (and samples)."""
        return self._call("GET", f"/jobs/{job_id}/perf", params={"samples": samples}).json()

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

    def create_token(self, user: str, tenant: str | None = None, admin: bool | None = None,
                     expires: str | None = None, note: str = "") -> TokenOut:
        body = {"user": user, "tenant": tenant, "admin": admin, "expires": expires, "note": note}
        r = self._call("POST", "/tokens", json={k: v for k, v in body.items() if v is not None})
        return TokenOut.model_validate(r.json())

    def tokens(self) -> list[TokenInfoOut]:
        return [TokenInfoOut.model_validate(t) for t in self._call("GET", "/tokens").json()]

    def revoke_token(self, token_id: int) -> TokenInfoOut:
        return TokenInfoOut.model_validate(self._call("POST", f"/tokens/{token_id}/revoke").json())

    def users(self) -> list[UserOut]:
        return [UserOut.model_validate(u) for u in self._call("GET", "/users").json()]

    def set_user(self, name: str, tenant: str | None = None, admin: bool | None = None) -> UserOut:
        body = {k: v for k, v in {"tenant": tenant, "admin": admin}.items() if v is not None}
        return UserOut.model_validate(self._call("PATCH", f"/users/{name}", json=body).json())

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

    def approve_booking(self, booking_id: int, approve: bool = True) -> BookingOut:
        """Admin: approve (or, approve=False, reject) a requested booking."""
        r = self._call("POST", f"/bookings/{booking_id}/{'approve' if approve else 'reject'}")
        return BookingOut.model_validate(r.json())

    # usage accounting
    def usage(self, start: str | None = None, end: str | None = None, by: Sequence[str] | None = None,
              tenant: str | None = None) -> UsageOut:
        """GPU-hours in [start, end) grouped by `by` (tenant, user, gpu_model, kind, node)."""
        params = {k: v for k, v in {"from": start, "to": end, "by": list(by or ()) or None,
                                    "tenant": tenant}.items() if v is not None}
        return UsageOut.model_validate(self._call("GET", "/usage", params=params).json())

    def usage_export(self, start: str | None = None, end: str | None = None, tenant: str | None = None,
                     format: str = "sacct") -> str:
        """The period's jobs as `sacct --parsable2` text."""
        params = {k: v for k, v in {"from": start, "to": end, "tenant": tenant, "format": format}.items()
                  if v is not None}
        return self._call("GET", "/usage/export", params=params).text

    # results
    def results_import(self, data: bytes) -> int:
        """JSON Lines measurements (with provenance fields); all lines or none."""
        r = self._call("POST", "/results/import", content=data,
                       headers={"Content-Type": "application/x-ndjson"}, timeout=600)
        return int(r.json()["imported"])

    def results(self, path: str = "", **params: Any) -> Any:
        """GET /results[/<path>] (list, show, trend, compare, regressions, outliers)."""
        clean = {k: v for k, v in params.items() if v is not None and v is not False}
        return self._call("GET", "/results" + (f"/{path}" if path else ""), params=clean, timeout=600).json()

    # artifacts
    def artifacts(self, job_id: int, attempt: int | None = None) -> list[dict[str, Any]]:
        params = {"attempt": attempt} if attempt is not None else {}
        return self._call("GET", f"/jobs/{job_id}/artifacts", params=params).json()["artifacts"]

    def download_artifact(self, job_id: int, path: str, out: BinaryIO, attempt: int | None = None,
                          rank: int | None = None) -> dict[str, Any]:
        """Write one artifact's bytes to `out`, checking them against the sha256 the server has;
        returns {size, sha256, attempt, rank}. Raises ApiError when they differ."""
        params: dict[str, Any] = {"path": path}
        params |= {k: v for k, v in (("attempt", attempt), ("rank", rank)) if v is not None}
        h, size = hashlib.sha256(), 0
        try:
            with self._http.stream("GET", f"/jobs/{job_id}/artifacts/file", params=params, timeout=600) as r:
                if r.status_code >= 400:
                    r.read()
                    raise _error(r)
                for chunk in r.iter_bytes(1 << 20):
                    h.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                want = r.headers.get("X-Checksum-Sha256", "")
                meta = {"size": size, "sha256": h.hexdigest(), "attempt": int(r.headers.get("X-Gpufleet-Attempt", 0)),
                        "rank": int(r.headers.get("X-Gpufleet-Rank", 0))}
        except httpx.TransportError as e:
            raise ServerUnreachable(f"cannot reach gpufleet at {self.url} ({e.__class__.__name__})") from None
        if want and want != meta["sha256"]:
            raise ApiError(502, f"{path}: received sha256 {meta['sha256']}, the server recorded {want}")
        return meta

    def artifacts_gc(self) -> dict[str, int]:
        return self._call("POST", "/artifacts/gc").json()

    def artifact_policies(self) -> list[dict[str, Any]]:
        return self._call("GET", "/artifacts/policies").json()["policies"]

    def set_artifact_policy(self, tenant: str, max_bytes: str | int | None, retention: str | None) -> dict[str, Any]:
        body = {k: v for k, v in (("max_bytes", max_bytes), ("retention", retention)) if v is not None}
        return self._call("PUT", f"/artifacts/policies/{tenant}", json=body).json()

    # job groups (matrices, arrays)
    def submit_group(self, body: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        return self._submit("/groups", body, idempotency_key).json()

    def group(self, group_id: int) -> dict[str, Any]:
        return self._call("GET", f"/groups/{group_id}").json()

    def groups(self, limit: int = 100) -> list[dict[str, Any]]:
        return self._call("GET", "/groups", params={"limit": limit}).json()["groups"]

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

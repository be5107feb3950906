"""WebSocket /api/v1/jobs/{id}/pty: a terminal in a running job's allocation, relayed.

The server starts the process (services/sessions.py: the job's owner or an admin only; the
engine runs it on the job's node, as its account, with its environment) and relays bytes
between the client's WebSocket and the process's pty:

    client -> server   binary: keystrokes (written to the pty as they are)
                       text:   {"resize": [rows, cols]}           (TIOCSWINSZ: SIGWINCH inside)
    server -> client   binary: terminal output
                       text:   {"exit": CODE, "reason": "..."}   last message, then close
                               {"error": "...", "status": 404|403|422|401, "field": ...}  then close

Query: cmd (repeated; none: the account's shell), rows, cols, term, tty (false: a raw pty, output
as written), end_job (true for `gpufleet shell`: when the process ends the job ends, and a client
that goes away ends both), idle_timeout (no input for this long: a warning line, then the
session ends; default the server's `session_idle_timeout`).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from fastapi import APIRouter, HTTPException, Query, WebSocket
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect, WebSocketState

from gpufleet.api.deps import connection_user
from gpufleet.domain import Forbidden, GpufleetError, NotFound, ValidationError, parse_duration
from gpufleet.services import sessions as svc

router = APIRouter(prefix="/jobs", tags=["sessions"])
DEFAULT_IDLE_S = 1800
WATCH_S = 0.2  # how often the relay checks the process, idleness and (every JOB_CHECK_S) the job
JOB_CHECK_S = 1.0
READ_CHUNK = 65536
IDLE = 129  # the exit code of a session ended for idleness (as a hung-up terminal: 128 + SIGHUP)


@router.websocket("/{job_id}/pty")
async def pty(websocket: WebSocket, job_id: int, cmd: list[str] = Query([]), rows: int = 24, cols: int = 80,
              term: str = "xterm-256color", tty: bool = True, end_job: bool = False,
              idle_timeout: str | None = None):
    await websocket.accept()
    ctx = websocket.app.state.ctx
    try:
        user = await run_in_threadpool(connection_user, websocket)
        idle_s = parse_duration(idle_timeout, "idle_timeout") or websocket.app.state.session_idle_s
        proc = await run_in_threadpool(svc.open_session, ctx, user, job_id, cmd, rows=rows, cols=cols,
                                       term=term[:64], tty_mode=tty)
    except (HTTPException, GpufleetError) as e:
        await _refuse(websocket, e)
        return
    try:
        code, reason = await Relay(websocket, proc, idle_s, lambda: svc.job_state(ctx, job_id)).run()
    finally:
        proc.close()
    if end_job:
        why = f"session ended: {reason}" if reason else f"session ended (exit {code})"
        await run_in_threadpool(svc.end_job, ctx, user, job_id, why)
    if websocket.client_state is WebSocketState.CONNECTED:
        try:
            await websocket.send_text(json.dumps({"exit": code, "reason": reason}))
            await websocket.close()
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass


async def _refuse(websocket: WebSocket, e: Exception) -> None:
    if isinstance(e, HTTPException):
        status, body = e.status_code, {"error": str(e.detail)}
    elif isinstance(e, ValidationError):
        status, body = 422, {"error": e.message, "field": e.field}
    else:
        status = 404 if isinstance(e, NotFound) else 403 if isinstance(e, Forbidden) else 409
        body = {"error": str(e)}
    await websocket.send_text(json.dumps({**body, "status": status}))
    await websocket.close(code=4000 + status)


def span(seconds: float) -> str:
    """90 -> 1m30s, 1800 -> 30m, 7260 -> 2h1m: as people write durations (and --idle-timeout takes)."""
    s = int(seconds)
    h, m, sec = s // 3600, s % 3600 // 60, s % 60
    parts = [f"{h}h" if h else "", f"{m}m" if m else "", f"{sec}s" if sec and not h else ""]
    return "".join(parts) or "0s"


class Relay:
    """Bytes both ways until the process ends, the client goes, the job ends or nobody types."""

    def __init__(self, ws: WebSocket, proc: Any, idle_s: float, job_state):
        self.ws, self.proc, self.idle_s, self.job_state = ws, proc, idle_s, job_state
        self.warn_s = min(60.0, max(1.0, idle_s / 2))  # the warning comes this long before the end
        self.last_input = time.monotonic()
        self.out: asyncio.Queue[bytes] = asyncio.Queue()
        self.ended: tuple[int, str] | None = None  # why the relay ended it (idle, job over), set first

    async def run(self) -> tuple[int, str]:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.proc.fd, self._readable)
        tasks = [asyncio.ensure_future(c) for c in (self._pump_out(), self._pump_in(), self._watch())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            results = [t.result() for t in done]  # several at once: the most telling one wins
            result = next((r for r in results if r == "client gone"), None) \
                or next((r for r in results if isinstance(r, tuple)), results[0])
        finally:
            loop.remove_reader(self.proc.fd)
            for t in tasks:
                t.cancel()
        if result == "client gone":
            await run_in_threadpool(self.proc.terminate)
            return self.proc.exit_code() or 129, "the client went away"
        code, reason = result if isinstance(result, tuple) else self.ended or (None, "")
        if code is None:  # the output ended (EOF): the process has ended or is about to
            try:
                code = await run_in_threadpool(self.proc.wait, 2.0)
            except Exception:
                await run_in_threadpool(self.proc.terminate)
                code = self.proc.exit_code() or 129
        await self._flush()
        return code, reason

    def _readable(self) -> None:
        try:
            data = os.read(self.proc.fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO: every holder of the terminal is gone
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self.proc.fd)
        self.out.put_nowait(data)

    async def _pump_out(self) -> str:
        while True:
            data = await self.out.get()
            if not data:
                return "eof"
            await self.ws.send_bytes(data)

    async def _flush(self) -> None:
        """What is still in the queue and in the pty once the process has ended."""
        chunks = []
        while not self.out.empty():
            chunks.append(self.out.get_nowait())
        while True:
            try:
                data = os.read(self.proc.fd, READ_CHUNK)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        data = b"".join(chunks)
        if data and self.ws.client_state is WebSocketState.CONNECTED:
            try:
                await self.ws.send_bytes(data)
            except (WebSocketDisconnect, RuntimeError, OSError):
                pass

    async def _pump_in(self) -> str:
        while True:
            msg = await self.ws.receive()
            if msg["type"] == "websocket.disconnect":
                return "client gone"
            if msg.get("bytes"):
                self.last_input = time.monotonic()
                await self._write(msg["bytes"])
            elif msg.get("text"):
                try:
                    rows, cols = json.loads(msg["text"])["resize"]
                    self.proc.resize(int(rows), int(cols))
                except (ValueError, KeyError, TypeError, OSError):
                    pass  # a bad control message is ignored, as a terminal ignores a bad escape

    async def _write(self, data: bytes) -> None:
        while data:
            try:
                n = os.write(self.proc.fd, data)
            except BlockingIOError:  # the pty's input buffer is full: the process is not reading
                await asyncio.sleep(0.01)
                continue
            except OSError:
                return
            data = data[n:]

    async def _watch(self) -> tuple[int | None, str]:
        warned = False
        next_job_check = time.monotonic() + JOB_CHECK_S
        while True:
            await asyncio.sleep(WATCH_S)
            code = self.proc.exit_code()
            if code is not None:
                return code, ""
            now = time.monotonic()
            idle = now - self.last_input
            if idle >= self.idle_s + self.warn_s:
                await self._say(f"gpufleet: no input for {span(self.idle_s + self.warn_s)}: this session ends now")
                self.ended = (IDLE, f"idle for {span(self.idle_s + self.warn_s)}")
                await run_in_threadpool(self.proc.terminate)
                return self.ended
            if idle >= self.idle_s and not warned:
                warned = True
                await self._say(f"gpufleet: no input for {span(self.idle_s)}: this session ends in "
                                f"{span(self.warn_s)} unless you type something")
            elif idle < self.idle_s:
                warned = False
            if now >= next_job_check:
                next_job_check = now + JOB_CHECK_S
                state = await run_in_threadpool(self.job_state)
                if state.terminal:
                    await self._say(f"gpufleet: the job has ended ({state.value}): so does this session")
                    self.ended = (129, f"the job ended ({state.value})")
                    await run_in_threadpool(self.proc.terminate)
                    return self.ended

    async def _say(self, line: str) -> None:
        await self.ws.send_bytes(f"\r\n{line}\r\n".encode())

"""The client side of /api/v1/jobs/{id}/pty (api/routers/sessions.py): a WebSocket to a terminal
in a running job's allocation, over TCP (with the token) or the server's Unix socket (the kernel
says who calls). websocket-client's blocking socket: `fileno()` can be select()ed, `recv()`
returns one message."""

from __future__ import annotations

import json
import socket as socketlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence
from urllib.parse import urlencode, urlsplit

import websocket

from gpufleet.client.http import ApiError, ServerUnreachable

if TYPE_CHECKING:
    from gpufleet.client.http import Client


@dataclass(frozen=True)
class Output:
    data: bytes


@dataclass(frozen=True)
class Exited:
    code: int
    reason: str = ""


class PtyConnection:
    def __init__(self, ws: websocket.WebSocket):
        self.ws = ws

    @classmethod
    def open(cls, client: Client, job_id: int, cmd: Sequence[str] = (), *, rows: int = 24, cols: int = 80,
             term: str = "xterm-256color", tty: bool = True, end_job: bool = False,
             idle_timeout: str | None = None) -> PtyConnection:
        query: list[tuple[str, Any]] = [("cmd", c) for c in cmd]
        query += [("rows", rows), ("cols", cols), ("term", term), ("tty", str(tty).lower()),
                  ("end_job", str(end_job).lower())]
        if idle_timeout:
            query.append(("idle_timeout", idle_timeout))
        path = f"/api/v1/jobs/{int(job_id)}/pty?{urlencode(query)}"
        headers = [f"Authorization: Bearer {client.token}"] if client.token else []
        try:
            if client.socket:
                sock = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
                sock.connect(client.socket)
                ws = websocket.create_connection(f"ws://gpufleet.sock{path}", socket=sock, header=headers,
                                                 suppress_origin=True, enable_multithread=False)
            else:
                u = urlsplit(client.url)
                scheme = "wss" if u.scheme == "https" else "ws"
                ws = websocket.create_connection(f"{scheme}://{u.netloc}{u.path.rstrip('/')}{path}",
                                                 header=headers, suppress_origin=True)
        except (OSError, websocket.WebSocketException) as e:
            where = f"the socket {client.socket}" if client.socket else client.url
            raise ServerUnreachable(f"cannot open a terminal at {where} ({e})") from None
        ws.settimeout(None)
        conn = cls(ws)
        first = conn.recv()  # an error comes first, before any output
        conn._first = first
        return conn

    _first: Output | Exited | None = None

    def fileno(self) -> int:
        return self.ws.sock.fileno()

    def pending(self) -> bool:
        """A message already read (the first one) waits to be taken."""
        return self._first is not None

    def recv(self) -> Output | Exited:
        """The next output, or how it ended. Raises ApiError when the server refused."""
        if self._first is not None:
            first, self._first = self._first, None
            return first
        try:
            opcode, data = self.ws.recv_data()
        except (websocket.WebSocketConnectionClosedException, OSError):
            return Exited(255, "the connection to the server was lost")
        if opcode == websocket.ABNF.OPCODE_BINARY:
            return Output(data)
        if opcode == websocket.ABNF.OPCODE_TEXT:
            msg = json.loads(data)
            if "error" in msg:
                raise ApiError(int(msg.get("status", 400)), msg["error"], msg.get("field"))
            return Exited(int(msg.get("exit", 255)), msg.get("reason") or "")
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return Exited(255, "the server closed the session")
        return Output(b"")

    def send(self, data: bytes) -> None:
        self.ws.send_bytes(data)

    def resize(self, rows: int, cols: int) -> None:
        self.ws.send_text(json.dumps({"resize": [rows, cols]}))

    def close(self) -> None:
        try:
            self.ws.close()
        except (OSError, websocket.WebSocketException):
            pass


__all__ = ["Exited", "Output", "PtyConnection"]

"""A real local HTTP receiver (http.server in a thread) that records requests and answers JSON."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


Route = Callable[[Received], tuple[int, Any]]


@dataclass
class Receiver:
    routes: dict[tuple[str, str], Route] = field(default_factory=dict)  # (method, path prefix)
    requests: list[Received] = field(default_factory=list)

    def __enter__(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(size) if size else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                req = Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                receiver.requests.append(req)
                status, answer = receiver._answer(req)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _answer(self, req: Received) -> tuple[int, Any]:
        for (method, prefix), route in self.routes.items():
            if req.method == method and req.path.startswith(prefix):
                return route(req)
        return 200, {}

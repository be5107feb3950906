"""A cap on request body size (413), enforced while the body is read, so a client cannot make the
server buffer an unbounded body (Content-Length or chunked)."""

from __future__ import annotations

import json

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


class BodySizeLimit:
    """ASGI middleware: bodies over `max_bytes` get 413 before the application sees them."""

    def __init__(self, app, max_bytes: int = DEFAULT_MAX_BODY_BYTES, larger: dict[str, int] | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.larger = larger or {}  # path -> its own cap (e.g. a results import)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.larger.get(scope.get("path", ""), self.max_bytes)
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await self._reject(send, limit)
        seen = 0
        over = False

        async def counting_receive():
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # stop reading; the app's answer is replaced below
                    over = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def guarded_send(message):
            if not over:
                await send(message)
            elif message["type"] == "http.response.start":
                await self._reject(send, limit)

        await self.app(scope, counting_receive, guarded_send)

    async def _reject(self, send, limit: int):
        msg = f"the request body is larger than {limit} bytes"
        body = json.dumps({"detail": [{"loc": ["body"], "msg": msg, "type": "too_large"}],
                           "field": "body", "message": msg}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

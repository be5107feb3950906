"""Peer credentials of the local Unix socket into the ASGI scope.

Uvicorn does not put them there, so the server's one uvicorn `Server` (serving the TCP port and
the Unix socket in the same event loop) uses `PeerCredProtocol`: for a connection on an AF_UNIX
socket it reads SO_PEERCRED once, at connect, and every request of that connection carries it as
`scope["gpufleet.peer"] = Peer(pid, uid, gid)`. A TCP connection never has the key, whatever it
sends: the key is set by the transport, not by anything in the request."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.protocols.websockets.wsproto_impl import WSProtocol

PEER_KEY = "gpufleet.peer"


@dataclass(frozen=True, slots=True)
class Peer:
    pid: int
    uid: int
    gid: int


def peer_of(sock: socket.socket | None) -> Peer | None:
    """The kernel's credentials of the process at the other end of a Unix socket."""
    if sock is None or sock.family != socket.AF_UNIX or not hasattr(socket, "SO_PEERCRED"):
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return Peer(*struct.unpack("3i", raw))


class _WithPeer:
    """The app, with the connection's peer put into every HTTP request's scope."""

    def __init__(self, app: Any, peer: Peer):
        self.app, self.peer = app, peer

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") in ("http", "websocket"):
            scope[PEER_KEY] = self.peer
        await self.app(scope, receive, send)


class PeerCredProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        peer = peer_of(transport.get_extra_info("socket"))
        if peer is not None:
            self.app = _WithPeer(self.app, peer)  # per connection: the protocol is per connection


class PeerCredWSProtocol(WSProtocol):  # type: ignore[misc]
    """The WebSocket side of `PeerCredProtocol` (an upgraded connection gets a new protocol
    object, with the bare app): the same peer, read from the same transport."""

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        peer = peer_of(transport.get_extra_info("socket"))
        if peer is not None:
            self.app = _WithPeer(self.app, peer)


def scope_peer(scope: dict) -> Peer | None:
    peer = scope.get(PEER_KEY)
    return peer if isinstance(peer, Peer) else None

"""A synchronous view of a labgrid-coordinator for the server: labgrid's own ClientSession (the
gRPC client `labgrid-client` uses) on an event loop in a background thread. It keeps the places
up to date from the coordinator's stream; acquire/release are the coordinator's AcquirePlace and
ReleasePlace calls, as `labgrid-client acquire/release` makes them."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass, field

from gpufleet.executors.base import EngineUnavailable


@dataclass(frozen=True)
class PlaceInfo:
    name: str
    tags: dict[str, str] = field(default_factory=dict)
    acquired: str | None = None  # "host/user", or None
    comment: str = ""
    resources: dict[str, dict] = field(default_factory=dict)  # class name -> params of its resources


def holder(identity: str) -> str:
    """How the coordinator names a place acquired by `identity` from this host."""
    return f"{socket.gethostname()}/{identity}"


class Coordinator:
    def __init__(self, address: str, identity: str, timeout_s: float = 10.0):
        self.address = address
        self.identity = identity
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session = None
        self._down_until = 0.0  # after a failed connect: no new try before this (monotonic)
        self.retry_s = 15.0

    # the session --------------------------------------------------------------------------------
    def _ensure(self):
        if self._session is not None and not self._session.stopping.is_set():
            return self._session
        if time.monotonic() < self._down_until:  # the control loop must not wait on it every cycle
            raise EngineUnavailable(f"labgrid coordinator {self.address} unreachable; retried in "
                                    f"{self._down_until - time.monotonic():.0f}s")
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            threading.Thread(target=self._loop.run_forever, name="labgrid-session", daemon=True).start()
        self._session = None
        try:
            self._session = self._run(self._start(), "connect")
        except EngineUnavailable:
            self._down_until = time.monotonic() + self.retry_s
            raise
        return self._session

    async def _start(self):
        from labgrid.remote.client import ClientSession
        from labgrid.util.proxy import proxymanager

        identity = self.identity

        class Session(ClientSession):  # acquires places as gpufleet's identity, not the Unix user
            def getuser(self):
                return identity

            def __attrs_post_init__(self):
                super().__attrs_post_init__()
                # a connection of its own: the coordinator takes one client stream per peer, and
                # gRPC would share one connection between the sessions of a process
                import grpc
                from labgrid.remote.generated import labgrid_coordinator_pb2_grpc

                old = self.channel
                self.channel = grpc.aio.insecure_channel(target=self.address, options=[
                    ("grpc.keepalive_time_ms", 7500), ("grpc.keepalive_timeout_ms", 10000),
                    ("grpc.http2.ping_timeout_ms", 10000), ("grpc.http2.max_pings_without_data", 0),
                    ("grpc.use_local_subchannel_pool", 1)])
                self.stub = labgrid_coordinator_pb2_grpc.CoordinatorStub(self.channel)
                self.loop.create_task(old.close())

        address = proxymanager.get_grpc_address(self.address, default_port=20408)
        session = Session(address=address, loop=self._loop)
        await session.start()
        return session

    def _run(self, coro, what: str):
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(self.timeout_s)
        except TimeoutError:
            fut.cancel()
            self._session = None
            raise EngineUnavailable(f"labgrid coordinator {self.address}: {what} timed out") from None
        except EngineUnavailable:
            raise
        except Exception as e:
            if _unreachable(e):
                self._session = None
                raise EngineUnavailable(f"labgrid coordinator {self.address}: {what}: {e}") from None
            raise

    # what the executor asks -------------------------------------------------------------------
    def places(self) -> dict[str, PlaceInfo]:
        with self._lock:
            session = self._ensure()
            return self._run(self._places(session), "list places")

    async def _places(self, session) -> dict[str, PlaceInfo]:
        await session.sync_with_coordinator()
        if session.stopping.is_set():
            raise EngineUnavailable(f"labgrid coordinator {self.address} closed the connection")
        out = {}
        for name, p in session.places.items():
            resources: dict[str, dict] = {}
            try:
                for (_, cls), entry in session.get_target_resources(p).items():
                    resources.setdefault(cls, dict(entry.args))
            except Exception:  # not acquired by us: its resources are not ours to see
                pass
            out[name] = PlaceInfo(name, dict(p.tags), p.acquired, p.comment or "", resources)
        return out

    def acquire(self, place: str) -> None:
        """Lock `place` for gpufleet. Already ours: fine. Someone else's: EngineUnavailable."""
        with self._lock:
            session = self._ensure()
            self._run(self._acquire(session, place), f"acquire {place}")

    async def _acquire(self, session, place: str) -> None:
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb
        import grpc

        await session.sync_with_coordinator()
        p = session.places.get(place)
        if p is None:
            raise ValueError(f"no labgrid place {place!r}")
        if p.acquired and p.acquired != holder(self.identity):
            raise EngineUnavailable(f"place {place} is acquired by {p.acquired} in labgrid")
        try:  # always asked: what this session saw may be behind the coordinator
            await session.stub.AcquirePlace(pb.AcquirePlaceRequest(placename=place))
        except grpc.aio.AioRpcError as e:
            await session.sync_with_coordinator()
            p = session.places.get(place)
            if p is None or p.acquired != holder(self.identity):
                raise EngineUnavailable(f"acquire {place}: {e.details()}") from None
        await session.sync_with_coordinator()

    def release(self, place: str) -> bool:
        """Unlock `place` if gpufleet holds it; True when it was released."""
        with self._lock:
            session = self._ensure()
            return self._run(self._release(session, place), f"release {place}")

    async def _release(self, session, place: str) -> bool:
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        await session.sync_with_coordinator()
        p = session.places.get(place)
        if p is None or p.acquired != holder(self.identity):
            return False
        await session.stub.ReleasePlace(pb.ReleasePlaceRequest(placename=place, fromuser=p.acquired))
        await session.sync_with_coordinator()
        return True

    def close(self) -> None:
        if self._loop is None:
            return
        if self._session is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._session.stop(), self._loop).result(2)
                asyncio.run_coroutine_threadsafe(self._session.close(), self._loop).result(2)
            except Exception:
                pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop = self._session = None


def _unreachable(e: Exception) -> bool:
    try:
        import grpc
        from labgrid.remote.client import ServerError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(e, (grpc.aio.AioRpcError, ServerError, ConnectionError, OSError))

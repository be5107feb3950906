"""One server per data directory, and per database.

`gpufleet serve` takes, before it touches anything: an exclusive flock on `<home>/server.lock`
(which then holds its pid and port), and on PostgreSQL a session advisory lock of the database
held on a dedicated connection for the server's life. A second server fails with exit 2 and
`error: another gpufleet server (pid 1234, port 8765) owns /path; stop it first`, having changed
nothing. The kernel and PostgreSQL release both locks when the holder dies, even by kill -9."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine, make_url

from gpufleet.domain.errors import ServerRunning

PG_LOCK_KEY = 0x6770_666C_6565_7431 & 0x7FFF_FFFF_FFFF_FFFF  # "gpfleet1": one per database


def _owner_text(info: dict) -> str:
    pid, port = info.get("pid", "?"), info.get("port", "?")
    host = f" on {info['host']}" if info.get("host") and info.get("host") != os.uname().nodename else ""
    return f"pid {pid}{host}, port {port}"


class HomeLock:
    """The exclusive lock of a data directory. Released by `release()` or the process's end."""

    def __init__(self, home: Path, fd: int):
        self.home, self._fd = home, fd

    @property
    def path(self) -> Path:
        return self.home / "server.lock"

    @classmethod
    def acquire(cls, home: Path, port: int) -> HomeLock:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(home / "server.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = _read_info(fd)
            os.close(fd)
            raise ServerRunning(f"another gpufleet server ({_owner_text(info)}) owns {home}; stop it first") from None
        os.fchmod(fd, 0o600)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps({"pid": os.getpid(), "port": port}) + "\n").encode(), 0)
        return cls(home, fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # the file stays: unlinking it would let two servers lock two inodes
            self._fd = None


def _read_info(fd: int) -> dict:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class DatabaseLock:
    """PostgreSQL: `pg_try_advisory_lock` on a connection kept out of the pool for the server's
    life (a session lock: it ends with the session, so a dead server never keeps it). SQLite
    needs none: its database lives in the locked data directory."""

    def __init__(self, conn: Connection | None):
        self._conn = conn

    @classmethod
    def acquire(cls, engine: Engine) -> DatabaseLock:
        if engine.dialect.name != "postgresql":
            return cls(None)
        conn = engine.connect()
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": PG_LOCK_KEY}).scalar()
        conn.commit()  # the lock is the session's, not the transaction's: nothing idles in one
        if not got:
            conn.close()
            where = make_url(str(engine.url)).render_as_string(hide_password=True)
            raise ServerRunning(f"another gpufleet server{_pg_owner(engine)} owns database {where}; stop it first")
        return cls(conn)

    def release(self) -> None:
        if self._conn is not None:
            try:  # close() alone would hand the session, lock and all, back to the pool
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_LOCK_KEY})
                self._conn.commit()
            finally:
                self._conn.invalidate()
                self._conn.close()
                self._conn = None


def _pg_owner(engine: Engine) -> str:
    """` (pid 1234 on host, port 8765)` from the owner's meta row, '' when there is none yet."""
    try:
        with engine.connect() as c:
            row = c.execute(text("SELECT value FROM meta WHERE key = 'server'")).scalar()
    except Exception:  # noqa: BLE001 - no schema yet: the owner is still starting
        return ""
    info = json.loads(row) if isinstance(row, str) else (row or {})
    return f" ({_owner_text(info)})" if isinstance(info, dict) and info else ""


__all__ = ["DatabaseLock", "HomeLock", "PG_LOCK_KEY", "ServerRunning"]

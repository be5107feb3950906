"""The server's sockets, bound before any state is touched and handed to uvicorn.

- TCP `host:port`: remote clients, with tokens;
- the Unix socket `<home>/gpufleet.sock`, and when root also the well-known
  `/run/gpufleet/gpufleet.sock` so that every user's CLI on this host finds it: mode 0666, the
  kernel's peer credentials (SO_PEERCRED) are the authentication, like munge or the Docker socket.
"""

from __future__ import annotations

import os
import socket
import stat
from dataclasses import dataclass, field
from pathlib import Path

from gpufleet.domain import ValidationError

WELL_KNOWN_SOCKET = Path("/run/gpufleet/gpufleet.sock")


def bind_tcp(host: str, port: int) -> socket.socket:
    """A listening TCP socket, or ValidationError("port") naming why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio sets TCP_NODELAY only then
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise ValidationError("port", f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(False)
    return sock


@dataclass
class UnixListener:
    path: Path
    sock: socket.socket
    ino: int

    def close(self) -> None:
        """Close, and remove the path if it is still ours (a newer server may have taken it)."""
        self.sock.close()
        try:
            if os.lstat(self.path).st_ino == self.ino:
                os.unlink(self.path)
        except OSError:
            pass


def _in_use(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def bind_unix(path: Path, mode: int = 0o666) -> UnixListener | None:
    """A listening Unix socket at `path`, None when a live server already serves there. A stale
    socket file (its server died) is replaced; anything else at `path` is left alone (OSError)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError(f"{path} exists and is not a socket")
        if _in_use(path):
            return None
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, mode)
        sock.listen(512)
    except OSError:
        sock.close()
        raise
    return UnixListener(path, sock, os.lstat(path).st_ino)


@dataclass
class Listeners:
    tcp: socket.socket
    unix: list[UnixListener] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # sockets not bound, and why (logged at start)

    @property
    def sockets(self) -> list[socket.socket]:
        return [self.tcp, *(u.sock for u in self.unix)]

    def close(self) -> None:
        self.tcp.close()
        for u in self.unix:
            u.close()


def socket_paths(home: Path, setting: str | None, root: bool) -> list[Path]:
    if setting == "off":
        return []
    if setting:
        return [Path(setting)]
    return [home / "gpufleet.sock", *([WELL_KNOWN_SOCKET] if root else [])]


def bind_all(host: str, port: int, unix_paths: list[Path]) -> Listeners:
    out = Listeners(bind_tcp(host, port))
    for path in unix_paths:
        try:
            if path == WELL_KNOWN_SOCKET:
                path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
                os.chmod(path.parent, 0o755)  # whatever the umask: every user must reach it
            got = bind_unix(path)
        except OSError as e:
            out.notes.append(f"no socket at {path}: {e}")
            continue
        if got is None:
            out.notes.append(f"{path} is served by another gpufleet server: left to it")
        else:
            out.unix.append(got)
    return out


__all__ = ["Listeners", "UnixListener", "WELL_KNOWN_SOCKET", "bind_all", "bind_tcp", "bind_unix", "socket_paths"]

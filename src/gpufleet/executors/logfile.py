"""Reading a job's output file without ever following a link out of the directory it belongs in.

The directories below `base` (and the file itself) may be writable by the job: a job could swap
its output.log, or a directory above it, for a symbolic link to a file it cannot read itself (the
server's admin.token, another tenant's log) and have the server serve it. So every level is opened
relative to the one above with O_NOFOLLOW (O_DIRECTORY for the directories), and the file must be a
regular file (opened O_NONBLOCK, so a FIFO put in its place cannot hang the reader).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Sequence

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_FILE = os.O_RDONLY | os.O_CLOEXEC | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0)


class UnsafeLog(OSError):
    """The path holds a symbolic link or something other than a regular file: not served."""


def open_below(base: Path | str, parts: Sequence[str]) -> int:
    """A read-only fd of base/parts[0]/.../parts[-1], no link followed below `base` (itself trusted).

    Raises FileNotFoundError when a part is missing, UnsafeLog for a link or a non-regular file."""
    if not parts or any(p in ("", ".", "..") or "/" in p for p in parts):
        raise ValueError(f"not a plain relative path: {parts!r}")
    fd = os.open(base, _DIR)
    for name in parts[:-1]:
        fd = _step(fd, name, _DIR | _NOFOLLOW)  # _step closes the level above, whatever happens
    fd = _step(fd, parts[-1], _FILE)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafeLog(errno.EINVAL, "not a regular file", "/".join(parts))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _step(dir_fd: int, name: str, flags: int) -> int:
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):  # a link (or a file in a dir's place)
            raise UnsafeLog(e.errno, "a symbolic link or not a directory", name) from None
        raise
    finally:
        os.close(dir_fd)


def read_chunk(base: Path | str, parts: Sequence[str], offset: int, limit: int) -> tuple[bytes, int]:
    """Up to `limit` bytes from `offset` of the file, and the file's size (see `open_below`)."""
    fd = open_below(base, parts)
    with os.fdopen(fd, "rb") as f:
        f.seek(offset)
        data = f.read(limit)
        return data, os.fstat(f.fileno()).st_size


def refusal(what: str) -> str:
    """The note a log reader gives instead of the content of an unsafe path."""
    return f"{what} is a symbolic link or not a regular file: not served"

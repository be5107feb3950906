"""The embedded default: artifacts as files under the server's data directory
(<home>/artifacts/<tenant>/<job>/attempt-<n>/rank-<r>/<path>), 0600 in 0700 folders."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import BinaryIO, ClassVar, Iterator

from gpufleet.artifacts.base import CHUNK, PutRequest, StoreError


class LocalStore:
    name: ClassVar[str] = "local"

    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        parts = [p for p in key.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise StoreError(f"bad artifact key {key!r}")
        return self.root.joinpath(*parts)

    def put(self, req: PutRequest, data: BinaryIO) -> str:
        dest = self._path(req.key)
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}.{os.urandom(4).hex()}")
        h, size = hashlib.sha256(), 0
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                while chunk := data.read(CHUNK):
                    h.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            if (size, h.hexdigest()) != (req.digest.size, req.digest.sha256):
                raise StoreError(f"{req.key}: changed while being stored (sha256 or size differ)")
            os.replace(tmp, dest)
        except OSError as e:
            raise StoreError(f"{req.key}: {e.strerror or e}") from None
        finally:
            tmp.unlink(missing_ok=True)
        return req.key

    def open(self, location: str) -> Iterator[bytes]:
        try:
            f = open(self._path(location), "rb")  # noqa: SIM115 - closed by the generator
        except OSError as e:
            raise StoreError(f"{location}: {e.strerror or e}") from None
        return _chunks(f)

    def delete(self, location: str) -> None:
        path = self._path(location)
        path.unlink(missing_ok=True)
        for parent in path.parents:  # drop folders left empty, up to the root
            if parent == self.root or self.root not in parent.parents:
                break
            try:
                parent.rmdir()
            except OSError:
                break


def _chunks(f: BinaryIO) -> Iterator[bytes]:
    with f:
        while chunk := f.read(CHUNK):
            yield chunk

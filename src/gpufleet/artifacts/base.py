"""The shape every artifact store has: put (streamed, checksums known first), open, delete."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import BinaryIO, ClassVar, Iterator, Mapping, Protocol, runtime_checkable

CHUNK = 1 << 20


class StoreError(Exception):
    """The store refused or could not be reached; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Digest:
    size: int
    sha256: str
    sha1: str


@dataclass(frozen=True, slots=True)
class PutRequest:
    """One file to keep: where (`key`, a relative path with `/`), its checksums (known before the
    upload: Artifactory's checksum deploy wants them in the request headers) and properties that
    stores able to keep them attach (job id, tenant, commit, SKU, driver)."""

    key: str
    digest: Digest
    properties: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class ArtifactStore(Protocol):
    name: ClassVar[str]

    def put(self, req: PutRequest, data: BinaryIO) -> str:
        """Store the bytes of `data` under `req.key`; returns the location to open/delete it by.
        Raises StoreError (also when what arrived does not match `req.digest`)."""

    def open(self, location: str) -> Iterator[bytes]:
        """The stored bytes, in chunks. Raises StoreError when it is gone."""

    def delete(self, location: str) -> None:
        """Remove it; one already gone is fine."""


def digest_file(f: BinaryIO) -> Digest:
    """size, sha256 and sha1 of what is left in `f` (read in chunks), then rewinds it."""
    start = f.tell()
    h256, h1, size = hashlib.sha256(), hashlib.sha1(usedforsecurity=False), 0
    while chunk := f.read(CHUNK):
        h256.update(chunk)
        h1.update(chunk)
        size += len(chunk)
    f.seek(start)
    return Digest(size, h256.hexdigest(), h1.hexdigest())


def artifact_key(tenant: str, job_id: int, attempt: int, rank: int, path: str) -> str:
    """Where an artifact lives in any store: <tenant>/<job>/attempt-<n>/rank-<r>/<path>."""
    return f"{tenant}/{job_id}/attempt-{attempt}/rank-{rank}/{path}"

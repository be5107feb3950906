"""Artifacts: what an attempt's rank left behind, as kept in an artifact store."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Artifact:
    job_id: int
    attempt: int
    rank: int
    path: str  # relative to the rank's workdir, with `/`
    size: int
    sha256: str
    sha1: str
    store: str  # local | http
    location: str  # the store's address of it
    tenant: str
    user: str
    created_at: float
    expires_at: float | None = None  # None: kept until removed by the quota
    deleted_at: float | None = None  # removed by gc (the row stays, as a record)
    id: int = 0


@dataclass(frozen=True, slots=True)
class ArtifactPolicy:
    """A tenant's retention: at most `max_bytes` stored, each kept `retention_s` (None: no limit)."""

    tenant: str
    max_bytes: int | None = None
    retention_s: float | None = None


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(value: object, field: str) -> int | None:
    """Bytes from 500, "500", "10K", "2M", "50G", "1T" (binary units; "GiB"/"GB" alike)."""
    from gpufleet.domain.errors import ValidationError

    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValidationError(field, f"not a size: {value!r}")
    if isinstance(value, int):
        n = value
    else:
        s = str(value).strip().lower().removesuffix("ib").removesuffix("b")
        unit = s[-1:] if s[-1:].isalpha() else ""
        num = s[:-1] if unit else s
        try:
            n = int(float(num) * _UNITS[unit])
        except (ValueError, KeyError):
            raise ValidationError(field, f"not a size: {value!r} (use e.g. 500M, 50G)") from None
    if n < 0:
        raise ValidationError(field, f"must be >= 0, got {value!r}")
    return n

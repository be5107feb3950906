"""Reads and writes of artifact records (table artifacts) and per-tenant retention policies
(artifact_policies). The bytes live in an artifact store (gpufleet.artifacts)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Sequence

from sqlalchemy import Engine, Table, delete, func, insert, select, update

from gpufleet.domain.artifact import Artifact, ArtifactPolicy
from gpufleet.store.rows import ArtifactPolicyRow, ArtifactRow

_A: Table = ArtifactRow.__table__  # type: ignore[assignment]
_P: Table = ArtifactPolicyRow.__table__  # type: ignore[assignment]


class ArtifactRepo:
    def __init__(self, engine: Engine):
        self.engine = engine

    def add(self, a: Artifact) -> Artifact:
        """Record one stored file; a second record of the same (job, attempt, rank, path)
        replaces the first (a re-collected attempt)."""
        row = {k: v for k, v in asdict(a).items() if k != "id"}
        with self.engine.begin() as conn:
            conn.execute(delete(_A).where(_A.c.job_id == a.job_id, _A.c.attempt == a.attempt,
                                          _A.c.rank == a.rank, _A.c.path == a.path))
            new_id = conn.execute(insert(_A).values(**row)).inserted_primary_key[0]
        return Artifact(**{**row, "id": int(new_id)})

    def for_job(self, job_id: int, attempt: int | None = None, live: bool = True) -> list[Artifact]:
        q = select(_A).where(_A.c.job_id == job_id)
        if attempt is not None:
            q = q.where(_A.c.attempt == attempt)
        if live:
            q = q.where(_A.c.deleted_at.is_(None))
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(_A.c.attempt, _A.c.rank, _A.c.path)).mappings().all()
        return [_artifact(m) for m in rows]

    def bytes_used(self, tenant: str) -> int:
        q = select(func.coalesce(func.sum(_A.c.size), 0)).where(_A.c.tenant == tenant, _A.c.deleted_at.is_(None))
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def usage(self) -> dict[str, int]:
        """Stored bytes per tenant (live artifacts only)."""
        q = (select(_A.c.tenant, func.sum(_A.c.size)).where(_A.c.deleted_at.is_(None)).group_by(_A.c.tenant))
        with self.engine.connect() as conn:
            return {t: int(n or 0) for t, n in conn.execute(q)}

    def expired(self, now: float, tenant: str | None = None) -> list[Artifact]:
        q = select(_A).where(_A.c.deleted_at.is_(None), _A.c.expires_at.is_not(None), _A.c.expires_at <= now)
        if tenant is not None:
            q = q.where(_A.c.tenant == tenant)
        with self.engine.connect() as conn:
            return [_artifact(m) for m in conn.execute(q.order_by(_A.c.id)).mappings()]

    def oldest(self, tenant: str, limit: int = 1000) -> list[Artifact]:
        q = (select(_A).where(_A.c.tenant == tenant, _A.c.deleted_at.is_(None))
             .order_by(_A.c.created_at, _A.c.id).limit(limit))
        with self.engine.connect() as conn:
            return [_artifact(m) for m in conn.execute(q).mappings()]

    def mark_deleted(self, ids: Sequence[int], now: float) -> None:
        if ids:
            with self.engine.begin() as conn:
                conn.execute(update(_A).where(_A.c.id.in_(list(ids))).values(deleted_at=now))

    def policy(self, tenant: str) -> ArtifactPolicy | None:
        with self.engine.connect() as conn:
            m = conn.execute(select(_P).where(_P.c.tenant == tenant)).mappings().first()
        return ArtifactPolicy(**dict(m)) if m else None

    def policies(self) -> list[ArtifactPolicy]:
        with self.engine.connect() as conn:
            return [ArtifactPolicy(**dict(m)) for m in conn.execute(select(_P).order_by(_P.c.tenant)).mappings()]

    def put_policy(self, p: ArtifactPolicy) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(_P).where(_P.c.tenant == p.tenant))
            conn.execute(insert(_P).values(**asdict(p)))


def _artifact(m) -> Artifact:
    return Artifact(**dict(m))

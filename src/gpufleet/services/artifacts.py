"""Artifacts: collected from every rank's workdir when an attempt ends (the job's `artifacts`
globs), kept in the artifact store with sha256 and size, listed and served with the same tenant
isolation as logs, and removed by retention (per-tenant byte quota, expiry) in `gc`."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator

from gpufleet.artifacts import ArtifactStore, PutRequest, StoreError, artifact_key, digest_file
from gpufleet.domain import Job, NotFound, User, ValidationError
from gpufleet.domain.artifact import Artifact, ArtifactPolicy
from gpufleet.executors.base import Ability, Executor, latest_attempt
from gpufleet.observability.logs import get_logger
from gpufleet.services.context import Ctx, require_admin
from gpufleet.services.jobs import get as get_job
from gpufleet.services.results_collect import hardware_of
from gpufleet.store import Store
from gpufleet.store.artifacts import ArtifactRepo

log = get_logger("gpufleet.artifacts")


@dataclass
class ArtifactService:
    """What the API, the CLI and the control loop's attempt-end hook share."""

    store: Store
    backend: ArtifactStore
    clock: Callable[[], float] = time.time
    max_bytes: int | None = None  # per tenant, unless its policy says otherwise (None: no quota)
    retention_s: float | None = None  # how long one is kept (None: until the quota needs room)
    # collect in a worker thread (uploads to a repository manager must not stall the control
    # loop); False: at once, in the caller's thread
    background: bool = False
    repo: ArtifactRepo = field(init=False)
    _pool: ThreadPoolExecutor | None = field(init=False, default=None)
    _pending: list[Future] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.repo = ArtifactRepo(self.store.engine)
        if self.background:
            self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="artifacts")

    def on_attempt_end(self, executor: Executor, job: Job) -> None:
        """The control loop's hook: collect now, or queue it for the worker."""
        if not job.spec.artifacts:
            return
        if self._pool is None:
            self.collect(executor, job)
            return
        self._pending = [f for f in self._pending if not f.done()]
        self._pending.append(self._pool.submit(self._collect_logged, executor, job))

    def _collect_logged(self, executor: Executor, job: Job) -> None:
        try:
            self.collect(executor, job)
        except Exception as e:  # one job's failure must not stop the worker
            log.warning("artifact collection failed", job_id=job.id, error=str(e))

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait for the queued collections (tests, shutdown)."""
        for f in list(self._pending):
            f.result(timeout=timeout_s)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def policy(self, tenant: str) -> ArtifactPolicy:
        """The tenant's own policy, its unset parts filled from the server's defaults."""
        own = self.repo.policy(tenant)
        return ArtifactPolicy(
            tenant,
            own.max_bytes if own and own.max_bytes is not None else self.max_bytes,
            own.retention_s if own and own.retention_s is not None else self.retention_s,
        )

    # collect ---------------------------------------------------------------------------------
    def collect(self, executor: Executor, job: Job) -> tuple[list[Artifact], list[str]]:
        """Store what the attempt of `job` that just ended left matching its globs (every rank).
        Returns (stored, notes about what was not)."""
        if not job.spec.artifacts:
            return [], []
        if Ability.ARTIFACTS not in executor.abilities:
            return [], [f"artifacts are not collected from the {executor.name} engine"]
        n = latest_attempt(job)
        run = next((a for a in self.store.attempts(job.id) if a.n == n), None)
        alloc = run.allocation if run else job.allocation
        nodes = {x.name: x for x in self.store.nodes()}
        policy, now = self.policy(job.tenant), self.clock()
        used = self.repo.bytes_used(job.tenant)
        stored: list[Artifact] = []
        notes: list[str] = []
        for f in executor.artifacts(job, n, job.spec.artifacts, notes):
            with f.file:
                if policy.max_bytes is not None and used + f.size > policy.max_bytes:
                    notes.append(f"rank {f.rank}: {f.path}: over tenant {job.tenant}'s artifact quota "
                                 f"({used} of {policy.max_bytes} bytes used): not stored")
                    continue
                a = alloc[f.rank] if f.rank < len(alloc) else None
                hw = hardware_of(nodes.get(a.node) if a else None, tuple(a.gpus) if a else ())
                digest = digest_file(f.file)
                props = {"job_id": str(job.id), "attempt": str(n), "rank": str(f.rank), "tenant": job.tenant,
                         "user": job.user, "commit": commit_of(job), "sku": hw.get("sku", ""),
                         "driver": hw.get("driver", ""), "node": a.node if a else ""}
                req = PutRequest(artifact_key(job.tenant, job.id, n, f.rank, f.path), digest, props)
                try:
                    location = self.backend.put(req, f.file)
                except StoreError as e:
                    notes.append(f"rank {f.rank}: {f.path}: {e}")
                    continue
            stored.append(self.repo.add(Artifact(
                job_id=job.id, attempt=n, rank=f.rank, path=f.path, size=digest.size, sha256=digest.sha256,
                sha1=digest.sha1, store=self.backend.name, location=location, tenant=job.tenant, user=job.user,
                created_at=now, expires_at=now + policy.retention_s if policy.retention_s else None)))
            used += digest.size
        for note in notes:
            log.warning("artifact not stored", job_id=job.id, attempt=n, note=note)
        return stored, notes

    # read ------------------------------------------------------------------------------------
    def list(self, ctx: Ctx, user: User, job_id: int, attempt: int | None = None) -> list[Artifact]:
        get_job(ctx, user, job_id)  # NotFound for another tenant's job, as for logs
        return self.repo.for_job(job_id, attempt)

    def open(self, ctx: Ctx, user: User, job_id: int, path: str, attempt: int | None = None,
             rank: int | None = None) -> tuple[Artifact, Iterator[bytes]]:
        """One artifact's bytes: of the latest attempt that has `path` (or `attempt`), rank 0
        unless `rank` says otherwise."""
        found = [a for a in self.list(ctx, user, job_id, attempt) if a.path == path
                 and (rank is None or a.rank == rank)]
        if not found:
            raise NotFound("artifact", f"{job_id}/{path}")
        best = max(found, key=lambda a: (a.attempt, -a.rank))
        try:
            return best, self.backend.open(best.location)
        except StoreError as e:
            raise NotFound("artifact", f"{job_id}/{path} ({e})") from None

    # retention -------------------------------------------------------------------------------
    def gc(self, ctx: Ctx, user: User) -> dict[str, int]:
        """Remove expired artifacts, then the oldest of every tenant over its byte quota."""
        require_admin(user, "artifacts gc")
        now = self.clock()
        doomed = {a.id: a for a in self.repo.expired(now)}
        for tenant, used in self.repo.usage().items():
            quota = self.policy(tenant).max_bytes
            used -= sum(a.size for a in doomed.values() if a.tenant == tenant)
            if quota is None or used <= quota:
                continue
            for a in self.repo.oldest(tenant, limit=100000):
                if used <= quota:
                    break
                if a.id not in doomed:
                    doomed[a.id] = a
                    used -= a.size
        removed, freed, failed = [], 0, 0
        for a in doomed.values():
            try:
                self.backend.delete(a.location)
            except StoreError as e:
                failed += 1
                log.warning("artifact not deleted", job_id=a.job_id, path=a.path, error=str(e))
                continue
            removed.append(a.id)
            freed += a.size
        self.repo.mark_deleted(removed, now)
        ctx.audit(user, "artifacts-gc", "artifacts", deleted=len(removed), bytes=freed, failed=failed)
        return {"deleted": len(removed), "bytes": freed, "failed": failed}

    def set_policy(self, ctx: Ctx, user: User, tenant: str, changes: dict) -> ArtifactPolicy:
        """`changes`: max_bytes and/or retention_s; one not given stays, None means the default."""
        require_admin(user, "an artifact policy")
        if tenant not in ctx.tenant_names():
            raise ValidationError("tenant", f"unknown tenant {tenant!r}")
        own = self.repo.policy(tenant) or ArtifactPolicy(tenant)
        max_bytes = changes.get("max_bytes", own.max_bytes)
        retention_s = changes.get("retention_s", own.retention_s)
        if max_bytes is not None and max_bytes < 0:
            raise ValidationError("max_bytes", "must be >= 0")
        if retention_s is not None and retention_s <= 0:
            raise ValidationError("retention", "must be a positive duration")
        self.repo.put_policy(ArtifactPolicy(tenant, max_bytes, retention_s))
        ctx.audit(user, "artifact-policy", f"tenant/{tenant}", max_bytes=max_bytes, retention_s=retention_s)
        return self.policy(tenant)

    def policies(self, ctx: Ctx, user: User) -> list[dict]:
        names = sorted(ctx.tenant_names()) if user.admin else [user.tenant]
        usage = self.repo.usage()
        return [{"tenant": t, "max_bytes": (p := self.policy(t)).max_bytes, "retention_s": p.retention_s,
                 "used_bytes": usage.get(t, 0)} for t in names]


def commit_of(job: Job) -> str:
    """The commit a job was built from: its CI labels (gitlab executor) carry it."""
    labels = getattr(job.spec, "labels", None) or {}
    return str(labels.get("commit") or job.spec.env.get("GPUFLEET_CI_COMMIT") or job.spec.env.get("CI_COMMIT_SHA") or "")


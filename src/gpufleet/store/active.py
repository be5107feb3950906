"""The active jobs (PENDING and RUNNING) kept in memory for the control loop, which reads them
every cycle (at 7k active jobs a full read is ~150 ms of rows and mapping).

The database stays the source of truth: every write of a job row marks the job's id dirty AFTER
its commit (Store.jobs_changed, called by every job write of the Store), and the next read
re-reads only the dirty rows. The set of dirty ids is taken BEFORE that read, so a write that
commits after the read began is marked after it and read on the next call; nothing written is
ever missed. A full re-read happens at the first read, every `resync_s`, after a failed read and
when the version check disagrees: the number and the highest id of the active rows in the
database against the cache's (a writer outside this process, or a write path that forgot to
mark its ids). Readers get fresh copies they may change.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Callable, Iterable

from sqlalchemy import Engine, func, select

from gpufleet.domain import Job, JobSpec, JobState
from gpufleet.domain.spec import spec_from_dict
from gpufleet.store.mapping import copy_job, job_from_light
from gpufleet.store.rows import JobRow

ACTIVE = (JobState.PENDING.value, JobState.RUNNING.value)
LIGHT = ("id", "user", "state", "reason", "submitted_at", "started_at", "ended_at", "exit_code",
         "allocation", "handle", "restarts", "attained_gpu_s", "pending_action", "action_reason",
         "group_id", "failures")
_COLS = [getattr(JobRow, c) for c in LIGHT]
_CHUNK = 500  # ids per IN list


class ActiveJobs:
    def __init__(self, engine: Engine, resync_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.engine = engine
        self.resync_s = resync_s
        self.clock = clock
        self._jobs: dict[int, Job] | None = None  # id -> the job as last read (never handed out)
        self._loaded_at = -math.inf
        self._dirty: set[int] = set()
        self._gen = 0  # bumped by every changed(): the version check skips when writes raced it
        self._lock = threading.Lock()  # _dirty and _gen
        self._reading = threading.Lock()  # one reader at a time refreshes the cache
        self.full_reads = 0
        self.delta_reads = 0

    def changed(self, ids: Iterable[int]) -> None:
        """These jobs' rows were written (call after the commit)."""
        with self._lock:
            self._dirty.update(ids)
            self._gen += 1

    def resync(self) -> None:
        """Read everything again on the next read."""
        with self._lock:
            self._loaded_at = -math.inf
            self._gen += 1

    def jobs(self) -> list[Job]:
        """PENDING and RUNNING jobs, oldest first: copies, the caller may change them."""
        with self._reading:
            try:
                cache = self._refresh()
            except BaseException:
                self._jobs = None  # the dirty ids taken are lost with it: read all next time
                raise
            return [copy_job(j) for j in cache.values()]

    def _refresh(self) -> dict[int, Job]:
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            gen = self._gen
            full = self._jobs is None or self.clock() - self._loaded_at >= self.resync_s
        if full:
            return self._read_all()
        cache = self._jobs
        assert cache is not None
        if dirty:
            self._read_some(cache, sorted(dirty))
        if not self._version_ok(cache, gen):
            return self._read_all()
        return cache

    def _read_all(self) -> dict[int, Job]:
        old = self._jobs or {}
        started = self.clock()
        with self.engine.connect() as conn:
            rows = conn.execute(select(*_COLS).where(JobRow.state.in_(ACTIVE)).order_by(JobRow.id)).all()
            specs = self._specs(conn, old, [r.id for r in rows])
        self._jobs = {r.id: job_from_light(r, specs[r.id]) for r in rows}
        self._loaded_at = started
        self.full_reads += 1
        return self._jobs

    def _read_some(self, cache: dict[int, Job], ids: list[int]) -> None:
        with self.engine.connect() as conn:
            rows = [r for i in range(0, len(ids), _CHUNK)
                    for r in conn.execute(select(*_COLS).where(JobRow.id.in_(ids[i:i + _CHUNK])))]
            live = [r for r in rows if r.state in ACTIVE]
            specs = self._specs(conn, cache, [r.id for r in live])
        top = max(cache, default=0)
        live_ids = {r.id for r in live}
        for job_id in ids:
            if job_id not in live_ids:
                cache.pop(job_id, None)
        reorder = False
        for r in live:  # a job already cached keeps its place
            reorder = reorder or (r.id not in cache and r.id < top)
            cache[r.id] = job_from_light(r, specs[r.id])
        if reorder:  # a job came back into the active set below newer ones: keep id order
            items = sorted(cache.items())
            cache.clear()
            cache.update(items)
        self.delta_reads += 1

    def _specs(self, conn, known: dict[int, Job], ids: list[int]) -> dict[int, JobSpec]:
        """Specs never change: taken from the jobs already read, parsed only for new ones."""
        out = {i: known[i].spec for i in ids if i in known}
        missing = [i for i in ids if i not in out]
        for i in range(0, len(missing), _CHUNK):
            q = select(JobRow.id, JobRow.spec).where(JobRow.id.in_(missing[i:i + _CHUNK]))
            out.update((jid, spec_from_dict(spec)) for jid, spec in conn.execute(q))
        return out

    def _version_ok(self, cache: dict[int, Job], gen: int) -> bool:
        """The database's count and highest id of active rows agree with the cache, or a write
        raced this read (then the next read checks again)."""
        q = select(func.count(), func.max(JobRow.id)).where(JobRow.state.in_(ACTIVE))
        with self.engine.connect() as conn:
            n, top = conn.execute(q).one()
        if n == len(cache) and (top or 0) == max(cache, default=0):
            return True
        with self._lock:
            return self._gen != gen

"""Step 5: EASY backfill. The first job of a GPU model that cannot start reserves the capacity it
will get, computed from the time limits of running jobs; later jobs may use a reserved node only
if they end before the reservation starts, or if they leave enough of it for the reserved job.

Per reserved node we keep `spare`: GPUs free at the reservation's start beyond what the reserved job
needs there. A job that would still run at the start may take at most `spare` GPUs of that node.
Without reservations a stream of small jobs would starve a big gang forever; with them, a job's
start is bounded by the running jobs' time limits.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from dataclasses import dataclass, field
from typing import Callable, Sequence

from gpufleet.scheduler.scorers import pack_gang

Release = tuple[float, int, str, int, int, int]  # (end, node, model, GPUs, CPUs, memory MiB)
UNKNOWN = 1 << 60  # CPUs or memory of a node that does not say


@dataclass(slots=True)
class Reservation:
    job_id: int
    model: str
    start: float
    nodes: tuple[int, ...]
    spare: dict[int, int] = field(default_factory=dict)


class Backfill:
    def __init__(self, releases: Callable[[], Sequence[Release]], now: float):
        """releases: running jobs' releases sorted by end, built on first need."""
        self.now = now
        self._source = releases
        self._releases: Sequence[Release] | None = None
        self.added: list[Release] = []
        self.reservations: list[Reservation] = []
        self.on_node: dict[int, list[Reservation]] = {}
        self.starts: list[float] = []  # reservation starts, sorted

    def blocker(self, i: int, model: str | None, gpus: int, end: float) -> Reservation | None:
        """The reservation a job taking `gpus` of `model` on node i until `end` would delay, if any."""
        for r in self.on_node.get(i, ()):
            if r.model == model and end > r.start and gpus > r.spare[i]:
                return r
        return None

    def context(self, end: float) -> int:
        """Everything `blocker` depends on for a job ending at `end`, as a cache key: how many
        reservations start before it ends (`starts` is sorted, so that says which)."""
        return bisect_left(self.starts, end) if self.starts else 0

    def placed(self, i: int, model: str | None, gpus: int, end: float, cpus: int = 0, mem: int = 0) -> None:
        """A job starts on node i now: it releases at `end`, and eats spare it runs across."""
        if model is None or not gpus:
            return
        self.added.append((max(end, self.now), i, model, gpus, cpus, mem))
        for r in self.on_node.get(i, ()):
            if r.model == model and end > r.start:
                r.spare[i] -= gpus

    def reserve(self, job_id: int, model: str, need: tuple[int, int, int], count: int,
                free_now: dict[int, list[int]], rack_of: Sequence[tuple[str, str]],
                topology: bool) -> Reservation | None:
        """When will `count` of the candidate nodes have `need` = (GPUs of model, CPUs, memory) free?
        free_now: node -> [GPUs, CPUs, memory] free now, for the eligible nodes no reservation holds.
        Reserve those nodes from then on."""
        free = {i: list(f) for i, f in free_now.items()}
        fits = {i for i, f in free.items() if _fits(f, need)}
        start = self.now
        if len(fits) < count:
            start = self._walk(free, fits, model, need, count)
            if start is None:
                return None
        gpus = need[0]
        cands = sorted(((free[i][0] - gpus,), i) for i in fits)
        chosen = pack_gang(cands, count, rack_of, topology)
        if chosen is None:
            return None
        r = Reservation(job_id, model, start, tuple(chosen), {i: free[i][0] - gpus for i in chosen})
        self.reservations.append(r)
        insort(self.starts, start)
        for i in chosen:
            self.on_node.setdefault(i, []).append(r)
        return r

    def _walk(self, free: dict[int, list[int]], fits: set[int], model: str, need: tuple[int, int, int],
              count: int) -> float | None:
        """Replay the releases in time order (ends in the past count as now); all releases of one
        instant apply together, so the answer does not depend on their order."""
        if self._releases is None:
            self._releases = self._source()
        now, at = self.now, None
        for end, i, m, g, c, mem in heapq.merge(self._releases, sorted(self.added)):
            t = end if end > now else now
            if at is not None and t > at and len(fits) >= count:
                return at
            at = t
            f = free.get(i)
            if f is None:
                continue
            if m == model:
                f[0] += g
            f[1] += c
            f[2] += mem
            if i not in fits and _fits(f, need):
                fits.add(i)
        return at if at is not None and len(fits) >= count else None

    def free_candidates(self, nodes, free_of: Callable[[int], list[int]]) -> dict[int, list[int]]:
        """What the given nodes have free now ([GPUs, CPUs, memory]), skipping reserved ones."""
        return {i: free_of(i) for i in nodes if i not in self.on_node}


def _fits(free: list[int], need: tuple[int, int, int]) -> bool:
    return free[0] >= need[0] and free[1] >= need[1] and free[2] >= need[2]

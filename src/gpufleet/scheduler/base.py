"""What a cycle derives from the nodes and the running jobs alone, kept between cycles.

Building the capacity index and the running jobs' aggregates is most of a cycle's cost on a big
cluster with a short queue (the simulator runs tens of thousands of such cycles). A `Base` is built
once from a snapshot and then *updated* with the difference of the running set, by object identity:
jobs that left give their GPUs back, new ones take theirs. Every structure it keeps is canonical
(see `state.py`), so an updated Base equals one built from scratch for the same snapshot and the
cycle decides exactly the same; tests check that equality after random updates.

The caller's promise when it reuses a Base (`scheduler.core.Scheduler`): the same `nodes` tuple
object, a Job object is not changed while it stays in `running` (the simulator only changes a
job when it leaves the running set), and a job id keeps its spec (true of every gpufleet job).
The live loop builds new objects every cycle, so there each job is simply new; `schedule()` always
builds a fresh Base.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass
from typing import Iterable

from gpufleet.domain import Job
from gpufleet.scheduler.backfill import Release
from gpufleet.scheduler.filters import Eligibility
from gpufleet.scheduler.state import ClusterState
from gpufleet.scheduler.types import Snapshot

NEVER = float("-inf")  # release "end" of a leaving job: the walk clamps it to now


@dataclass(slots=True)
class Run:
    """One running job as the scheduler sees it."""

    job: Job
    model: str | None  # the model of its first GPU on a known node
    on: dict[int, int]  # UP node -> GPUs of `model` it holds there
    takes: list[tuple[int, str, tuple[int, ...]]]  # (node, model, GPUs) it occupies, known nodes only
    nodes: list[int]  # known nodes of its allocation entries (CPUs and memory are held on each)
    gpus: int  # GPUs held (all entries)
    cls: int  # priority class
    leaving: bool  # being stopped (pending_action): its GPUs are on their way out
    booked: bool  # runs inside its booking: outside quota
    cpus: int  # per node
    mem: int  # per node, MiB
    releases: list[Release]  # when its GPUs come back, for backfill (raw end: started + limit)


class Base:
    def __init__(self, snapshot: Snapshot):
        cfg = snapshot.config
        self.nodes = snapshot.nodes
        self.foreign = dict(snapshot.foreign)
        self.topology = cfg.topology
        self.class_size = cfg.priority_class_size
        self.default_limit = cfg.default_time_limit_s
        self.state = ClusterState(snapshot.nodes, *_occupied(snapshot), cfg.topology)
        # (node, GPU) -> running jobs claiming it; built on the first update (a fresh Base for one
        # cycle never needs it)
        self.holders: dict[tuple[int, int], int] | None = None
        self.runs: dict[int, Run] = {}  # id(job) -> its Run
        self.used: dict[str, dict[str, int]] = {}  # tenant -> model -> GPUs held (quota view)
        self.classes: dict[tuple[str, int], int] = {}  # (model, class) -> running jobs, not leaving
        self.leaving: dict[int, Run] = {}
        self.floating: dict[int, Run] = {}  # running without a start time: they release at now + limit
        self.releases: list[tuple] = []  # sorted by raw end
        self.elig: dict[tuple, Eligibility] = {}  # static eligibility per requirement (no booking)
        self.shapes: dict[tuple, tuple] = {}  # (requirement, gpus, nodes) -> (eligible, models, reason)
        self.static: dict[int, tuple] = {}  # job id -> what of its spec decides a verdict, see Cycle
        for job in snapshot.running:  # the state already holds their GPUs, CPUs and memory
            self.runs[id(job)] = self._add(job, occupy=False)
        self.releases.sort()

    def serves(self, snapshot: Snapshot) -> bool:
        """May this Base be updated to `snapshot` (same nodes object, same foreign GPUs, same config)?"""
        cfg = snapshot.config
        return (snapshot.nodes is self.nodes and cfg.topology == self.topology
                and cfg.priority_class_size == self.class_size
                and cfg.default_time_limit_s == self.default_limit and snapshot.foreign == self.foreign)

    def update(self, running: Iterable[Job]) -> None:
        current = dict(zip(map(id, running), running))
        runs = self.runs
        if current.keys() == runs.keys():
            return
        if self.holders is None:
            self.holders = self._count_holders()
        for key in runs.keys() - current.keys():
            self._remove(runs.pop(key))
        for key in current.keys() - runs.keys():
            runs[key] = self._add(current[key])

    # -- one job in, one job out -------------------------------------------------------------------
    def _add(self, job: Job, occupy: bool = True) -> Run:
        state, spec = self.state, job.spec
        model = None
        on: dict[int, int] = {}
        takes: list[tuple[int, str, tuple[int, ...]]] = []
        nodes: list[int] = []
        cpus, mem = spec.cpus or 0, spec.mem_mb or 0
        for a in job.allocation:
            i = state.pos.get(a.node)
            if i is None:
                continue
            nodes.append(i)
            if occupy:
                state.take(i, None, (), cpus, mem)
            if not a.gpus:
                continue
            model_of = state.model_of[i]
            model = model or model_of.get(a.gpus[0])
            by_model: dict[str, list[int]] = {}
            for g in a.gpus:
                m = model_of.get(g)
                if m is not None:
                    by_model.setdefault(m, []).append(g)
            if state.up[i] and model is not None:
                on[i] = on.get(i, 0) + len(by_model.get(model, ()))
            for m, gs in by_model.items():
                takes.append((i, m, tuple(gs)))
                if occupy:
                    self._hold(i, m, gs)
        run = Run(job, model, on, takes, nodes, job.gpus_held, spec.priority // self.class_size,
                  bool(job.extra.get("pending_action")), spec.booking is not None, cpus, mem, [])
        if model is not None and run.gpus and not run.booked:
            per = self.used.setdefault(spec.tenant, {})
            per[model] = per.get(model, 0) + run.gpus
        if model is not None and on:
            end: float | None = NEVER
            if run.leaving:
                self.leaving[id(job)] = run
            else:
                key = (model, run.cls)
                self.classes[key] = self.classes.get(key, 0) + 1
                if job.started_at is None:
                    self.floating[id(job)] = run
                    end = None
                else:
                    end = job.started_at + (spec.time_limit_s or self.default_limit)
            if end is not None:
                run.releases = [(end, i, model, n, cpus, mem) for i, n in on.items()]
                if occupy:
                    for r in run.releases:
                        insort(self.releases, r)
                else:  # a fresh build sorts once at the end
                    self.releases.extend(run.releases)
        return run

    def _remove(self, run: Run) -> None:
        state = self.state
        for i in run.nodes:
            state.give(i, None, (), run.cpus, run.mem)
        for i, m, gs in run.takes:
            self._unhold(i, m, gs)
        if run.model is not None and run.gpus and not run.booked:
            self.used[run.job.spec.tenant][run.model] -= run.gpus
        self.leaving.pop(id(run.job), None)
        self.floating.pop(id(run.job), None)
        if run.model is not None and run.on and not run.leaving:  # counted in `classes` by `_add`
            key = (run.model, run.cls)
            self.classes[key] -= 1
            if not self.classes[key]:
                del self.classes[key]
        for r in run.releases:
            del self.releases[bisect_left(self.releases, r)]

    def _count_holders(self) -> dict[tuple[int, int], int]:
        holders: dict[tuple[int, int], int] = {}
        for name, idx in self.foreign.items():
            i = self.state.pos.get(name)
            if i is not None:
                for g in set(idx):
                    holders[(i, g)] = 1
        for run in self.runs.values():
            for i, _, gs in run.takes:
                for g in gs:
                    holders[(i, g)] = holders.get((i, g), 0) + 1
        return holders

    def _hold(self, i: int, model: str, gpus: Iterable[int]) -> None:
        holders, fresh = self.holders, []
        assert holders is not None
        for g in gpus:
            n = holders.get((i, g), 0)
            holders[(i, g)] = n + 1
            if not n:
                fresh.append(g)
        if fresh:
            self.state.take(i, model, fresh, 0, 0)

    def _unhold(self, i: int, model: str, gpus: Iterable[int]) -> None:
        holders, freed = self.holders, []
        assert holders is not None
        for g in gpus:
            n = holders[(i, g)] - 1
            if n:
                holders[(i, g)] = n
            else:
                del holders[(i, g)]
                freed.append(g)
        if freed:
            self.state.give(i, model, freed, 0, 0)

    # -- what a cycle reads ---------------------------------------------------------------------------
    def min_class(self) -> dict[str, int]:
        """model -> lowest priority class of a running job on it (jobs being stopped left out)."""
        out: dict[str, int] = {}
        for model, cls in self.classes:
            if cls < out.get(model, cls + 1):
                out[model] = cls
        return out

    def release_list(self, now: float) -> list[tuple]:
        """Every release, sorted by raw end (the backfill walk clamps ends to now)."""
        if not self.floating:
            return self.releases
        extra = []
        for run in self.floating.values():
            end = now + (run.job.spec.time_limit_s or self.default_limit)
            extra.extend((end, i, run.model, n, run.cpus, run.mem) for i, n in run.on.items())
        return sorted(self.releases + extra)


def _occupied(snapshot: Snapshot) -> tuple[dict[str, set[int]], dict[str, int], dict[str, int]]:
    """GPUs, CPUs and memory held per node name, to build a fresh state in one pass."""
    used: dict[str, set[int]] = {}
    cpu: dict[str, int] = {}
    mem: dict[str, int] = {}
    for job in snapshot.running:
        spec = job.spec
        for a in job.allocation:
            used.setdefault(a.node, set()).update(a.gpus)
            if spec.cpus:
                cpu[a.node] = cpu.get(a.node, 0) + spec.cpus
            if spec.mem_mb:
                mem[a.node] = mem.get(a.node, 0) + spec.mem_mb
    for node, idx in snapshot.foreign.items():
        used.setdefault(node, set()).update(idx)
    return used, cpu, mem

"""The discrete-event engine: the real `schedule()` on a virtual clock.

Events are job arrivals and job ends (ends of preempted runs are dropped by a run token).
All events at one instant are applied first, then ONE scheduling cycle runs (more only when the
cycle preempted, so the preemptor can take the freed GPUs at the same instant). A cycle runs
only when something changed and the queue is not empty, and is skipped (exactly: it could decide
nothing) while no GPU is free and no preemption is possible (preemption off, or one priority and
no tenant quota in the whole replay; priorities count by class). With `cycle_interval_s` > 0, cycles run at most once per
interval, like a live loop on a timer (an approximation; off by default). Decisions are applied as the live
control loop applies them: preemptions first (`transition(job, PENDING|FAILED)`), then
placements (allocation + `transition(job, RUNNING)`). The cluster state the snapshot needs is
kept incrementally (running / pending dicts, free GPUs per node, decayed usage per tenant).

Preempted jobs keep their progress (checkpoint/restore at no cost, as in Tiresias/Gandiva
simulators) unless `restart="scratch"`. A run longer than the job's time limit ends in TIMEOUT.
"""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass, field
from typing import Callable

from gpufleet.domain import Allocation, Job, JobSpec, JobState, Node, NodeState, transition
from gpufleet.scheduler import Decisions, Placement, Scheduler, SchedulerConfig, Snapshot
from gpufleet.scheduler.queue import las_preempts
from gpufleet.sim.cluster import Cluster
from gpufleet.sim.failures import FailureModel
from gpufleet.sim.faults import FAULT, INJECTED, FaultsMixin
from gpufleet.sim.recorder import Recorder
from gpufleet.sim.trace import Trace, TraceJob, gang_shape
from gpufleet.sim.usage import DecayedUsage

RESTART_MODES = ("resume", "scratch")
SchedulerFn = Callable[[Snapshot, float], Decisions]
Progress = Callable[[int, int], None]


class SimError(RuntimeError):
    """The scheduler decided something impossible (a bug there, never bad input)."""


@dataclass(slots=True)
class SimOptions:
    config: SchedulerConfig = field(default_factory=SchedulerConfig)
    restart: str = "resume"  # resume (progress kept) | scratch
    max_cycles_per_instant: int = 4  # cycles at one instant while each one preempts
    cycle_interval_s: float = 0.0  # 0: a cycle at every instant with news; S: at most one per S s
    progress_every: int = 2000  # events between progress callbacks
    failures: FailureModel | None = None  # node faults, checkpoints, restarts, spares (sim/faults.py)


class Simulation(FaultsMixin):
    def __init__(self, trace: Trace, cluster: Cluster, options: SimOptions | None = None,
                 scheduler: SchedulerFn | None = None):
        self.opt = options or SimOptions()
        self.cluster = cluster
        self.scheduler = scheduler or Scheduler()  # schedule() that keeps its index between cycles
        self.nodes: tuple[Node, ...] = tuple(cluster.nodes)
        self.width = cluster.node_gpus  # GPUs of a whole node, for gangs
        self.trace: list[TraceJob] = []
        self.rejected: list[tuple[TraceJob, str]] = []
        self.rec = Recorder(self.nodes, 0)  # all nodes count as capacity; sized after admission
        self.out: set[str] = set()  # nodes the scheduler may not use (down or spare)
        if self.opt.failures is not None:
            self._setup_faults(self.opt.failures)  # takes the spares out before admission
        self._admit(trace)
        n = len(self.trace)
        self.jobs: list[Job | None] = [None] * n  # index = job id - 1
        self.remaining = [j.duration_s for j in self.trace]
        self.tokens = [0] * n
        self.times_out = [False] * n  # the current run hits the time limit before the work is done
        self.pending: dict[int, Job] = {}
        self.running: dict[int, Job] = {}
        self.events: list[tuple[float, int, int]] = []  # (time, job id, run token); faults: < 0
        self.live = 0  # events in the heap that keep the replay going (all but faults)
        self.used: dict[str, set[int]] = {nd.name: set() for nd in self.nodes}
        self.usage = DecayedUsage(self.opt.config.fairshare_half_life_s, list(cluster.tenants))
        self.rec.size_jobs(n)
        self._job_params(self.opt.failures)
        if self.opt.failures is not None:
            self._arm_faults()
            heapq.heapify(self.events)
        self.now = 0.0
        self.dirty = False  # something changed since the last cycle
        self.next_cycle = 0.0
        self.tick_queued = False
        self.may_preempt = self._may_preempt()

    # -- set-up ---------------------------------------------------------------------------

    def _admit(self, trace: Trace) -> None:
        """Keep what the live API would accept; reject jobs no node set could ever hold."""
        up = [nd for nd in self.nodes if nd.state is NodeState.UP]
        width = self.width
        fitting: dict[tuple[int, str | None], int] = {}  # (GPUs per node, model) -> nodes that fit
        for tj in trace.sorted().jobs:
            nodes, per_node = gang_shape(tj, width)
            key = (per_node, tj.gpu_model)
            fit = fitting.get(key)
            if fit is None:
                fit = fitting[key] = sum(1 for nd in up if _fits(nd, per_node, tj.gpu_model))
            if fit < nodes:
                self.rejected.append((tj, f"needs {nodes}x{per_node} GPUs"
                                      f"{' ' + tj.gpu_model if tj.gpu_model else ''}, {fit} nodes fit"))
            else:
                self.trace.append(tj)

    def _may_preempt(self) -> bool:
        """Preemption is by priority class, quota reclaim or attained service (las): impossible
        without one of them."""
        if not self.opt.config.preemption:
            return False
        if las_preempts(self.opt.config):
            return True
        size = self.opt.config.priority_class_size  # jobs of one class never preempt each other
        if len({tj.priority // size for tj in self.trace}) > 1:
            return True
        return any(v > 0 for t in self.cluster.tenants.values() for v in t.quota.values())

    def _spec(self, tj: TraceJob) -> JobSpec:
        nodes, per_node = gang_shape(tj, self.width)
        return JobSpec(command=("sim",), gpus=per_node, nodes=nodes, gpu_model=tj.gpu_model,
                       time_limit_s=tj.time_limit_s, tenant=tj.tenant, priority=tj.priority,
                       name=tj.id)

    # -- the loop -------------------------------------------------------------------------

    def run(self, progress: Progress | None = None) -> "Recorder":
        wall0 = time.perf_counter()
        arrivals, n, ai, batches = self.trace, len(self.trace), 0, 0
        events = self.events
        while ai < n or self.live:
            t = min(arrivals[ai].submit_s if ai < n else math.inf, events[0][0] if events else math.inf)
            self._advance(t)
            while events and events[0][0] <= t:
                ev = heapq.heappop(events)
                if ev[1] != FAULT and ev[1] != INJECTED:
                    self.live -= 1
                self.dirty |= self._end(*ev)
            while ai < n and arrivals[ai].submit_s <= t:
                self._arrive(ai, t)
                ai += 1
                self.dirty = True
            if self.dirty:
                self._maybe_cycle(t)
            self.rec.sample(t, len(self.pending), self.rec.busy)
            batches += 1
            if progress and batches % self.opt.progress_every == 0:
                progress(self.rec.finished, n)
        if progress:
            progress(self.rec.finished, n)
        self.rec.wall_s = time.perf_counter() - wall0
        self.rec.unfinished = len(self.pending) + len(self.running)
        return self.rec

    def _maybe_cycle(self, t: float) -> None:
        if not self.pending:
            self.dirty = False
            return
        if self.rec.free_total == 0 and not self.may_preempt:
            return  # nothing could be decided; stay dirty until GPUs free up
        interval = self.opt.cycle_interval_s
        if interval > 0 and t < self.next_cycle:
            if not self.tick_queued:
                self.events_push(self.next_cycle, 0, 0)
                self.tick_queued = True
            return
        self.dirty = False
        self.next_cycle = t + interval
        self._cycles(t)

    def _advance(self, t: float) -> None:
        if t > self.now:
            self.rec.accrue(self.now, t, len(self.pending))
            self.usage.advance(t)
            self.now = t

    def _arrive(self, idx: int, t: float) -> None:
        tj = self.trace[idx]
        job = Job(id=idx + 1, spec=self._spec(tj), user=tj.tenant, submitted_at=tj.submit_s)
        self.jobs[idx] = job
        self.pending[job.id] = job

    def events_push(self, t: float, kind: int, token: int) -> None:
        heapq.heappush(self.events, (t, kind, token))
        if kind != FAULT and kind != INJECTED:
            self.live += 1

    def _end(self, t: float, job_id: int, token: int) -> bool:
        if job_id <= 0:
            if job_id < 0:
                return self._node_event(job_id, token, t)
            self.tick_queued = False  # the cycle timer
            return False
        idx = job_id - 1
        if token != self.tokens[idx]:
            return False  # the run was preempted; this end belongs to the past
        job = self.running.pop(job_id)
        ran = t - job.started_at if job.started_at is not None else 0.0
        done = not self.times_out[idx]
        held = job.allocation
        transition(job, JobState.SUCCEEDED if done else JobState.TIMEOUT,
                   "" if done else "TimeLimit", t)
        self._progress(idx, held, ran, saved_only=False)
        if done:
            self.remaining[idx] = 0.0
        self._release(job, held, ran)
        self.rec.finish(job, self.trace[idx], t)
        return True

    # -- cycles and decisions -------------------------------------------------------------

    def snapshot(self, now: float) -> Snapshot:
        """The frozen state a cycle decides on: exactly what the live control loop hands over."""
        return Snapshot(
            nodes=self.nodes,
            running=tuple(self.running.values()),
            pending=tuple(self.pending.values()),
            tenants=self.cluster.tenants,
            usage=self.usage.snapshot(),
            config=self.opt.config,
        )

    def _cycles(self, t: float) -> None:
        for _ in range(self.opt.max_cycles_per_instant):
            snap = self.snapshot(t)
            t0 = time.perf_counter()
            decisions = self.scheduler(snap, t)
            self.rec.cycle(time.perf_counter() - t0)
            self.apply(decisions, t)
            if not decisions.preemptions or not self.pending:
                return

    def apply(self, decisions: Decisions, t: float) -> None:
        for p in decisions.preemptions:
            self._preempt(p.job_id, p.reason, p.requeue, t)
        for p in decisions.placements:
            self._place(p, t)

    def _preempt(self, job_id: int, reason: str, requeue: bool, t: float) -> None:
        job = self.running.pop(job_id, None)
        if job is None:
            raise SimError(f"scheduler preempted job {job_id}, which is not running")
        idx = job_id - 1
        ran = t - job.started_at if job.started_at is not None else 0.0
        held = job.allocation
        requeue = requeue and job.spec.requeue
        transition(job, JobState.PENDING if requeue else JobState.FAILED, reason or "Preempted", t)
        self.tokens[idx] += 1
        resume = self.opt.restart == "resume"
        kept = self._progress(idx, held, ran, saved_only=False, keep=resume)
        if resume:
            self.remaining[idx] = max(0.0, self.remaining[idx] - kept)
        self._release(job, held, ran)
        self.rec.preempted(job)
        if requeue:
            self.pending[job_id] = job
        else:
            self.rec.finish(job, self.trace[idx], t)

    def _place(self, p: Placement, t: float) -> None:
        job = self.pending.pop(p.job_id, None)
        if job is None:
            raise SimError(f"scheduler placed job {p.job_id}, which is not pending")
        self._check(job, p.allocation)
        for a in p.allocation:
            self.used[a.node].update(a.gpus)
        job.allocation = p.allocation
        transition(job, JobState.RUNNING, "", t)
        self.running[job.id] = job
        idx = job.id - 1
        run = self.remaining[idx] if self.opt.failures is None else self._run_wall(idx, t)
        limit = job.spec.time_limit_s
        self.times_out[idx] = limit is not None and run > limit
        if self.times_out[idx]:
            run = float(limit)
        self.tokens[idx] += 1
        heapq.heappush(self.events, (t + run, job.id, self.tokens[idx]))
        self.live += 1
        gpus = job.gpus_held
        self.usage.change(job.tenant, gpus)
        self.rec.started(job, p.allocation, t)

    def _check(self, job: Job, alloc: tuple[Allocation, ...]) -> None:
        spec = job.spec
        low = spec.nodes_min or spec.nodes  # an elastic gang: between nodes_min and nodes
        if not low <= len(alloc) <= spec.nodes or len({a.node for a in alloc}) != len(alloc):
            need = spec.nodes if low == spec.nodes else f"{low}:{spec.nodes}"
            raise SimError(f"job {job.id}: placed on {len(alloc)} nodes, needs {need} distinct")
        for a in alloc:
            used = self.used.get(a.node)
            if used is None:
                raise SimError(f"job {job.id}: placed on unknown node {a.node}")
            if a.node in self.out:
                raise SimError(f"job {job.id}: placed on {a.node}, which is down or a spare")
            if len(set(a.gpus)) != spec.gpus:
                raise SimError(f"job {job.id}: got {len(a.gpus)} GPUs on {a.node}, needs {spec.gpus}")
            if used.intersection(a.gpus):
                raise SimError(f"job {job.id}: GPUs {sorted(used & set(a.gpus))} on {a.node} are taken")

    def _release(self, job: Job, held: tuple[Allocation, ...], ran: float) -> None:
        gpus = 0
        for a in held:
            self.used[a.node].difference_update(a.gpus)
            gpus += len(a.gpus)
        self.usage.change(job.tenant, -gpus)
        self.rec.released(held, gpus * ran)


def _fits(node: Node, per_node: int, model: str | None) -> bool:
    if model is None:
        return len(node.gpus) >= per_node
    return sum(1 for g in node.gpus if g.model == model) >= per_node

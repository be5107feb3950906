"""What the engine records while it runs: per-job times, time-weighted cluster state, a timeline.

Fragmentation at an instant = the share of free GPUs that sit on partly used nodes (free GPUs a
whole-node job cannot use); 0 when no GPU is free. `avg_fragmentation` is its time average.
"""

from __future__ import annotations

import math
from typing import Sequence

from gpufleet.domain import Allocation, Job, Node, NodeState
from gpufleet.sim.trace import TraceJob

NAN = math.nan


class Recorder:
    def __init__(self, nodes: Sequence[Node], n_jobs: int):
        up = [nd for nd in nodes if nd.state is NodeState.UP]
        self.size = {nd.name: len(nd.gpus) for nd in nodes}
        self.free = {nd.name: len(nd.gpus) if nd.state is NodeState.UP else 0 for nd in nodes}
        self.total_gpus = sum(len(nd.gpus) for nd in up)
        self.free_total = self.total_gpus
        self.whole_free = self.total_gpus  # free GPUs on entirely free nodes
        self.busy = 0
        self.size_jobs(n_jobs)
        self.finished = 0
        self.preemptions = 0
        self.unfinished = 0
        # time-weighted integrals
        self.busy_gpu_s = 0.0
        self.frag_s = 0.0
        self.queue_s = 0.0
        self.t_first = NAN
        self.t_last = 0.0
        # timeline samples, one per event instant
        self.t: list[float] = []
        self.queue_len: list[int] = []
        self.busy_gpus: list[int] = []
        self.cycles = 0
        self.scheduler_s = 0.0
        self.wall_s = 0.0
        # goodput: allocated = useful + lost + restart + checkpoint GPU-seconds (sim/faults.py)
        self.alloc_gpu_s = 0.0
        self.useful_gpu_s = 0.0
        self.lost_gpu_s = 0.0  # progress not checkpointed when a fault hit (or discarded: scratch)
        self.restart_gpu_s = 0.0
        self.checkpoint_gpu_s = 0.0
        self.restarts = 0  # runs killed by a node fault (a gang counts once)
        self.node_faults = 0
        self.spare_replacements = 0
        self.time_to_restart: list[float] = []  # fault -> the new attempt makes progress again

    def size_jobs(self, n_jobs: int) -> None:
        """Per-job arrays (index = id - 1)."""
        self.first_start = [NAN] * n_jobs
        self.end = [NAN] * n_jobs
        self.run_s = [0.0] * n_jobs
        self.gpus = [0] * n_jobs
        self.state: list[str] = [""] * n_jobs
        self.tenant: list[str] = [""] * n_jobs
        self.submit = [NAN] * n_jobs
        self.duration = [NAN] * n_jobs

    def accrue(self, t0: float, t1: float, queue: int) -> None:
        dt = t1 - t0
        self.busy_gpu_s += self.busy * dt
        self.queue_s += queue * dt
        if self.free_total:
            self.frag_s += (self.free_total - self.whole_free) / self.free_total * dt

    def sample(self, t: float, queue: int, busy: int) -> None:
        if self.t and self.t[-1] == t:
            self.queue_len[-1] = queue
            self.busy_gpus[-1] = busy
            return
        self.t.append(t)
        self.queue_len.append(queue)
        self.busy_gpus.append(busy)

    def cycle(self, seconds: float) -> None:
        self.cycles += 1
        self.scheduler_s += seconds

    def started(self, job: Job, alloc: tuple[Allocation, ...], t: float) -> None:
        idx = job.id - 1
        if self.first_start[idx] != self.first_start[idx]:  # NaN: first run
            self.first_start[idx] = t
        for a in alloc:
            n = len(a.gpus)
            if self.free[a.node] == self.size[a.node]:
                self.whole_free -= self.size[a.node]
            self.free[a.node] -= n
            self.free_total -= n
            self.busy += n

    def node_out(self, name: str) -> None:
        """An idle node leaves the pool (down, or kept as a spare); it stays in the capacity."""
        n = self.free[name]
        if n == self.size[name]:
            self.whole_free -= n
        self.free_total -= n
        self.free[name] = 0

    def node_in(self, name: str) -> None:
        n = self.size[name]
        self.free[name] = n
        self.free_total += n
        self.whole_free += n

    def released(self, held: tuple[Allocation, ...], gpu_s: float) -> None:
        self.alloc_gpu_s += gpu_s
        for a in held:
            n = len(a.gpus)
            self.free[a.node] += n
            self.free_total += n
            self.busy -= n
            if self.free[a.node] == self.size[a.node]:
                self.whole_free += self.size[a.node]

    def preempted(self, job: Job) -> None:
        self.preemptions += 1

    def finish(self, job: Job, tj: TraceJob, t: float) -> None:
        idx = job.id - 1
        self.end[idx] = t
        self.state[idx] = job.state.value
        self.tenant[idx] = tj.tenant
        self.submit[idx] = tj.submit_s
        self.duration[idx] = tj.duration_s
        self.gpus[idx] = job.spec.total_gpus
        self.run_s[idx] = job.attained_gpu_s / max(1, job.spec.total_gpus) if job.attained_gpu_s else 0.0
        if job.started_at is not None and job.ended_at is not None:
            self.run_s[idx] += job.ended_at - job.started_at
        self.finished += 1
        self.t_last = max(self.t_last, t)

"""What goes into and comes out of `schedule()`. Frozen, plain, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from gpufleet.domain import Allocation, Booking, Job, Node, Tenant

POLICIES = ("fifo", "priority", "fairshare", "sjf", "las")


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    policy: str = "fifo"  # queue order: fifo | priority | fairshare | sjf | las
    backfill: bool = True  # EASY backfill behind the head job
    preemption: bool = True  # priority and quota reclaim may preempt
    topology: bool = True  # NVLink-group / rack aware best fit (False: first fit)
    default_time_limit_s: int = 86400  # for jobs without one (backfill, sjf)
    fairshare_half_life_s: float = 7 * 86400.0
    max_placements_per_cycle: int = 100_000
    # jobs p, q share a priority class when p // priority_class_size == q // priority_class_size;
    # classes order the queue before any policy, and only a higher class preempts by priority
    priority_class_size: int = 100
    max_reservations: int = 4  # EASY backfill: blocked head jobs that reserve capacity (one per GPU model)
    max_preemptors_per_cycle: int = 16  # pending jobs that may choose victims in one cycle
    # the oldest job pending longer than this goes first in its class, whatever the policy: under
    # backfill it is then a head that reserves, so no policy postpones it forever (0: off)
    starvation_s: float = 7 * 86400.0
    # las: Tiresias' two queues. A job below this attained GPU-service (GPU-seconds) may preempt
    # running jobs of its priority class above it (0: las only orders the queue, no preemption)
    las_threshold_gpu_s: float = 7200.0
    # hot spares: nodes per topology domain (network block, else rack) held idle or running only
    # preemptible work, for gangs restarted after a fault (filters/spares.py); nodes labelled
    # spare=true are spares whatever this says (0: only those)
    spares_per_block: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The frozen cluster state a cycle decides on."""

    nodes: tuple[Node, ...]
    running: tuple[Job, ...]  # RUNNING jobs and their allocations
    pending: tuple[Job, ...]  # PENDING jobs, any order
    tenants: Mapping[str, Tenant] = field(default_factory=dict)
    bookings: tuple[Booking, ...] = ()
    # decayed GPU-seconds used per tenant, computed by the caller (control loop or simulator)
    usage: Mapping[str, float] = field(default_factory=dict)
    # GPUs held by work gpufleet did not start (Slurm/Kubernetes jobs of others): node -> indices
    foreign: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    config: SchedulerConfig = SchedulerConfig()


@dataclass(frozen=True, slots=True)
class Placement:
    job_id: int
    allocation: tuple[Allocation, ...]  # one entry per rank, rank 0 first


@dataclass(frozen=True, slots=True)
class Preemption:
    job_id: int
    reason: str  # e.g. "Preempted(for job 42: priority 10 > 0)"
    requeue: bool = True


@dataclass(slots=True)
class Decisions:
    placements: list[Placement] = field(default_factory=list)
    preemptions: list[Preemption] = field(default_factory=list)
    reasons: dict[int, str] = field(default_factory=dict)  # job id -> pending reason
    stats: dict[str, float] = field(default_factory=dict)  # cycle statistics for metrics

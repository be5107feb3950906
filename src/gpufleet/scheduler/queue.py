"""Step 1: order the queue. Priority classes first, then the configured policy inside each class.

A job's priority class is `spec.priority // config.priority_class_size` (default bands of 100:
0..99 is class 0 "normal", 100..199 class 1, negative priorities are classes below normal).
Classes always come first, whatever the policy; inside a class the policy decides:

    fifo       submit time
    priority   spec.priority (high first), then submit time
    fairshare  tenants take turns by (decayed usage + what this queue already charged) / weight
    sjf        time limit (short first; no limit = config.default_time_limit_s)
    las        least attained GPU-service (Job.attained_gpu_s from earlier runs), Tiresias-like
"""

from __future__ import annotations

import heapq
from typing import Callable, Iterable, Mapping

from gpufleet.domain import Job, Tenant
from gpufleet.scheduler.types import POLICIES, SchedulerConfig

SortKey = Callable[[Job], tuple]


def priority_class(job: Job, config: SchedulerConfig) -> int:
    return job.spec.priority // config.priority_class_size


def time_limit(job: Job, config: SchedulerConfig) -> int:
    return job.spec.time_limit_s or config.default_time_limit_s


def attained_gpu_s(job: Job, now: float) -> float:
    """GPU-seconds a job has had: earlier runs plus the current one when it is running."""
    if job.started_at is None or not job.allocation:
        return job.attained_gpu_s
    return job.attained_gpu_s + job.gpus_held * max(0.0, now - job.started_at)


def order_queue(pending: Iterable[Job], config: SchedulerConfig, usage: Mapping[str, float],
                tenants: Mapping[str, Tenant], now: float = 0.0) -> list[list[Job]]:
    """The pending jobs as one list per priority class, highest class first, policy order inside."""
    if config.policy not in POLICIES:
        raise ValueError(f"unknown queue policy {config.policy!r}; choose one of {', '.join(POLICIES)}")
    size = config.priority_class_size
    classes: dict[int, list[Job]] = {}
    for job in pending:
        classes.setdefault(job.spec.priority // size, []).append(job)
    ordered = []
    for cls in sorted(classes, reverse=True):
        jobs = classes[cls]
        if config.policy == "fairshare":
            ordered.append(fairshare_order(jobs, config, usage, tenants))
        else:
            jobs.sort(key=_policy_key(config, now))
            ordered.append(jobs)
    return ordered


def _policy_key(config: SchedulerConfig, now: float) -> SortKey:
    default = config.default_time_limit_s
    if config.policy == "priority":
        return lambda j: (-j.spec.priority, j.submitted_at, j.id)
    if config.policy == "sjf":
        return lambda j: (j.spec.time_limit_s or default, j.submitted_at, j.id)
    if config.policy == "las":
        return lambda j: (attained_gpu_s(j, now), j.submitted_at, j.id)
    return lambda j: (j.submitted_at, j.id)  # fifo


def fairshare_order(jobs: list[Job], config: SchedulerConfig, usage: Mapping[str, float],
                    tenants: Mapping[str, Tenant]) -> list[Job]:
    """Merge per-tenant queues: the next job always comes from the tenant with the least weighted share.

    A tenant's share starts at its decayed usage (GPU-seconds) and grows, as its jobs are taken,
    by what each would use (GPUs x time limit): one tenant cannot take the whole class just because
    it was idle last week, and an equal-usage tie alternates tenants.
    """
    per_tenant: dict[str, list[Job]] = {}
    for job in jobs:
        per_tenant.setdefault(job.spec.tenant, []).append(job)
    default = config.default_time_limit_s
    heap = []
    for name, queue in per_tenant.items():
        queue.sort(key=lambda j: (-j.spec.priority, j.submitted_at, j.id))
        tenant = tenants.get(name)
        weight = tenant.weight if tenant is not None and tenant.weight > 0 else 1.0
        heap.append((usage.get(name, 0.0) / weight, name, weight, 0))
    heapq.heapify(heap)
    out: list[Job] = []
    while heap:
        share, name, weight, pos = heap[0]
        queue = per_tenant[name]
        job = queue[pos]
        out.append(job)
        if pos + 1 < len(queue):
            charge = job.spec.gpus * job.spec.nodes * (job.spec.time_limit_s or default)
            heapq.heapreplace(heap, (share + charge / weight, name, weight, pos + 1))
        else:
            heapq.heappop(heap)
    return out

"""Step 1: order the queue. Priority classes first, then the configured policy inside each class.

A job's priority class is `spec.priority // config.priority_class_size` (default bands of 100:
0..99 is class 0 "normal", 100..199 class 1, negative priorities are classes below normal).
Classes always come first, whatever the policy; inside a class the policy decides:

    fifo       submit time
    priority   spec.priority (high first), then submit time
    fairshare  tenants take turns by (decayed usage + what this queue already charged) / weight
    sjf        time limit (short first; no limit = config.default_time_limit_s)
    las        least attained GPU-service (Job.attained_gpu_s from earlier runs), Tiresias-like; with
               `las_threshold_gpu_s` jobs below it also preempt jobs of their class above it

Starvation guard: a job pending longer than `config.starvation_s` goes ahead of every other job of
its class, oldest first (like Slurm's age factor, or Tiresias' STARVELIMIT promotion). Under
backfill it is then among the heads that reserve capacity, so its wait is bounded by the running
jobs' time limits whatever the policy prefers (SJF would otherwise postpone a long job forever).
"""

from __future__ import annotations

from itertools import accumulate
from operator import attrgetter
from typing import Iterable, Mapping

from gpufleet.domain import Job, Tenant
from gpufleet.scheduler.types import POLICIES, SchedulerConfig



def priority_class(job: Job, config: SchedulerConfig) -> int:
    return job.spec.priority // config.priority_class_size


def las_preempts(config: SchedulerConfig) -> bool:
    return config.policy == "las" and config.las_threshold_gpu_s > 0 and config.preemption


def preempt_class(job: Job, config: SchedulerConfig, now: float) -> int:
    """The class that decides who may preempt whom: the priority class, and under `las` (Tiresias'
    discretized two queues) also the queue: below `las_threshold_gpu_s` of attained GPU-service
    ranks above it. A job pending since longer than `starvation_s` counts as below (Tiresias
    promotes starving jobs), so it is not preempted again for attained service."""
    cls = job.spec.priority // config.priority_class_size
    if not las_preempts(config):
        return cls
    starving = config.starvation_s > 0 and now - job.submitted_at > config.starvation_s
    low = starving or attained_gpu_s(job, now) < config.las_threshold_gpu_s
    return 2 * cls + (1 if low else 0)


def lowest_preempt_class(cls: int, config: SchedulerConfig) -> int:
    """The lowest `preempt_class` a running job of priority class `cls` can have."""
    return 2 * cls if las_preempts(config) else cls


def priority_class_of(preempt_cls: int, config: SchedulerConfig) -> int:
    """The priority class inside a `preempt_class`."""
    return preempt_cls // 2 if las_preempts(config) else preempt_cls


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
        cls = job.spec.priority // size
        lst = classes.get(cls)
        if lst is None:
            lst = classes[cls] = []
        lst.append(job)
    ordered = []
    for cls in sorted(classes, reverse=True):
        jobs = classes[cls]
        if config.policy == "fairshare":
            jobs = fairshare_order(jobs, config, usage, tenants)
        else:
            _policy_sort(jobs, config, now)
        if config.starvation_s > 0 and config.policy != "fifo":
            jobs = starved_first(jobs, now - config.starvation_s)
        ordered.append(jobs)
    return ordered


def starved_first(jobs: list[Job], since: float) -> list[Job]:
    """The oldest job submitted before `since` first, then the others in their order."""
    if not jobs or min(map(_BY_SUBMIT, jobs)) >= since:
        return jobs
    oldest = min((j for j in jobs if j.submitted_at < since), key=lambda j: (j.submitted_at, j.id))
    if oldest is jobs[0]:
        return jobs
    return [oldest] + [j for j in jobs if j is not oldest]


_BY_ID, _BY_SUBMIT, _BY_PRIORITY = attrgetter("id"), attrgetter("submitted_at"), attrgetter("spec.priority")


def _fifo_sort(jobs: list[Job]) -> None:
    """(submitted_at, id) by two stable sorts on C-level keys: much faster than a tuple key."""
    jobs.sort(key=_BY_ID)
    jobs.sort(key=_BY_SUBMIT)


def _policy_sort(jobs: list[Job], config: SchedulerConfig, now: float) -> None:
    _fifo_sort(jobs)  # every policy breaks its ties by submit time, then id (stable sorts)
    if config.policy == "priority":
        jobs.sort(key=_BY_PRIORITY, reverse=True)  # reverse keeps equal keys in order
    elif config.policy == "sjf":
        default = config.default_time_limit_s
        jobs.sort(key=lambda j: j.spec.time_limit_s or default)
    elif config.policy == "las":
        jobs.sort(key=lambda j: attained_gpu_s(j, now))


def fairshare_order(jobs: list[Job], config: SchedulerConfig, usage: Mapping[str, float],
                    tenants: Mapping[str, Tenant]) -> list[Job]:
    """Merge per-tenant queues: the next job always comes from the tenant with the least weighted share.

    A tenant's share starts at its decayed usage (GPU-seconds) and grows, as its jobs are taken,
    by what each would use (GPUs x time limit): one tenant cannot take the whole class just because
    it was idle last week, and an equal-usage tie alternates tenants. Inside a tenant: priority,
    then submit time. Computed as each job's share before it is taken, then one stable sort.
    """
    per_tenant: dict[str, list[Job]] = {}
    for job in jobs:
        per_tenant.setdefault(job.spec.tenant, []).append(job)
    default = config.default_time_limit_s
    flat: list[Job] = []
    shares: list[float] = []
    for name in sorted(per_tenant):
        queue = per_tenant[name]
        _fifo_sort(queue)
        queue.sort(key=_BY_PRIORITY, reverse=True)
        tenant = tenants.get(name)
        weight = tenant.weight if tenant is not None and tenant.weight > 0 else 1.0
        charges = [j.spec.gpus * j.spec.nodes * (j.spec.time_limit_s or default) / weight for j in queue[:-1]]
        flat.extend(queue)
        shares.extend(accumulate(charges, initial=usage.get(name, 0.0) / weight))
    order = sorted(range(len(flat)), key=shares.__getitem__)  # stable: ties by tenant name, then turn
    return [flat[i] for i in order]

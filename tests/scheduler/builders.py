"""Builders for scheduler tests (and the simulator's): short, explicit, deterministic.

    node = make_node("n1", gpus=8, model="h100", groups=2, rack="r1")
    job = make_job(gpus=8, tenant="a")                       # pending, id auto-assigned
    run = make_running(gpus=4, on="n1", started_at=0.0)      # running on n1, GPUs 0..3
    snap = make_snapshot(nodes=[node], pending=[job], running=[run], policy="fairshare")
"""

from __future__ import annotations

import itertools
from typing import Iterable, Mapping, Sequence

from gpufleet.domain import Allocation, Booking, Gpu, Job, JobSpec, JobState, Node, NodeKind, NodeState, Tenant
from gpufleet.scheduler.types import SchedulerConfig, Snapshot

_ids = itertools.count(1)


def next_id() -> int:
    return next(_ids)


def make_node(name: str = "n1", gpus: int = 8, model: str = "a100", *, groups: int = 1,
              rack: str | None = None, switch: str | None = None, labels: Mapping[str, str] | None = None,
              state: NodeState | str = NodeState.UP, kind: NodeKind | str = NodeKind.SERVER,
              arch: str = "x86_64", cpus: int = 0, mem_mb: int = 0) -> Node:
    """A node with `gpus` GPUs of `model` split evenly into `groups` NVLink groups (0, 0, 1, 1 ...)."""
    per_group = max(1, -(-gpus // max(1, groups)))
    gs = tuple(Gpu(index=i, model=model, uuid=f"GPU-{name}-{i}", memory_mb=81920, group=i // per_group)
               for i in range(gpus))
    all_labels = dict(labels or {})
    if rack is not None:
        all_labels["rack"] = rack
    if switch is not None:
        all_labels["switch"] = switch
    return Node(name=name, kind=NodeKind(kind), arch=arch, cpus=cpus, mem_mb=mem_mb, labels=all_labels,
                gpus=gs, state=NodeState(state))


def make_nodes(count: int, prefix: str = "n", *, nodes_per_rack: int | None = None,
               racks_per_switch: int | None = None, **kw) -> list[Node]:
    """`count` nodes n001.. ; with nodes_per_rack, labels rack=r01.. (and switch=s01.. per racks_per_switch)."""
    out = []
    width = max(3, len(str(count)))
    for i in range(count):
        rack = switch = None
        if nodes_per_rack:
            r = i // nodes_per_rack
            rack = f"r{r + 1:02d}"
            if racks_per_switch:
                switch = f"s{r // racks_per_switch + 1:02d}"
        out.append(make_node(f"{prefix}{i + 1:0{width}d}", rack=rack, switch=switch, **kw))
    return out


def make_job(gpus: int = 1, *, nodes: int = 1, tenant: str = "default", priority: int = 0,
             gpu_model: str | None = None, time_limit_s: int | None = None, id: int | None = None,
             submitted_at: float | None = None, constraints: Mapping[str, str] | None = None,
             booking: int | None = None, requeue: bool = True, cpus: int | None = None,
             mem_mb: int | None = None, attained_gpu_s: float = 0.0, name: str | None = None,
             nodes_min: int | None = None, failures: int = 0, previous: Sequence[str] = ()) -> Job:
    """A PENDING job. Ids are auto-assigned in creation order; submitted_at defaults to the id.
    nodes_min: an elastic gang (nodes_min:nodes); failures/previous: a gang restarted after a fault
    whose previous attempt ran on the nodes `previous`."""
    jid = next_id() if id is None else id
    spec = JobSpec(command=("train",), gpus=gpus, nodes=nodes, gpu_model=gpu_model, cpus=cpus, mem_mb=mem_mb,
                   time_limit_s=time_limit_s, tenant=tenant, priority=priority, name=name,
                   constraints=dict(constraints or {}), booking=booking, requeue=requeue, nodes_min=nodes_min)
    job = Job(id=jid, spec=spec, submitted_at=float(jid if submitted_at is None else submitted_at),
              attained_gpu_s=attained_gpu_s, failures=failures, restarts=failures)
    if previous:
        job.extra["previous_nodes"] = tuple(previous)
    return job


def make_running(gpus: int = 1, *, on: str | Sequence[str] | Sequence[tuple[str, Sequence[int]]] = "n1",
                 started_at: float = 0.0, first_gpu: int = 0, **kw) -> Job:
    """A RUNNING job. `on` is a node name, several names (a gang), or explicit (node, gpu indices) pairs.

    With names only, each rank holds GPUs first_gpu .. first_gpu+gpus-1 on its node.
    """
    if isinstance(on, str):
        on = [on]
    allocs = []
    for item in on:
        if isinstance(item, str):
            allocs.append(Allocation(item, tuple(range(first_gpu, first_gpu + gpus))))
        else:
            allocs.append(Allocation(item[0], tuple(item[1])))
    kw.setdefault("nodes", len(allocs))
    job = make_job(gpus=len(allocs[0].gpus), **kw)
    job.state = JobState.RUNNING
    job.started_at = started_at
    job.allocation = tuple(allocs)
    return job


def make_tenant(name: str, quota: Mapping[str, int] | None = None, *, limit: Mapping[str, int] | None = None,
                weight: float = 1.0, can_borrow: bool = True) -> Tenant:
    return Tenant(name=name, quota=dict(quota or {}), limit=None if limit is None else dict(limit),
                  weight=weight, can_borrow=can_borrow)


def make_booking(id: int = 1, *, tenant: str = "a", nodes: Sequence[str] = ("n1",), start: float = 0.0,
                 end: float = 3600.0, exclusive: bool = True) -> Booking:
    return Booking(id=id, tenant=tenant, nodes=tuple(nodes), start=start, end=end, exclusive=exclusive)


def make_snapshot(nodes: Iterable[Node] = (), *, pending: Iterable[Job] = (), running: Iterable[Job] = (),
                  tenants: Iterable[Tenant] | Mapping[str, Tenant] = (), bookings: Iterable[Booking] = (),
                  usage: Mapping[str, float] | None = None, foreign: Mapping[str, Sequence[int]] | None = None,
                  config: SchedulerConfig | None = None, **config_fields) -> Snapshot:
    """A Snapshot; extra keyword arguments are SchedulerConfig fields (policy="fairshare", backfill=False)."""
    if not isinstance(tenants, Mapping):
        tenants = {t.name: t for t in tenants}
    cfg = config or SchedulerConfig(**config_fields)
    return Snapshot(nodes=tuple(nodes), running=tuple(running), pending=tuple(pending), tenants=dict(tenants),
                    bookings=tuple(bookings), usage=dict(usage or {}),
                    foreign={k: tuple(v) for k, v in (foreign or {}).items()}, config=cfg)


def placed(decisions) -> dict[int, tuple[Allocation, ...]]:
    """job id -> allocation of the placements in `decisions`."""
    return {p.job_id: p.allocation for p in decisions.placements}


def nodes_of(decisions, job_id: int) -> list[str]:
    return [a.node for a in placed(decisions)[job_id]]


def preempted(decisions) -> dict[int, object]:
    """job id -> Preemption."""
    return {p.job_id: p for p in decisions.preemptions}

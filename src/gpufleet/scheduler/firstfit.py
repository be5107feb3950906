"""The first-fit placeholder kept as a baseline (bench/scheduler.py compares against it): FIFO order,
first node that fits, no quota, no gangs across racks, no backfill, no preemption."""

from __future__ import annotations

from gpufleet.domain import Allocation, Job, NodeState
from gpufleet.scheduler.types import Decisions, Placement, Snapshot


def schedule_first_fit(snapshot: Snapshot, now: float) -> Decisions:
    """1. order the queue (FIFO)  2. place first-fit  3. give every job left a reason."""
    decisions = Decisions()
    free = _free_gpus(snapshot)
    up = [n for n in snapshot.nodes if n.state is NodeState.UP]
    models = {g.model for n in snapshot.nodes for g in n.gpus}
    for job in sorted(snapshot.pending, key=lambda j: (-j.spec.priority, j.submitted_at, j.id)):
        alloc = _first_fit(job, up, free)
        if alloc is None:
            decisions.reasons[job.id] = _reason(job, up, free, models)
            continue
        for a in alloc:
            free[a.node] = [g for g in free[a.node] if g not in a.gpus]
        decisions.placements.append(Placement(job.id, alloc))
    return decisions


def _free_gpus(snapshot: Snapshot) -> dict[str, list[int]]:
    used: dict[str, set[int]] = {}
    for job in snapshot.running:
        for a in job.allocation:
            used.setdefault(a.node, set()).update(a.gpus)
    for node, idx in snapshot.foreign.items():
        used.setdefault(node, set()).update(idx)
    return {
        n.name: [g.index for g in n.gpus if g.index not in used.get(n.name, ())]
        for n in snapshot.nodes
    }


def _fits(job: Job, node) -> bool:
    spec = job.spec
    if spec.gpu_model and spec.gpu_model not in node.gpu_models:
        return False
    return all(node.attribute(k) == v for k, v in spec.constraints.items())


def _first_fit(job: Job, up, free) -> tuple[Allocation, ...] | None:
    spec = job.spec
    chosen: list[Allocation] = []
    for node in up:
        if not _fits(job, node):
            continue
        gpus = [i for i in free[node.name] if not spec.gpu_model
                or node.gpus[i].model == spec.gpu_model] if spec.gpus else []
        if len(gpus) >= spec.gpus:
            chosen.append(Allocation(node.name, tuple(gpus[: spec.gpus])))
            if len(chosen) == spec.nodes:
                return tuple(chosen)
    return None


def _reason(job: Job, up, free, models) -> str:
    spec = job.spec
    if spec.gpu_model and spec.gpu_model not in models:
        return f"NodeConstraint(gpu_model={spec.gpu_model} matches 0 nodes)"
    matching = [n for n in up if _fits(job, n)]
    if len(matching) < spec.nodes:
        return f"NodeConstraint(needs {spec.nodes} up nodes, {len(matching)} match)"
    largest = max((len(free[n.name]) for n in matching), default=0)
    return f"Resources(needs {spec.nodes}x{spec.gpus} GPUs, largest free {largest})"

"""Rows <-> domain objects."""

from __future__ import annotations

from gpufleet.domain import (
    Allocation, Attempt, Booking, Gpu, Job, JobSpec, JobState, Node, NodeKind, NodeState, Tenant,
)
from gpufleet.domain.spec import spec_from_dict, spec_to_dict
from gpufleet.store.rows import AttemptRow, BookingRow, JobRow, NodeRow, TenantRow


def job_from_row(r: JobRow) -> Job:
    return job_from_light(r, spec_from_dict(r.spec))


def job_from_light(r, spec: JobSpec) -> Job:
    """From anything with JobRow's mutable columns as attributes (a row or a result tuple)."""
    job = Job(
        id=r.id, spec=spec, user=r.user, state=JobState(r.state), reason=r.reason,
        submitted_at=r.submitted_at, started_at=r.started_at, ended_at=r.ended_at,
        exit_code=r.exit_code,
        allocation=tuple(Allocation(a["node"], tuple(a["gpus"])) for a in r.allocation or ()),
        handle=r.handle, restarts=r.restarts, attained_gpu_s=r.attained_gpu_s, failures=r.failures or 0,
    )
    if r.pending_action:
        job.extra["pending_action"] = r.pending_action
        job.extra["action_reason"] = r.action_reason
    if getattr(r, "group_id", None) is not None:  # a member of a job group (store/groups.py)
        job.extra["group_id"] = r.group_id
    return job


def copy_job(j: Job) -> Job:
    """A copy the caller may change (spec and allocations are immutable, `extra` is copied)."""
    return Job(j.id, j.spec, j.user, j.state, j.reason, j.submitted_at, j.started_at, j.ended_at,
               j.exit_code, j.allocation, j.handle, j.restarts, j.failures, j.attained_gpu_s, dict(j.extra))


def job_to_row(job: Job, row: JobRow | None = None) -> JobRow:
    row = row or JobRow()
    if job.id:
        row.id = job.id
    row.name = job.spec.display_name
    row.user = job.user
    row.tenant = job.spec.tenant
    row.priority = job.spec.priority
    row.spec = spec_to_dict(job.spec)
    update_job_row(row, job)
    return row


def attempt_from_row(r: AttemptRow) -> Attempt:
    return Attempt(
        n=r.n, state=JobState(r.state), reason=r.reason or "", started_at=r.started_at,
        ended_at=r.ended_at, exit_code=r.exit_code,
        allocation=tuple(Allocation(a["node"], tuple(a["gpus"])) for a in r.allocation or ()),
        handle=r.handle,
    )


def update_job_row(row: JobRow, job: Job) -> None:
    """Copy the mutable part of a job (what the control loop changes) onto its row."""
    for k, v in job_values(job).items():
        setattr(row, k, v)


def job_values(job: Job) -> dict:
    """The mutable columns of a job's row (what the control loop changes), as plain values."""
    return {
        "state": job.state.value, "reason": job.reason, "submitted_at": job.submitted_at,
        "started_at": job.started_at, "ended_at": job.ended_at, "exit_code": job.exit_code,
        "allocation": [{"node": a.node, "gpus": list(a.gpus)} for a in job.allocation],
        "handle": job.handle, "restarts": job.restarts, "attained_gpu_s": job.attained_gpu_s,
        "failures": job.failures,
    }


def node_from_row(r: NodeRow) -> Node:
    return Node(
        name=r.name, kind=NodeKind(r.kind), arch=r.arch, cpus=r.cpus, mem_mb=r.mem_mb,
        labels=dict(r.labels or {}),
        gpus=tuple(Gpu(g["index"], g["model"], g.get("uuid", ""), g.get("memory_mb", 0), g.get("group", 0))
                   for g in r.gpus or ()),
        state=NodeState(r.state), reason=r.reason, address=r.address, updated_at=r.updated_at,
    )


def node_to_row(n: Node, row: NodeRow | None = None) -> NodeRow:
    row = row or NodeRow(name=n.name)
    row.kind = n.kind.value
    row.arch = n.arch
    row.cpus = n.cpus
    row.mem_mb = n.mem_mb
    row.labels = dict(n.labels)
    row.gpus = [{"index": g.index, "model": g.model, "uuid": g.uuid, "memory_mb": g.memory_mb,
                 "group": g.group} for g in n.gpus]
    row.state = n.state.value
    row.reason = n.reason
    row.address = n.address
    row.updated_at = n.updated_at
    return row


def tenant_from_row(r: TenantRow) -> Tenant:
    return Tenant(r.name, dict(r.quota or {}), dict(r.limit) if r.limit is not None else None,
                  r.weight, r.can_borrow)


def booking_from_row(r: BookingRow) -> Booking:
    return Booking(id=r.id, tenant=r.tenant, nodes=tuple(r.nodes), start=r.start, end=r.end,
                   exclusive=r.exclusive, gpus=r.gpus, gpu_model=r.gpu_model, user=r.user,
                   name=r.name, approval=r.approval or "approved")

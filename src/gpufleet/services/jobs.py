"""Submit, read, cancel jobs."""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from gpufleet.domain import (
    Job, JobState, Node, NotFound, StateChange, User, ValidationError, transition,
)
from gpufleet.domain.spec import build_spec
from gpufleet.executors.base import Ability, LogChunk
from gpufleet.services.context import Ctx, can_see


def submit(ctx: Ctx, user: User, data: Mapping[str, Any]) -> Job:
    """Validate against the spec rules AND the cluster, then store. Durable when it returns."""
    return submit_many(ctx, user, [data])[0]


def submit_many(ctx: Ctx, user: User, items: Sequence[Mapping[str, Any]]) -> list[Job]:
    """All items are validated before any is stored; then all are stored in one transaction."""
    specs = [_validate(ctx, user, data) for data in items]
    now = ctx.clock()
    jobs = [Job(id=0, spec=spec, user=user.name, submitted_at=now, reason="Submitted") for spec in specs]
    ctx.store.add_jobs(jobs, now, audit_user=user.name)
    ctx.wake()
    return jobs


def _validate(ctx: Ctx, user: User, data: Mapping[str, Any]):
    spec = build_spec(data, default_tenant=user.tenant)
    if not user.admin and spec.tenant != user.tenant:
        raise ValidationError("tenant", f"user {user.name} may only submit to tenant {user.tenant}")
    tenants = ctx.tenant_names()
    if spec.tenant not in tenants:
        raise ValidationError("tenant", f"unknown tenant {spec.tenant!r} (known: {', '.join(sorted(tenants))})")
    for field in sorted(ctx.executor.requires):
        if not getattr(spec, field, None):
            raise ValidationError(field, f"required by the {ctx.executor.name} engine")
    _check_engine(ctx.executor, spec)
    _check_fits(spec, ctx.nodes())
    if spec.booking is not None:
        _check_booking(ctx, spec.booking, spec.tenant)
    return spec


def _check_engine(executor, spec) -> None:
    """What the engine declares it can do (abilities), never probed."""
    if spec.image and Ability.IMAGES not in executor.abilities:
        raise ValidationError("image", f"the {executor.name} engine does not run container images "
                                       "(the kubernetes engine does); submit without an image")
    if spec.workdir and Ability.HOST_PATHS in executor.abilities:
        if not os.path.isabs(spec.workdir):
            raise ValidationError("workdir", f"must be an absolute path, got {spec.workdir!r}")
        if not os.path.isdir(spec.workdir):
            raise ValidationError("workdir", f"{spec.workdir} is not a directory on this host")


def _check_fits(spec, nodes: Sequence[Node]) -> None:
    """Reject what could never run on this cluster (drained nodes still count: they come back)."""
    usable = list(nodes)
    models = {g.model for n in usable for g in n.gpus}
    if spec.gpu_model and spec.gpu_model not in models:
        known = ", ".join(sorted(models)) or "none"
        raise ValidationError("gpu_model", f"unknown GPU model {spec.gpu_model!r} (this cluster has: {known})")
    def gpus_on(n: Node) -> int:
        return sum(1 for g in n.gpus if not spec.gpu_model or g.model == spec.gpu_model)
    largest = max((gpus_on(n) for n in usable), default=0)
    if spec.gpus > largest:
        what = f" {spec.gpu_model}" if spec.gpu_model else ""
        raise ValidationError("gpus", f"{spec.gpus}{what} GPUs per node requested, the largest node has {largest}")
    matching = [n for n in usable if gpus_on(n) >= spec.gpus
                and all(n.attribute(k) == v for k, v in spec.constraints.items())]
    if spec.constraints and not matching:
        c = ",".join(f"{k}={v}" for k, v in spec.constraints.items())
        raise ValidationError("constraint", f"{c} matches no node with {spec.gpus} GPUs")
    if spec.nodes > len(matching):
        raise ValidationError("nodes", f"{spec.nodes} nodes requested, only {len(matching)} can host {spec.gpus} GPUs each")
    _check_size(spec, matching)


def _check_size(spec, hosts: Sequence[Node]) -> None:
    """CPUs and memory per node, against the nodes that can host the GPUs (0 = not known: no check)."""
    for field, want, have, unit in (("cpus", spec.cpus, lambda n: n.cpus, "CPUs"),
                                    ("mem", spec.mem_mb, lambda n: n.mem_mb, "MiB")):
        known = [have(n) for n in hosts if have(n) > 0]
        if want is None or not known or len(known) < len(hosts):
            continue
        fitting = sum(1 for k in known if k >= want)
        if fitting == 0:
            raise ValidationError(field, f"{want} {unit} per node requested, the largest node has {max(known)}")
        if fitting < spec.nodes:
            raise ValidationError(field, f"{spec.nodes} nodes with {want} {unit} requested, only {fitting} have that many")


def _check_booking(ctx: Ctx, booking_id: int, tenant: str) -> None:
    try:
        b = ctx.store.get_booking(booking_id)
    except NotFound:
        raise ValidationError("booking", f"no booking {booking_id}") from None
    if b.tenant != tenant:
        raise ValidationError("booking", f"booking {booking_id} belongs to tenant {b.tenant}")
    if b.end <= ctx.clock():
        raise ValidationError("booking", f"booking {booking_id} is over")


def get(ctx: Ctx, user: User, job_id: int) -> Job:
    job = ctx.store.get_job(job_id)
    if not can_see(user, job.tenant):
        raise NotFound("job", job_id)  # do not reveal other tenants' jobs
    return job


def list_jobs(ctx: Ctx, user: User, states: Sequence[str] | None = None, tenant: str | None = None,
              all_states: bool = False, limit: int = 1000) -> list[Job]:
    if not user.admin:
        if tenant and tenant != user.tenant:
            return []
        tenant = user.tenant
    if states:
        bad = [s for s in states if s.upper() not in JobState.__members__]
        if bad:
            raise ValidationError("state", f"unknown state {bad[0]!r} (one of {', '.join(JobState.__members__)})")
        states = [s.upper() for s in states]
    elif not all_states:
        states = [JobState.PENDING.value, JobState.RUNNING.value]
    return ctx.store.list_jobs(states=states, tenant=tenant, limit=limit)


def cancel(ctx: Ctx, user: User, job_id: int, reason: str = "") -> Job:
    """PENDING: cancelled now. RUNNING: the decision is written, the loop stops it and records it."""
    job = get(ctx, user, job_id)
    why = reason or f"cancelled by {user.name}"
    if job.state is JobState.PENDING:
        change = transition(job, JobState.CANCELLED, why, ctx.clock())
        if not ctx.store.save_job(job, JobState.PENDING, change):
            return cancel(ctx, user, job_id, reason)  # it started meanwhile: cancel the running job
    elif job.state is JobState.RUNNING:
        ctx.store.set_action(job.id, "cancel", why, JobState.RUNNING)
        job.extra.update(pending_action="cancel", action_reason=why)
    else:  # already over: nothing to do (like scancel on a finished job); callers are told so
        job.extra["already_finished"] = True
        return job
    ctx.audit(user, "cancel", f"job/{job.id}", state=job.state.value)
    ctx.wake()
    return job


def logs(ctx: Ctx, user: User, job_id: int, offset: int = 0, rank: int = 0) -> LogChunk:
    job = get(ctx, user, job_id)
    if rank < 0 or (job.allocation and rank >= len(job.allocation)):
        raise ValidationError("rank", f"job {job_id} has ranks 0..{max(len(job.allocation) - 1, 0)}")
    if job.state is JobState.PENDING and job.handle is None and job.restarts == 0:
        return LogChunk(b"", offset, False, note=f"job {job_id} has not started ({job.reason})")
    return ctx.executor.logs(job, offset, rank)


def events(ctx: Ctx, user: User, job_id: int) -> list[StateChange]:
    get(ctx, user, job_id)
    return ctx.store.events("job", str(job_id))

"""Submit, read, cancel jobs."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from typing import Any, Mapping, Sequence

from gpufleet.domain import (
    Job, JobState, Node, NotFound, StateChange, User, ValidationError, transition,
)
from gpufleet.domain.spec import build_spec
from gpufleet.executors.base import Ability, LogChunk, latest_attempt
from gpufleet.services.context import Ctx, can_see
from gpufleet.store import DuplicateKey
from gpufleet.scheduler.filters.constraints import matches as constraint_matches, term as constraint_term


_KEY = re.compile(r"[A-Za-z0-9_.:+/=-]{1,128}")  # what a client may send
_ITEM_KEY = re.compile(r"[A-Za-z0-9_.:+/=#-]{1,128}")  # what is stored: a batch adds "#<index>"
KEY_FIELD = "Idempotency-Key"


def submit(ctx: Ctx, user: User, data: Mapping[str, Any], key: str | None = None) -> Job:
    """Validate against the spec rules AND the cluster, then store. Durable when it returns.
    With an idempotency `key`: the job this user already submitted under it, if any (its
    `extra["replayed"]` is True), else a new one."""
    return submit_many(ctx, user, [data], [key] if key else None)[0]


def submit_many(ctx: Ctx, user: User, items: Sequence[Mapping[str, Any]],
                keys: Sequence[str] | None = None) -> list[Job]:
    """All items are validated before any is stored; then all are stored in one transaction.
    `keys`: one idempotency key per item; items whose key was used before are not stored again
    (nor validated again: the first submission was) and come back as the job made then."""
    if keys is not None:
        if len(keys) != len(items):
            raise ValidationError(KEY_FIELD, "one key per item")
        for k in keys:
            if not isinstance(k, str) or not _ITEM_KEY.fullmatch(k):
                raise ValidationError(KEY_FIELD, f"bad key {k!r}")
        if (done := ctx.store.jobs_by_key(user.name, keys)):
            return _replay(ctx, user, items, keys, done)
    specs = [_validate(ctx, user, data) for data in items]
    now = ctx.clock()
    jobs = [Job(id=0, spec=spec, user=user.name, submitted_at=now, reason="Submitted") for spec in specs]
    try:
        ctx.store.add_jobs(jobs, now, audit_user=user.name, keys=keys)
    except DuplicateKey:  # a concurrent submission with the same key stored it first
        return _replay(ctx, user, items, keys or [], ctx.store.jobs_by_key(user.name, keys or []))
    ctx.wake()
    return jobs


def _replay(ctx: Ctx, user: User, items, keys: Sequence[str], done: Mapping[str, Job]) -> list[Job]:
    """Jobs already stored under their keys come back as they are; the others are submitted now."""
    rest = [(i, k) for i, k in enumerate(keys) if k not in done]
    fresh = submit_many(ctx, user, [items[i] for i, _ in rest], [k for _, k in rest]) if rest else []
    made = dict(zip((k for _, k in rest), fresh))
    for job in done.values():
        job.extra["replayed"] = True
    return [done.get(k) or made[k] for k in keys]


def check_key(key: str, batch: int = 0) -> str:
    """A client's key; for a batch of `batch` items, item i is stored under KEY#i (<= 128 chars)."""
    room = 128 - (len(f"#{batch - 1}") if batch else 0)
    if not isinstance(key, str) or not _KEY.fullmatch(key) or len(key) > room:
        raise ValidationError(KEY_FIELD, f"1 to {room} characters of A-Z a-z 0-9 _ . : + / = -")
    return key


def batch_keys(key: str | None, n: int) -> list[str] | None:
    return None if key is None else [f"{check_key(key, n)}#{i}" for i in range(n)]


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
    if ctx.accounts is not None:
        ctx.accounts.check(user.name)  # a root server runs jobs as their owner: one must exist
    if spec.perf is not None:
        spec = whole_nodes(spec, ctx.nodes())
    _check_fits(spec, ctx.nodes())
    if spec.booking is not None:
        _check_booking(ctx, spec.booking, spec.tenant)
    if spec.dependency:
        _check_dependencies(ctx, user, spec.dependency)
    return spec


def _check_dependencies(ctx: Ctx, user: User, deps) -> None:
    """A job may wait only for jobs its user can see (another tenant's are unknown here)."""
    ids = sorted({i for _, i in deps})
    seen = {j.id for j in ctx.store.list_jobs(ids=ids, limit=len(ids)) if can_see(user, j.tenant)}
    missing = [i for i in ids if i not in seen]
    if missing:
        raise ValidationError("dependency", f"no job {missing[0]}")


def whole_nodes(spec, nodes: Sequence[Node]):
    """A perf job gets its nodes exclusively: `gpus` rounds up to the GPU count of the smallest
    matching node that has that many, and the constraint gpu_count=<that> keeps it to nodes of
    exactly that size, so a placement takes every GPU of the node and nothing else lands there."""
    if "gpu_count" in spec.constraints:
        return spec
    sizes = sorted({len(n.gpus) for n, _ in node_kinds(nodes) if len(n.gpus) >= spec.gpus
                    and (not spec.gpu_model or all(g.model == spec.gpu_model for g in n.gpus))
                    and all(constraint_matches(n, k, v) for k, v in spec.constraints.items())})
    if not sizes:
        return spec  # _check_fits says why
    return replace(spec, gpus=sizes[0], constraints={**spec.constraints, "gpu_count": str(sizes[0])})


_kinds: tuple[Sequence[Node], list[tuple[Node, int]]] | None = None  # the last inventory and its kinds


def node_kinds(nodes: Sequence[Node]) -> list[tuple[Node, int]]:
    """The inventory as (one node of a kind, how many), a kind being everything submit checks
    read (kind, arch, CPUs, memory, labels, GPU models): a lab of 10k nodes has a handful of
    kinds, so a submission checks those, not every node. Kept for the last inventory object
    (the store's cached node table: the same object until a node write)."""
    global _kinds
    hit = _kinds
    if hit is not None and hit[0] is nodes:
        return hit[1]
    kinds: dict[tuple, list] = {}
    for n in nodes:
        key = (n.kind, n.arch, n.cpus, n.mem_mb, tuple(sorted(n.labels.items())), tuple(g.model for g in n.gpus))
        entry = kinds.get(key)
        if entry is None:
            kinds[key] = [n, 1]
        else:
            entry[1] += 1
    out = [(n, c) for n, c in kinds.values()]
    _kinds = (nodes, out)
    return out


def _check_engine(executor, spec) -> None:
    """What the engine declares it can do (abilities), never probed."""
    if spec.image and Ability.IMAGES not in executor.abilities:
        raise ValidationError("image", f"the {executor.name} engine does not run container images "
                                       "(the local, slurm and kubernetes engines do); submit without an image")
    if spec.heartbeat_s and Ability.HEARTBEAT not in executor.abilities:
        raise ValidationError("heartbeat", f"the {executor.name} engine cannot watch a heartbeat yet "
                                           "(the local, slurm and kubernetes engines do); submit without --heartbeat")
    if spec.workdir and Ability.HOST_PATHS in executor.abilities:
        if not os.path.isabs(spec.workdir):
            raise ValidationError("workdir", f"must be an absolute path, got {spec.workdir!r}")
        if not os.path.isdir(spec.workdir):
            raise ValidationError("workdir", f"{spec.workdir} is not a directory on this host")


def _check_fits(spec, nodes: Sequence[Node]) -> None:
    """Reject what could never run on this cluster (drained nodes still count: they come back)."""
    kinds = node_kinds(nodes)
    models = {g.model for n, _ in kinds for g in n.gpus}
    if spec.gpu_model and spec.gpu_model not in models:
        known = ", ".join(sorted(models)) or "none"
        raise ValidationError("gpu_model", f"unknown GPU model {spec.gpu_model!r} (this cluster has: {known})")
    def gpus_on(n: Node) -> int:
        return sum(1 for g in n.gpus if not spec.gpu_model or g.model == spec.gpu_model)
    largest = max((gpus_on(n) for n, _ in kinds), default=0)
    if spec.gpus > largest:
        what = f" {spec.gpu_model}" if spec.gpu_model else ""
        raise ValidationError("gpus", f"{spec.gpus}{what} GPUs per node requested, the largest node has {largest}")
    matching = [(n, c) for n, c in kinds if gpus_on(n) >= spec.gpus
                and all(constraint_matches(n, k, v) for k, v in spec.constraints.items())]
    if spec.constraints and not matching:
        c = ",".join(constraint_term(k, v) for k, v in spec.constraints.items())
        raise ValidationError("constraint", f"{c} matches no node with {spec.gpus} GPUs")
    fewest = spec.nodes_min if spec.nodes_min is not None else spec.nodes  # an elastic gang: its minimum
    hosts = sum(c for _, c in matching)
    if fewest > hosts:
        at_least = "at least " if fewest < spec.nodes else ""
        raise ValidationError("nodes", f"{at_least}{fewest} nodes requested, only {hosts} can host {spec.gpus} GPUs each")
    _check_size(spec, matching)


def _check_size(spec, hosts: Sequence[tuple[Node, int]]) -> None:
    """CPUs and memory per node, against the nodes that can host the GPUs (0 = not known: no
    check); `hosts`: (node, how many like it)."""
    for field, want, have, unit in (("cpus", spec.cpus, lambda n: n.cpus, "CPUs"),
                                    ("mem", spec.mem_mb, lambda n: n.mem_mb, "MiB")):
        known = [(have(n), c) for n, c in hosts if have(n) > 0]
        if want is None or not known or sum(c for _, c in known) < sum(c for _, c in hosts):
            continue
        fitting = sum(c for k, c in known if k >= want)
        if fitting == 0:
            raise ValidationError(field, f"{want} {unit} per node requested, the largest node has {max(k for k, _ in known)}")
        if fitting < spec.nodes:
            raise ValidationError(field, f"{spec.nodes} nodes with {want} {unit} requested, only {fitting} have that many")


def _check_booking(ctx: Ctx, booking_id: int, tenant: str) -> None:
    unknown = ValidationError("booking", f"no booking {booking_id} for tenant {tenant}")
    try:
        b = ctx.store.get_booking(booking_id)
    except NotFound:
        raise unknown from None
    if b.tenant != tenant:  # the same answer as for no booking: another tenant's ids stay unknown
        raise unknown
    if b.approval != "approved":
        raise ValidationError("booking", f"booking {booking_id} is {b.approval}, not in force "
                                         "(an admin approves it: gpufleet booking approve)")
    if b.end <= ctx.clock():
        raise ValidationError("booking", f"booking {booking_id} is over")


def get(ctx: Ctx, user: User, job_id: int) -> Job:
    job = ctx.store.get_job(job_id)
    if not can_see(user, job.tenant):
        raise NotFound("job", job_id)  # do not reveal other tenants' jobs
    return job


def list_jobs(ctx: Ctx, user: User, states: Sequence[str] | None = None, tenant: str | None = None,
              all_states: bool = False, limit: int = 1000, after: int | None = None) -> list[Job]:
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
    return ctx.store.list_jobs(states=states, tenant=tenant, limit=limit, after=after)


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


def logs(ctx: Ctx, user: User, job_id: int, offset: int = 0, rank: int = 0,
         attempt: int | None = None) -> LogChunk:
    """Output of one rank of one attempt (None: the latest run). The chunk says which attempt."""
    job = get(ctx, user, job_id)
    runs = {a.n: a for a in ctx.store.attempts(job_id)}
    known = set(runs) | _unrecorded_attempts(job)
    if attempt is not None and attempt not in known:
        have = f"attempts 1..{max(known)}" if known else "no attempt yet (it has not run)"
        raise ValidationError("attempt", f"job {job_id} has {have}, not {attempt}")
    n = attempt if attempt is not None else max(known, default=None)
    if n is None:
        why = f"has not started ({job.reason})" if job.state is JobState.PENDING else "never ran"
        return LogChunk(b"", offset, job.state.terminal, note=f"job {job_id} {why}")
    alloc = runs[n].allocation if n in runs and n != job.attempt else job.allocation
    if rank < 0 or (alloc and rank >= len(alloc)):
        raise ValidationError("rank", f"job {job_id} has ranks 0..{max(len(alloc) - 1, 0)}")
    return replace(ctx.executor.logs(job, offset, rank, attempt=n), attempt=n)


def _unrecorded_attempts(job: Job) -> set[int]:
    """The runs its row implies (1..latest once it ran): also those before attempts were recorded
    (schema < 0003)."""
    ran = job.handle is not None or job.started_at is not None or job.restarts > 0
    return set(range(1, latest_attempt(job) + 1)) if ran else set()


def events(ctx: Ctx, user: User, job_id: int) -> list[StateChange]:
    get(ctx, user, job_id)
    return ctx.store.events("job", str(job_id))

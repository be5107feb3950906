"""The scheduler: `schedule(snapshot, now) -> Decisions`. Pure: no I/O, no clock, no asyncio.

A cycle, over a frozen snapshot:
  0. bookings    jobs that may not be on the nodes of an open booking window are preempted
  1. order       priority classes first, then the policy (fifo|priority|fairshare|sjf|las)
  then for every job in that order, first the jobs within their tenant's quota, then borrowing jobs:
  2. admit       against quota: guaranteed, borrowing, or QuotaExceeded
  3. place       best fit on the capacity index (NVLink groups, racks), gangs all or nothing
  4. preempt     priority and quota reclaim choose the cheapest victims
  5. backfill    the first blocked job per GPU model reserves what it will get (EASY); later jobs
                 may not delay it; every job left gets a precise reason
See docs/scheduler.md.
"""

from __future__ import annotations

from gpufleet.domain import Job
from gpufleet.scheduler import reasons as why
from gpufleet.scheduler.base import Base
from gpufleet.scheduler.cycle import Ask, Cycle, up_nodes_with
from gpufleet.scheduler.metrics import fragmentation
from gpufleet.scheduler.placement import candidates, find_cpu_nodes, find_nodes
from gpufleet.scheduler.preemption import Plan
from gpufleet.scheduler.queue import order_queue, priority_class_of
from gpufleet.scheduler.quota import Admission
from gpufleet.scheduler.types import Decisions, Preemption, Snapshot


def schedule(snapshot: Snapshot, now: float) -> Decisions:
    """One cycle on a freshly built Base: what the live control loop calls."""
    return decide(snapshot, now, Base(snapshot))


class Scheduler:
    """`schedule()` with memory, for a caller that hands over one snapshot after another (the
    simulator): the Base (capacity index, running-job aggregates) is updated by the difference of
    the running set instead of rebuilt, when the snapshot allows it (see `scheduler.base`). The
    decisions are exactly those of `schedule(snapshot, now)`."""

    def __init__(self) -> None:
        self.base: Base | None = None
        self.rebuilds = 0

    def __call__(self, snapshot: Snapshot, now: float) -> Decisions:
        base = self.base
        if base is None or not base.serves(snapshot):
            base = self.base = Base(snapshot)
            self.rebuilds += 1
        else:
            base.update(snapshot.running)
            if len(base.static) > 4 * len(snapshot.pending) + 4096:  # forget jobs no longer pending
                keep = {j.id for j in snapshot.pending}
                base.static = {k: v for k, v in base.static.items() if k in keep}
        return decide(snapshot, now, base)


def decide(snapshot: Snapshot, now: float, base: Base) -> Decisions:
    cyc = Cycle(snapshot, now, base)
    try:
        # 0. bookings: open windows are cleared of jobs that may not be there
        _evict_for_bookings(cyc)
        # 1. order the queue
        classes = order_queue(snapshot.pending, snapshot.config, snapshot.usage, snapshot.tenants, now)
        # jobs within their tenant's guaranteed quota go first, borrowing jobs after all of them (in
        # the same order): a guarantee beats any class, or a reclaimed borrower of a higher class
        # would be placed again on the GPUs freed for the reclaimer
        later = [job for jobs in classes for job in jobs if not _consider(cyc, job, first_pass=True)]
        for job in later:
            _consider(cyc, job, first_pass=False)
        d = cyc.d
        d.stats.update(placements=float(len(d.placements)), preemptions=float(len(d.preemptions)),
                       pending=float(len(d.reasons)), reservations=float(len(cyc.backfill.reservations)),
                       backfilled=float(cyc.backfilled), **fragmentation(cyc.state))
        return d
    finally:
        cyc.close()


def _consider(cyc: Cycle, job: Job, first_pass: bool) -> bool:
    """Steps 2-5 for one job. False: it may only borrow, come back after the guaranteed jobs."""
    key = cyc.verdict_key(job)
    verdicts = cyc.verdicts[first_pass]
    verdict = verdicts.get(key, "")
    if verdict:
        cyc.d.reasons[job.id] = verdict
        return True
    if verdict is None:
        return False
    if len(cyc.d.placements) >= cyc.cfg.max_placements_per_cycle:
        return _wait(cyc, job, "Queued(placement limit of this cycle reached)")
    outcome = _steps(cyc, cyc.ask(job), first_pass)
    if outcome is None or outcome[1]:
        verdicts[key] = outcome and outcome[0]
    return outcome is not None


def _steps(cyc: Cycle, ask: Ask, first_pass: bool) -> tuple[str, bool] | None:
    """(reason, the same job would get it too) or ("", False) when placed; None when deferred."""
    job = ask.job
    if ask.reason:
        return _fail(cyc, job, ask.reason)
    # 2. admit against quota
    models, adm = _admit(cyc, ask, first_pass)
    if adm is not None and adm.reason:
        return _fail(cyc, job, adm.reason)
    if not models:
        return None
    # 3. place
    if _place(cyc, ask, models, first_pass):
        return "", False
    if first_pass and adm is not None and adm.borrowing:
        return None  # it may still borrow another model, after the guaranteed jobs
    # 4. preempt
    if _preempt(cyc, ask, models):
        return "", False
    # 5. backfill: the head job reserves, the others learn why they wait
    reason, reserved = _blocked(cyc, ask, models)
    _wait(cyc, job, reason)
    return reason, not reserved


def _fail(cyc: Cycle, job: Job, reason: str) -> tuple[str, bool]:
    _wait(cyc, job, reason)
    return reason, True


def _wait(cyc: Cycle, job: Job, reason: str) -> bool:
    cyc.d.reasons[job.id] = reason
    return True


# 0. bookings ----------------------------------------------------------------------------------------
def _evict_for_bookings(cyc: Cycle) -> None:
    if not cyc.bookings:
        return
    staying = [j for j in cyc.snapshot.running if not j.extra.get("pending_action")]
    for job, b in cyc.bookings.evictions(staying, cyc.state.pos):
        v = cyc.victims_ready().by_id.get(job.id)
        if v is not None:
            cyc.victims.remove(v)
            cyc.quota.release_borrowed(job.id, job.spec.tenant, v.model, job.gpus_held)
        cyc.d.preemptions.append(Preemption(
            job.id, f"Preempted(booking {b.id} of tenant {b.tenant} started)", requeue=job.spec.requeue))


# 2. admit ---------------------------------------------------------------------------------------------
def _admit(cyc: Cycle, ask: Ask, first_pass: bool) -> tuple[list, Admission | None]:
    if ask.gpus == 0:
        return [None], None  # no GPUs, no GPU quota
    if ask.booking is not None:
        return list(ask.models), None  # its booking is its admission
    tenant, total = ask.job.spec.tenant, ask.gpus * ask.nodes
    adm = cyc.quota.admit(tenant, ask.models, total, ask.job.id)
    if adm.reason:
        return [], adm
    if not first_pass:
        return adm.guaranteed + adm.borrowing, adm
    if not adm.guaranteed:
        cyc.quota.wait_for_quota(tenant, adm.borrowing, total, ask.job.id)
    return adm.guaranteed, adm


# 3. place ---------------------------------------------------------------------------------------------
def _place(cyc: Cycle, ask: Ask, models: list, first_pass: bool) -> bool:
    for model in models:
        key = cyc.search_key(ask, model)
        if key in cyc.failed:
            continue
        gate = cyc.gate(ask, model)
        most = _most(cyc, ask, model, first_pass) if ask.nodes_max > ask.nodes else 0
        if model is None:
            nodes = find_cpu_nodes(cyc.state, ask.nodes, ask.cpus, ask.mem, ask.elig, gate, most)
        else:
            nodes = find_nodes(cyc.state, model, ask.gpus, ask.nodes, ask.elig, gate, most, _previous(cyc, ask))
        if nodes:
            cyc.commit(ask, model, nodes)
            return True
        cyc.failed[key] = None
    return False


def _previous(cyc: Cycle, ask: Ask) -> frozenset[tuple[str, str]]:
    """The (switch, rack)s where a restarted gang's previous attempt ran (control/loop.py sets
    job.extra["previous_nodes"]), so that its replacement prefers the same block."""
    names = ask.job.extra.get("previous_nodes") if ask.job.failures else None
    if not names:
        return frozenset()
    at = cyc.state.pos
    return frozenset(cyc.state.rack[at[n]] for n in names if n in at)


def _most(cyc: Cycle, ask: Ask, model: str | None, first_pass: bool) -> int:
    """The most nodes an elastic gang (admitted for its `nodes_min`) may take of `model` now: up to
    its `nodes`, within its tenant's guaranteed quota in the first pass, its hard limit after."""
    if model is None or ask.gpus == 0 or ask.booking is not None:  # outside GPU quota
        return ask.nodes_max
    tenant = ask.job.spec.tenant
    quota, cap = cyc.quota.limits(tenant, model)
    bound = quota if first_pass else cap
    if bound is None:
        return ask.nodes_max
    room = bound - cyc.quota.used.get(tenant, {}).get(model, 0)
    return max(ask.nodes, min(ask.nodes_max, room // ask.gpus))


# 4. preempt -------------------------------------------------------------------------------------------
def _preempt(cyc: Cycle, ask: Ask, models: list) -> bool:
    if ask.gpus == 0:
        return False
    for model in models:
        if cyc.victims.leaving_total.get(model) and _wait_for_release(cyc, ask, model):
            return True
    cfg = cyc.cfg
    if not cfg.preemption or cyc.preemptors >= cfg.max_preemptors_per_cycle:
        return False
    tenant, total = ask.job.spec.tenant, ask.gpus * ask.nodes
    for model in models:
        within = ask.booking is None and cyc.quota.within_quota(tenant, model, total)
        if not (within and cyc.quota.reclaimable(model, but=tenant)) and \
                cyc.victims.min_class.get(model, ask.cls) >= ask.cls:
            continue  # nobody it may preempt
        key = (cyc.search_key(ask, model), tenant, ask.cls, within)
        if key in cyc.failed_preempt or cyc.preempt_attempts >= 4 * cfg.max_preemptors_per_cycle + 16:
            continue
        cyc.preempt_attempts += 1
        plan = _plan(cyc, ask, model, within)
        if plan is None:
            cyc.failed_preempt.add(key)
            continue
        _apply(cyc, ask, model, plan, within)
        return True
    return False


def _plan(cyc: Cycle, ask: Ask, model: str, within: bool) -> Plan | None:
    state, elig = cyc.state, ask.elig
    gate = cyc.gate(ask, model, resources=False)
    victims = cyc.victims_ready()
    cands = victims.candidates(model, ask.job.spec.tenant, ask.cls, within, cyc.quota.borrowed_left)
    if not cands:
        return None
    free = [i for _, i in candidates(state, model, ask.gpus, elig, gate)] if ask.nodes > 1 else []
    return victims.plan(cands, free, model, ask.gpus, ask.nodes, lambda i: state.free_count(i, model),
                        lambda i: (elig is None or i in elig) and (gate is None or gate(i)))


def _apply(cyc: Cycle, ask: Ask, model: str, plan: Plan, within: bool) -> None:
    nodes, victims = plan
    job, tenant = ask.job, ask.job.spec.tenant
    for v in victims:
        cyc.victims.remove(v)
        cyc.quota.release_borrowed(v.job.id, v.job.spec.tenant, model, v.job.gpus_held)
        spare = cyc.spares.taken(job, v.on, nodes)
        if spare is not None:
            text = (f"Preempted(for job {job.id} of tenant {tenant}: its restart takes hot spare "
                    f"{cyc.state.nodes[spare].name})")
        elif v.job.spec.tenant != tenant and within and not v.cls < ask.cls:
            text = f"Preempted(quota reclaim: tenant {tenant} takes back its {model} quota for job {job.id})"
        elif cyc.las and priority_class_of(ask.cls, cyc.cfg) == priority_class_of(v.cls, cyc.cfg):
            text = (f"Preempted(for job {job.id} of tenant {tenant}: it attained less than "
                    f"{cyc.cfg.las_threshold_gpu_s:g} GPU-seconds, this job more (las))")
        else:
            text = (f"Preempted(for job {job.id} of tenant {tenant}: priority class "
                    f"{priority_class_of(ask.cls, cyc.cfg)} > {priority_class_of(v.cls, cyc.cfg)})")
        cyc.d.preemptions.append(Preemption(v.job.id, text, requeue=v.job.spec.requeue))
    for i in nodes:
        cyc.hold(i, model, ask.gpus)
    if ask.booking is None:
        cyc.quota.take(tenant, model, ask.gpus * ask.nodes)
    cyc.preemptors += 1
    _wait(cyc, job, f"Preempting(jobs {why.job_list(v.job.id for v in victims)})")


def _wait_for_release(cyc: Cycle, ask: Ask, model: str) -> bool:
    """GPUs being freed (victims of earlier cycles, cancels) that complete this job: claim them."""
    state, victims, elig = cyc.state, cyc.victims, ask.elig
    gate = cyc.gate(ask, model, resources=False)
    leaving = [i for i in victims.leaving if victims.unclaimed(i, model) and (elig is None or i in elig)
               and (gate is None or gate(i))]
    fitting = sorted(i for i in leaving if state.free_count(i, model) + victims.unclaimed(i, model) >= ask.gpus)
    if not fitting:
        return False
    chosen = fitting[: ask.nodes]
    if len(chosen) < ask.nodes:
        more = [i for _, i in candidates(state, model, ask.gpus, elig, gate) if i not in chosen]
        if len(chosen) + len(more) < ask.nodes:
            return False
        chosen += more[: ask.nodes - len(chosen)]
    ids = set().union(*(victims.leaving_jobs.get(i, set()) for i in chosen))
    for i in chosen:
        cyc.hold(i, model, ask.gpus)
    if ask.booking is None:
        cyc.quota.take(ask.job.spec.tenant, model, ask.gpus * ask.nodes)
    return _wait(cyc, ask.job, f"WaitingForRelease(jobs {why.job_list(ids)} exiting)")


# 5. backfill ------------------------------------------------------------------------------------------
def _blocked(cyc: Cycle, ask: Ask, models: list) -> tuple[str, bool]:
    """Why the job waits; the first `max_reservations` blocked jobs also reserve (EASY backfill).
    (reason, reserved)."""
    if models[0] is None:
        return (f"Resources(needs {why.count(ask.nodes, ask.nodes_max)} nodes with {ask.cpus} CPUs, "
                f"{ask.mem} MB free)"), False
    key = cyc.search_key(ask, models[0])
    reason = cyc.failed.get(key)
    if reason is None:
        reason = cyc.failed[key] = _explain(cyc, ask, models)
    start = _reserve(cyc, ask, models[0])
    if start is None:
        return reason, False
    return f"{reason[:-1]}; reserved, starts in {why.fmt_in(start - cyc.now)})", True


def _reserve(cyc: Cycle, ask: Ask, model: str) -> float | None:
    state, bf = cyc.state, cyc.backfill
    if not cyc.cfg.backfill or len(bf.reservations) >= cyc.cfg.max_reservations:
        return None
    gate = cyc.gate(ask, model, reservations=False, resources=False)
    nodes = [i for i in up_nodes_with(state, model, ask.elig) if gate is None or gate(i)]
    free_now = bf.free_candidates(nodes, lambda i: cyc.free_now(i, model))
    r = bf.reserve(ask.job.id, model, (ask.gpus, ask.cpus, ask.mem), ask.nodes, free_now, state.rack,
                   state.topology)
    return None if r is None else r.start


def _explain(cyc: Cycle, ask: Ask, models: list) -> str:
    state, job = cyc.state, ask.job
    for model in models:
        if cyc.backfill.reservations:
            nodes = find_nodes(state, model, ask.gpus, ask.nodes, ask.elig, cyc.gate(ask, model, reservations=False))
            for i in nodes or ():
                r = cyc.backfill.blocker(i, model, ask.gpus, ask.end)
                if r is not None:
                    return why.backfill_blocked(r.job_id, r.start - cyc.now)
        if cyc.bookings:
            gate = cyc.gate(ask, model, reservations=False, bookings=False)
            for i in find_nodes(state, model, ask.gpus, ask.nodes, ask.elig, gate) or ():
                b = cyc.bookings.blocker(i, job, ask.end)
                if b is not None:
                    return cyc.bookings.describe(b)
        if cyc.spares.held_from(job):
            held = _held_spares(cyc, ask, model)
            if held:
                return held
    largest = max(state.largest_free(m, ask.elig) for m in models)
    return why.resources(ask.gpus, ask.nodes, models, largest, ask.cpus, ask.mem, ask.nodes_max)


def _held_spares(cyc: Cycle, ask: Ask, model: str) -> str:
    """HotSpares(...) when the job would fit but for the hot spares it may not use, else ""."""
    state, held = cyc.state, cyc.spares.nodes
    if not find_nodes(state, model, ask.gpus, ask.nodes, ask.elig, cyc.gate(ask, model, spares=False)):
        return ""
    fit = sum(1 for i in held if (ask.elig is None or i in ask.elig) and state.free_count(i, model) >= ask.gpus)
    return cyc.spares.describe(why.what(ask.gpus, ask.nodes, [model], ask.cpus, ask.mem, ask.nodes_max), fit)

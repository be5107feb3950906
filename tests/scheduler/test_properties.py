"""Property tests: invariants of schedule() over random clusters, queues, quotas and bookings."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpufleet.domain import NodeState
from gpufleet.scheduler import POLICIES, SchedulerConfig, schedule
from gpufleet.scheduler.filters.constraints import matches
from tests.scheduler.builders import (
    make_booking, make_job, make_node, make_running, make_snapshot, make_tenant,
)

NOW = 10_000.0
MODELS = ("a100", "h100")
TENANTS = ("a", "b", "c")


@st.composite
def nodes_st(draw):
    out = []
    for k in range(draw(st.integers(1, 6))):
        out.append(make_node(
            f"n{k}", draw(st.integers(1, 8)), draw(st.sampled_from(MODELS)), groups=draw(st.integers(1, 2)),
            rack=draw(st.sampled_from(["r1", "r2"])), switch="s1",
            labels={"driver": draw(st.sampled_from(["x", "y"]))},
            state=draw(st.sampled_from([NodeState.UP] * 4 + [NodeState.DRAIN, NodeState.DOWN])),
            cpus=draw(st.sampled_from([0, 32])), mem_mb=0))
    return out


@st.composite
def running_st(draw, nodes, ids):
    """Disjoint allocations: each node's GPUs are dealt to running jobs, foreign work, or left free."""
    free = {n.name: [g.index for g in n.gpus] for n in nodes}
    running, foreign = [], {}
    for n in nodes:
        while free[n.name] and draw(st.booleans()):
            k = draw(st.integers(1, len(free[n.name])))
            take, free[n.name] = free[n.name][:k], free[n.name][k:]
            if draw(st.integers(0, 5)) == 0:
                foreign[n.name] = tuple(take)
                continue
            job = make_running(k, on=[(n.name, take)], id=next(ids), started_at=draw(st.floats(0, NOW)),
                               tenant=draw(st.sampled_from(TENANTS)), priority=draw(st.sampled_from([0, 100])),
                               time_limit_s=draw(st.sampled_from([None, 600, 36000])),
                               requeue=draw(st.booleans()), booking=draw(st.sampled_from([None, None, 1])),
                               cpus=draw(st.sampled_from([None, 8])))
            if draw(st.integers(0, 6)) == 0:
                job.extra["pending_action"] = "preempt"
            running.append(job)
    return running, foreign


@st.composite
def snapshots(draw):
    ids = iter(range(1, 10_000))
    nodes = draw(nodes_st())
    running, foreign = draw(running_st(nodes, ids))
    pending = [make_job(
        draw(st.integers(0, 8)), nodes=(most := draw(st.integers(1, 3))), id=next(ids),
        nodes_min=draw(st.sampled_from([None, None, *range(1, most)])),
        tenant=draw(st.sampled_from(TENANTS)), priority=draw(st.sampled_from([0, 5, 100, 250])),
        gpu_model=draw(st.sampled_from([None, *MODELS])), time_limit_s=draw(st.sampled_from([None, 60, 3600])),
        constraints=draw(st.sampled_from([{}, {}, {"driver": "x"}, {"rack": "r2"}])),
        booking=draw(st.sampled_from([None, None, None, 1, 2, 5])), cpus=draw(st.sampled_from([None, 16])),
        submitted_at=draw(st.floats(0, NOW)), attained_gpu_s=draw(st.floats(0, 1e5)),
    ) for _ in range(draw(st.integers(0, 12)))]
    tenants = [make_tenant(t, draw(st.dictionaries(st.sampled_from([*MODELS, "*"]), st.integers(0, 16))),
                           limit=draw(st.one_of(st.none(), st.dictionaries(st.sampled_from(MODELS),
                                                                           st.integers(0, 24)))),
                           weight=draw(st.sampled_from([1.0, 2.0])), can_borrow=draw(st.booleans()))
               for t in TENANTS[:2]]
    names = [n.name for n in nodes]
    bookings = [make_booking(b, tenant=draw(st.sampled_from(TENANTS)),
                             nodes=draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True)),
                             start=NOW + draw(st.sampled_from([-3600, -60, 30, 1800, 7200])),
                             end=NOW + draw(st.sampled_from([-10, 600, 7200, 99999])),
                             exclusive=draw(st.booleans()))
                for b in range(1, draw(st.integers(0, 2)) + 1)]
    config = SchedulerConfig(policy=draw(st.sampled_from(POLICIES)), topology=draw(st.booleans()),
                             backfill=draw(st.booleans()), preemption=draw(st.booleans()),
                             max_reservations=draw(st.integers(0, 4)))
    return make_snapshot(nodes, pending=pending, running=running, tenants=tenants, bookings=bookings,
                         usage={t: draw(st.floats(0, 1e6)) for t in TENANTS}, foreign=foreign, config=config)


PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(snapshots())
def test_no_gpu_is_allocated_twice_and_only_up_nodes_get_work(snap):
    d = schedule(snap, NOW)
    taken = {(a.node, g) for j in snap.running for a in j.allocation for g in a.gpus}
    taken |= {(n, g) for n, gs in snap.foreign.items() for g in gs}
    nodes = {n.name: n for n in snap.nodes}
    for p in d.placements:
        for a in p.allocation:
            node = nodes[a.node]
            assert node.state is NodeState.UP
            assert set(a.gpus) <= {g.index for g in node.gpus}
            for g in a.gpus:
                assert (a.node, g) not in taken
                taken.add((a.node, g))


@PROPS
@given(snapshots())
def test_gangs_are_all_or_nothing_and_match_their_spec(snap):
    d = schedule(snap, NOW)
    jobs = {j.id: j for j in snap.pending}
    nodes = {n.name: n for n in snap.nodes}
    for p in d.placements:
        spec = jobs[p.job_id].spec
        assert (spec.nodes_min or spec.nodes) <= len(p.allocation) <= spec.nodes  # elastic: nodes_min:nodes
        assert len({a.node for a in p.allocation}) == len(p.allocation)
        assert all(len(a.gpus) == spec.gpus for a in p.allocation)
        models = {g.model for a in p.allocation for g in nodes[a.node].gpus if g.index in a.gpus}
        assert len(models) <= 1 and (not spec.gpu_model or models <= {spec.gpu_model})
        for a in p.allocation:
            assert all(matches(nodes[a.node], k, v) for k, v in spec.constraints.items())


@PROPS
@given(snapshots())
def test_hard_quota_is_never_exceeded(snap):
    d = schedule(snap, NOW)
    model_of = {(n.name, g.index): g.model for n in snap.nodes for g in n.gpus}
    jobs = {j.id: j for j in snap.pending}

    def model(alloc):
        return model_of[(alloc[0].node, alloc[0].gpus[0])]

    used: dict[tuple[str, str], int] = {}
    for j in snap.running:
        if j.spec.booking is None and j.allocation and j.allocation[0].gpus:
            key = (j.spec.tenant, model(j.allocation))
            used[key] = used.get(key, 0) + j.gpus_held
    added: dict[tuple[str, str], int] = {}
    for p in d.placements:
        job = jobs[p.job_id]
        if job.spec.booking is None and p.allocation[0].gpus:
            key = (job.spec.tenant, model(p.allocation))
            added[key] = added.get(key, 0) + sum(len(a.gpus) for a in p.allocation)
    for (tenant, m), n in added.items():
        t = snap.tenants.get(tenant)
        if t is None:
            continue
        cap = t.limit_for(m)
        if not t.can_borrow:
            cap = t.quota_for(m) if cap is None else min(cap, t.quota_for(m))
        if cap is not None:
            assert used.get((tenant, m), 0) + n <= cap


@PROPS
@given(snapshots())
def test_booking_windows_are_never_entered_by_others(snap):
    d = schedule(snap, NOW)
    jobs = {j.id: j for j in snap.pending}
    evicted = {p.job_id for p in d.preemptions}
    limit = snap.config.default_time_limit_s

    def allowed(job, b, end):
        if b.start <= NOW:
            return job.spec.tenant == b.tenant and (not b.exclusive or job.spec.booking == b.id)
        return end <= b.start

    for b in snap.bookings:
        if b.end <= NOW:
            continue
        for p in d.placements:
            job = jobs[p.job_id]
            end = NOW + (job.spec.time_limit_s or limit)
            if set(b.nodes) & {a.node for a in p.allocation}:
                assert allowed(job, b, end)
        if b.start <= NOW:
            for job in snap.running:
                on = set(b.nodes) & set(job.node_names)
                if on and not job.extra.get("pending_action") and not allowed(job, b, NOW):
                    assert job.id in evicted
    for p in d.placements:
        job = jobs[p.job_id]
        if job.spec.booking is not None:
            b = next(b for b in snap.bookings if b.id == job.spec.booking)
            assert b.start <= NOW < b.end and {a.node for a in p.allocation} <= set(b.nodes)


@PROPS
@given(snapshots())
def test_every_pending_job_is_placed_or_has_a_reason(snap):
    d = schedule(snap, NOW)
    placed = [p.job_id for p in d.placements]
    assert len(placed) == len(set(placed))
    assert set(placed).isdisjoint(d.reasons)
    assert set(placed) | set(d.reasons) == {j.id for j in snap.pending}
    assert all(isinstance(r, str) and r for r in d.reasons.values())


@PROPS
@given(snapshots())
def test_preemptions_are_of_running_jobs_once_and_keep_their_requeue_flag(snap):
    d = schedule(snap, NOW)
    running = {j.id: j for j in snap.running}
    ids = [p.job_id for p in d.preemptions]
    assert len(ids) == len(set(ids))
    for p in d.preemptions:
        job = running[p.job_id]
        assert not job.extra.get("pending_action")
        assert p.requeue == job.spec.requeue and p.reason.startswith("Preempted(")


@PROPS
@given(snapshots())
def test_cpus_of_a_node_are_not_oversubscribed(snap):
    d = schedule(snap, NOW)
    jobs = {j.id: j for j in snap.pending}
    used: dict[str, int] = {}
    for j in snap.running:
        for a in j.allocation:
            used[a.node] = used.get(a.node, 0) + (j.spec.cpus or 0)
    before = dict(used)
    for p in d.placements:
        for a in p.allocation:
            used[a.node] = used.get(a.node, 0) + (jobs[p.job_id].spec.cpus or 0)
    for n in snap.nodes:
        if n.cpus and before.get(n.name, 0) <= n.cpus:
            assert used.get(n.name, 0) <= n.cpus


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots())
def test_schedule_is_deterministic(snap):
    assert schedule(snap, NOW) == schedule(snap, NOW)

"""Step 4: preemption by priority class and by quota reclaim; cheapest whole victims."""

from gpufleet.scheduler import schedule
from tests.scheduler.builders import (
    make_job, make_node, make_nodes, make_running, make_snapshot, make_tenant, placed, preempted,
)

H = 3600.0
AB = [make_tenant("a", {"a100": 8}), make_tenant("b", {"a100": 8})]


def test_higher_class_preempts_lower_class_of_its_tenant():
    victim = make_running(8, on="n001", tenant="a", priority=0)
    urgent = make_job(8, tenant="a", priority=100)
    d = schedule(make_snapshot(make_nodes(1), pending=[urgent], running=[victim]), H)
    assert preempted(d)[victim.id].reason == f"Preempted(for job {urgent.id} of tenant a: priority class 1 > 0)"
    assert d.reasons[urgent.id] == f"Preempting(jobs {victim.id})"
    assert not d.placements  # it starts next cycle, once the victim has exited


def test_same_class_never_preempts_by_priority():
    victim = make_running(8, on="n001", tenant="a", priority=0)
    job = make_job(8, tenant="a", priority=99)
    d = schedule(make_snapshot(make_nodes(1), pending=[job], running=[victim]), H)
    assert not d.preemptions


def test_priority_does_not_take_another_tenants_guaranteed_jobs():
    victim = make_running(8, on="n001", tenant="b")  # within b's quota of 8
    urgent = make_job(8, tenant="a", priority=500)
    d = schedule(make_snapshot(make_nodes(1), pending=[urgent], running=[victim], tenants=AB), H)
    assert not d.preemptions


def test_priority_takes_another_tenants_borrowed_jobs():
    guaranteed = make_running(8, on="n001", tenant="b", started_at=0)
    borrowed = make_running(8, on="n002", tenant="b", started_at=10)
    urgent = make_job(8, tenant="a", priority=500)
    tenants = [make_tenant("a", {"a100": 0}), make_tenant("b", {"a100": 8})]
    d = schedule(make_snapshot(make_nodes(2), pending=[urgent], running=[guaranteed, borrowed],
                               tenants=tenants), H)
    assert list(preempted(d)) == [borrowed.id]


def test_quota_reclaim_preempts_borrowed_jobs_whatever_their_class():
    own = make_running(8, on="n001", tenant="b", started_at=0, priority=300)
    borrowed = make_running(8, on="n002", tenant="b", started_at=10, priority=300)
    job = make_job(8, tenant="a")  # within a's quota of 8
    d = schedule(make_snapshot(make_nodes(2), pending=[job], running=[own, borrowed], tenants=AB), H)
    p = preempted(d)
    assert list(p) == [borrowed.id]
    assert p[borrowed.id].reason == f"Preempted(quota reclaim: tenant a takes back its a100 quota for job {job.id})"


def test_no_reclaim_beyond_quota():
    borrowed = make_running(8, on="n001", tenant="b", started_at=10)
    mine = make_running(8, on="n002", tenant="a")
    job = make_job(8, tenant="a")  # a already uses its 8
    d = schedule(make_snapshot(make_nodes(2), pending=[job], running=[borrowed, mine],
                               tenants=[AB[0], make_tenant("b", {})]), H)
    assert not d.preemptions


def test_victims_chosen_for_fewest_gpu_hours_lost():
    old = make_running(8, on="n001", tenant="b", started_at=0)  # 8 GPUs x 10h
    young = make_running(8, on="n002", tenant="b", started_at=9 * H)  # 8 GPUs x 1h
    job = make_job(8, tenant="a")
    tenants = [make_tenant("a", {"a100": 8}), make_tenant("b", {})]
    d = schedule(make_snapshot(make_nodes(2), pending=[job], running=[old, young], tenants=tenants), 10 * H)
    assert list(preempted(d)) == [young.id]


def test_borrowed_before_guaranteed_even_when_dearer():
    tenants = [make_tenant("a", {"a100": 2})]
    guaranteed = make_running(2, on="n001", tenant="a", started_at=0)  # within quota: 20 GPU-h lost
    borrowed = make_running(8, on="n002", tenant="a", started_at=5 * H)  # beyond quota: 40 GPU-h lost
    urgent = make_job(8, tenant="a", priority=100)
    d = schedule(make_snapshot(make_nodes(2), pending=[urgent], running=[guaranteed, borrowed],
                               tenants=tenants), 10 * H)
    assert list(preempted(d)) == [borrowed.id]


def test_one_cheap_victim_beats_several():
    node = make_node("n001", 8)
    small = [make_running(2, on=[("n001", (i, i + 1))], tenant="a", started_at=9 * H) for i in (0, 2)]
    big = make_running(4, on=[("n001", (4, 5, 6, 7))], tenant="a", started_at=9.5 * H)
    urgent = make_job(4, tenant="a", priority=100)
    d = schedule(make_snapshot([node], pending=[urgent], running=[*small, big]), 10 * H)
    assert list(preempted(d)) == [big.id]  # 2 GPU-hours lost instead of 4


def test_gang_victims_are_preempted_whole():
    gang = make_running(4, on=["n001", "n002"], tenant="a", started_at=0)
    urgent = make_job(8, tenant="a", priority=100)
    d = schedule(make_snapshot(make_nodes(2), pending=[urgent], running=[gang]), H)
    assert list(preempted(d)) == [gang.id]


def test_requeue_flag_is_carried():
    victim = make_running(8, on="n001", tenant="a", requeue=False)
    d = schedule(make_snapshot(make_nodes(1), pending=[make_job(8, tenant="a", priority=100)],
                               running=[victim]), H)
    assert preempted(d)[victim.id].requeue is False


def test_leaving_victims_are_waited_for_not_replaced():
    """Next cycle the victim is still RUNNING with a pending action: no second victim is chosen."""
    victim = make_running(8, on="n001", tenant="a", started_at=0)
    victim.extra["pending_action"] = "preempt"
    other = make_running(8, on="n002", tenant="a", started_at=0)
    urgent = make_job(8, tenant="a", priority=100)
    d = schedule(make_snapshot(make_nodes(2), pending=[urgent], running=[victim, other]), H)
    assert not d.preemptions
    assert d.reasons[urgent.id] == f"WaitingForRelease(jobs {victim.id} exiting)"


def test_preempted_gpus_are_held_for_the_preemptor_in_that_cycle():
    victim = make_running(4, on=[("n001", (0, 1, 2, 3))], tenant="a", started_at=0)
    urgent = make_job(8, tenant="a", priority=100)
    small = make_job(4, tenant="a")  # would fit the 4 free GPUs of n001
    d = schedule(make_snapshot(make_nodes(1), pending=[urgent, small], running=[victim]), H)
    assert list(preempted(d)) == [victim.id] and not d.placements


def test_preemption_can_be_switched_off():
    victim = make_running(8, on="n001", tenant="a")
    d = schedule(make_snapshot(make_nodes(1), pending=[make_job(8, tenant="a", priority=100)],
                               running=[victim], preemption=False), H)
    assert not d.preemptions


def test_preemptors_per_cycle_are_capped():
    running = [make_running(8, on=n.name, tenant="a") for n in make_nodes(3)]
    urgent = [make_job(8, tenant="a", priority=100) for _ in range(3)]
    d = schedule(make_snapshot(make_nodes(3), pending=urgent, running=running, max_preemptors_per_cycle=2), H)
    assert len(d.preemptions) == 2


def test_reclaim_and_the_victims_requeue_do_not_ping_pong():
    """Cycle 1: a reclaims from b. Cycle 2 (b's victim requeued, pending, submitted earlier):
    a's job goes first because it is within quota; b's job is borrowing and waits."""
    b_own = make_running(8, on="n001", tenant="b", started_at=0)
    b_borrowed = make_running(8, on="n002", tenant="b", started_at=10)
    a_job = make_job(8, tenant="a", submitted_at=100)
    d = schedule(make_snapshot(make_nodes(2), pending=[a_job], running=[b_own, b_borrowed], tenants=AB), H)
    assert list(preempted(d)) == [b_borrowed.id]
    requeued = make_job(8, tenant="b", id=b_borrowed.id, submitted_at=0)
    d2 = schedule(make_snapshot(make_nodes(2), pending=[requeued, a_job], running=[b_own], tenants=AB), H + 5)
    assert list(placed(d2)) == [a_job.id] and not d2.preemptions


def test_a_reclaimed_borrower_of_a_higher_class_does_not_take_the_gpus_back():
    """X (tenant a, class 1) borrows b's 2 GPUs; Y (tenant b, class 0, within quota) reclaims them.
    Next cycle X is pending again: the guarantee beats the class, Y starts, X waits."""
    tenants = [make_tenant("a", {"a100": 2}), make_tenant("b", {"a100": 2})]
    nodes = [make_node("n1", 4)]
    x = make_running(4, on="n1", tenant="a", priority=100, started_at=0)
    y = make_job(2, tenant="b", submitted_at=10)
    d = schedule(make_snapshot(nodes, pending=[y], running=[x], tenants=tenants), 10.0)
    assert list(preempted(d)) == [x.id] and "quota reclaim" in preempted(d)[x.id].reason
    x_again = make_job(4, id=x.id, tenant="a", priority=100, submitted_at=0)
    d2 = schedule(make_snapshot(nodes, pending=[x_again, y], tenants=tenants), 11.0)
    assert list(placed(d2)) == [y.id] and not d2.preemptions
    assert d2.reasons[x.id].startswith("Resources(needs 1x4 a100, largest free 2")


# las: Tiresias' two queues. Below las_threshold_gpu_s (here 1 GPU-hour) of attained service a job may
# preempt jobs of its own priority class above it.
LAS_1H = {"las_threshold_gpu_s": 3600.0}
def _las(victim, job, now=H, **cfg):
    cfg = {**LAS_1H, **cfg}
    return schedule(make_snapshot(make_nodes(1), pending=[job], running=[victim], policy="las", **cfg), now)


def test_las_new_job_preempts_one_that_attained_more_than_the_threshold():
    victim = make_running(8, on="n001", tenant="a", started_at=0.0)  # 8 GPU-hours by now
    job = make_job(8, tenant="b")
    d = _las(victim, job)
    assert preempted(d)[victim.id].reason == (
        f"Preempted(for job {job.id} of tenant b: it attained less than 3600 GPU-seconds, this job more (las))")
    assert d.reasons[job.id] == f"Preempting(jobs {victim.id})"


def test_las_leaves_alone_jobs_below_the_threshold_higher_classes_guarantees_and_the_starved():
    young = make_running(8, on="n001", started_at=H - 100)  # 800 GPU-seconds
    assert not _las(young, make_job(8)).preemptions
    higher = make_running(8, on="n001", started_at=0.0, priority=100)
    assert not _las(higher, make_job(8)).preemptions
    guaranteed = make_running(8, on="n001", tenant="b", started_at=0.0)
    snap = make_snapshot(make_nodes(1), pending=[make_job(8, tenant="a")], running=[guaranteed],
                         tenants=AB, policy="las", **LAS_1H)
    assert not schedule(snap, H).preemptions
    week = 7 * 86400.0
    waited = make_running(8, on="n001", started_at=week, submitted_at=0.0)  # pending a week before it ran
    assert not _las(waited, make_job(8, submitted_at=week + H), now=week + H).preemptions
    assert _las(make_running(8, on="n001", started_at=0.0), make_job(8), las_threshold_gpu_s=0.0).preemptions == []
    assert _las(make_running(8, on="n001", started_at=0.0), make_job(8), preemption=False).preemptions == []


def test_a_running_job_without_a_start_time_is_still_a_victim():
    victim = make_running(8, on="n001", tenant="a", priority=0)
    victim.started_at = None  # e.g. reported RUNNING by an engine before its start was recorded
    urgent = make_job(8, tenant="a", priority=100)
    d = schedule(make_snapshot(make_nodes(1), pending=[urgent], running=[victim]), H)
    assert victim.id in preempted(d)

"""Bookings: only the owner inside the window; others before it only if they end by its start."""

import pytest

from gpufleet.scheduler import schedule
from tests.scheduler.builders import (
    make_booking, make_job, make_node, make_running, make_snapshot, make_tenant, placed, preempted,
)

H = 3600.0


def snap(pending, bookings, running=(), **kw):
    nodes = [make_node("n1", 8), make_node("n2", 8)]
    return make_snapshot(nodes, pending=pending, running=running, bookings=bookings, **kw)


@pytest.mark.parametrize("exclusive, tenant, booking, allowed", [
    (True, "a", 7, True),        # the booking's own job
    (True, "a", None, False),    # exclusive: the owner's other jobs stay out too
    (False, "a", None, True),    # shared with the owner's tenant
    (False, "b", None, False),   # never another tenant
    (True, "b", None, False),
])
def test_inside_the_window_only_the_owner_runs(exclusive, tenant, booking, allowed):
    b = make_booking(7, tenant="a", nodes=("n1", "n2"), start=0, end=4 * H, exclusive=exclusive)
    job = make_job(8, tenant=tenant, booking=booking, time_limit_s=60)
    d = schedule(snap([job], [b]), H)
    assert (job.id in placed(d)) is allowed
    if not allowed:
        assert d.reasons[job.id].startswith("Booked(booking 7 of tenant a, 3h left)")


@pytest.mark.parametrize("limit, allowed", [(H, True), (2 * H, True), (2 * H + 1, False), (None, False)])
def test_before_the_window_others_run_only_if_they_end_by_its_start(limit, allowed):
    b = make_booking(7, tenant="a", nodes=("n1", "n2"), start=2 * H, end=6 * H)
    job = make_job(8, tenant="b", time_limit_s=limit)
    d = schedule(snap([job], [b]), 0.0)
    assert (job.id in placed(d)) is allowed
    if not allowed:
        assert d.reasons[job.id].startswith("Booked(booking 7 of tenant a starts in 2h)")


def test_unbooked_nodes_stay_open_to_everyone():
    b = make_booking(7, tenant="a", nodes=("n1",), start=0, end=4 * H)
    job = make_job(8, tenant="b")
    d = schedule(snap([job], [b]), H)
    assert [a.node for a in placed(d)[job.id]] == ["n2"]


def test_booking_job_waits_for_its_window_and_runs_only_on_its_nodes():
    b = make_booking(7, tenant="a", nodes=("n2",), start=2 * H, end=6 * H)
    job = make_job(8, tenant="a", booking=7)
    d = schedule(snap([job], [b]), 0.0)
    assert d.reasons[job.id] == "WaitingForBooking(booking 7 starts in 2h)"
    d = schedule(snap([job], [b]), 3 * H)
    assert [a.node for a in placed(d)[job.id]] == ["n2"]


@pytest.mark.parametrize("booking, tenant, now, reason", [
    (9, "a", 0.0, "BookingNotFound(booking 9)"),
    (7, "b", 0.0, "BookingNotYours(booking 7 belongs to tenant a)"),
    (7, "a", 7 * H, "BookingEnded(booking 7)"),
])
def test_booking_job_reasons(booking, tenant, now, reason):
    b = make_booking(7, tenant="a", nodes=("n2",), start=2 * H, end=6 * H)
    job = make_job(8, tenant=tenant, booking=booking)
    assert schedule(snap([job], [b]), now).reasons[job.id] == reason


def test_booking_jobs_bypass_quota():
    b = make_booking(7, tenant="a", nodes=("n1", "n2"), start=0, end=4 * H)
    jobs = [make_job(8, tenant="a", booking=7) for _ in range(2)]
    d = schedule(snap(jobs, [b], tenants=[make_tenant("a", {}, limit={"*": 0})]), H)
    assert len(d.placements) == 2


def test_jobs_of_others_leave_when_the_window_opens():
    b = make_booking(7, tenant="a", nodes=("n1",), start=H, end=4 * H)
    intruder = make_running(4, on="n1", tenant="b", started_at=0, requeue=False)
    owner = make_running(4, on=[("n1", (4, 5, 6, 7))], tenant="a", started_at=0, booking=7)
    elsewhere = make_running(4, on="n2", tenant="b", started_at=0)
    d = schedule(snap([], [b], running=[intruder, owner, elsewhere]), H)
    p = preempted(d)
    assert list(p) == [intruder.id]
    assert p[intruder.id].reason == "Preempted(booking 7 of tenant a started)" and p[intruder.id].requeue is False


def test_gpus_freed_by_an_eviction_go_to_the_owner_next_cycle_not_to_others():
    b = make_booking(7, tenant="a", nodes=("n1",), start=0, end=4 * H, exclusive=False)
    intruder = make_running(8, on="n1", tenant="b", started_at=0)
    intruder.extra["pending_action"] = "preempt"  # evicted last cycle, still exiting
    job = make_job(8, tenant="a", time_limit_s=60)
    d = schedule(make_snapshot([make_node("n1", 8)], pending=[job], running=[intruder], bookings=[b]), H)
    assert not d.preemptions
    assert d.reasons[job.id] == f"WaitingForRelease(jobs {intruder.id} exiting)"

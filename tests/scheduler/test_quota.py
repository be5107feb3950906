"""Step 2: admission against quota: guarantees, borrowing, hard limits, guaranteed-before-borrowing."""

import pytest

from gpufleet.scheduler import schedule
from gpufleet.scheduler.quota import Held, QuotaBook
from tests.scheduler.builders import (
    make_job, make_node, make_nodes, make_running, make_snapshot, make_tenant, placed,
)


def held(job_id, tenant, gpus, model="a100", started_at=0.0, booked=False):
    return Held(job_id, tenant, model, gpus, started_at, booked)


@pytest.mark.parametrize("quota, limit, can_borrow, used, ask, expect", [
    ({"a100": 16}, None, True, 8, 8, ("guaranteed",)),
    ({"a100": 16}, None, True, 12, 8, ("borrowing",)),
    ({"a100": 16}, {"a100": 24}, True, 16, 8, ("borrowing",)),
    ({"a100": 16}, {"a100": 24}, True, 20, 8, "QuotaExceeded(a100: 20/24, needs 8)"),
    ({"a100": 16}, {"a100": 16}, True, 16, 1, "QuotaExceeded(a100: 16/16)"),
    ({"a100": 16}, None, False, 16, 1, "QuotaExceeded(a100: 16/16)"),
    ({"a100": 16}, None, False, 10, 8, "QuotaExceeded(a100: 10/16, needs 8)"),
    ({"*": 4}, None, True, 0, 4, ("guaranteed",)),
    ({"*": 4, "a100": 0}, None, True, 0, 4, ("borrowing",)),
    ({}, {"*": 0}, True, 0, 1, "QuotaExceeded(a100: 0/0)"),
])
def test_admission_table(quota, limit, can_borrow, used, ask, expect):
    tenants = {"a": make_tenant("a", quota, limit=limit, can_borrow=can_borrow)}
    book = QuotaBook(tenants, [held(1, "a", used)] if used else [])
    adm = book.admit("a", ["a100"], ask)
    if isinstance(expect, str):
        assert adm.reason == expect and not adm.guaranteed and not adm.borrowing
    else:
        got = ("guaranteed",) if adm.guaranteed else ("borrowing",) if adm.borrowing else ()
        assert got == expect and adm.reason == ""


def test_unknown_tenant_borrows_without_cap():
    adm = QuotaBook({}, []).admit("nobody", ["a100"], 64)
    assert adm.borrowing == ["a100"] and adm.guaranteed == []


def test_newest_jobs_beyond_quota_are_the_borrowed_ones():
    tenants = {"a": make_tenant("a", {"a100": 8})}
    book = QuotaBook(tenants, [held(1, "a", 4, started_at=0), held(2, "a", 4, started_at=5),
                               held(3, "a", 4, started_at=9), held(4, "a", 2, model="h100")])
    assert book.borrowed == {3, 4}
    assert book.borrowed_left == {("a", "a100"): 4, ("a", "h100"): 2}
    assert book.reclaimable("a100", but="b") == 4 and book.reclaimable("a100", but="a") == 0


def test_jobs_inside_their_booking_are_outside_quota():
    tenants = {"a": make_tenant("a", {"a100": 8}, limit={"a100": 8})}
    book = QuotaBook(tenants, [held(1, "a", 8, booked=True)])
    assert book.used == {} and book.admit("a", ["a100"], 8).guaranteed == ["a100"]


def test_hard_limit_is_never_exceeded_in_one_cycle():
    tenants = [make_tenant("a", {"a100": 4}, limit={"a100": 10})]
    jobs = [make_job(4, tenant="a") for _ in range(4)]
    d = schedule(make_snapshot(make_nodes(4), pending=jobs, tenants=tenants), 0.0)
    assert len(d.placements) == 2  # 4 + 4 = 8 <= 10 < 12
    assert set(d.reasons.values()) == {"QuotaExceeded(a100: 8/10, needs 4)"}


def test_tenant_that_may_not_borrow_stops_at_quota():
    tenants = [make_tenant("a", {"a100": 8}, can_borrow=False)]
    jobs = [make_job(8, tenant="a"), make_job(1, tenant="a")]
    d = schedule(make_snapshot(make_nodes(2), pending=jobs, tenants=tenants), 0.0)
    assert list(placed(d)) == [jobs[0].id]
    assert d.reasons[jobs[1].id] == "QuotaExceeded(a100: 8/8)"


def test_idle_capacity_is_borrowed():
    tenants = [make_tenant("a", {"a100": 8}), make_tenant("b", {"a100": 8})]
    jobs = [make_job(8, tenant="a") for _ in range(2)]
    d = schedule(make_snapshot(make_nodes(2), pending=jobs, tenants=tenants), 0.0)
    assert len(d.placements) == 2  # a borrows b's idle 8


def test_jobs_within_quota_go_before_borrowing_jobs():
    # b submitted first but is over its quota; a is within its own: a gets the only free node
    tenants = [make_tenant("a", {"a100": 8}), make_tenant("b", {"a100": 8})]
    running = [make_running(8, on="n001", tenant="b")]
    b_job = make_job(8, tenant="b", submitted_at=0)
    a_job = make_job(8, tenant="a", submitted_at=10)
    d = schedule(make_snapshot(make_nodes(2), pending=[b_job, a_job], running=running, tenants=tenants), 0.0)
    assert list(placed(d)) == [a_job.id]
    assert d.reasons[b_job.id].startswith("Resources(needs 1x8 a100, largest free 0")


def test_quota_is_per_model_and_unnamed_model_jobs_prefer_their_guarantee():
    tenants = [make_tenant("a", {"a100": 0, "h100": 8})]
    nodes = [make_node("a1", 8, "a100"), make_node("h1", 8, "h100")]
    job = make_job(8, tenant="a")  # no model named: may run on either, h100 is within quota
    d = schedule(make_snapshot(nodes, pending=[job], tenants=tenants), 0.0)
    assert [a.node for a in placed(d)[job.id]] == ["h1"]


def test_wildcard_quota_and_limit():
    tenants = [make_tenant("a", {"*": 2}, limit={"*": 2})]
    nodes = [make_node("a1", 8, "a100"), make_node("h1", 8, "h100")]
    jobs = [make_job(2, tenant="a", gpu_model="a100"), make_job(2, tenant="a", gpu_model="h100"),
            make_job(1, tenant="a", gpu_model="h100")]
    d = schedule(make_snapshot(nodes, pending=jobs, tenants=tenants), 0.0)
    assert set(placed(d)) == {jobs[0].id, jobs[1].id}
    assert d.reasons[jobs[2].id] == "QuotaExceeded(h100: 2/2)"


def test_a_tenants_small_jobs_do_not_take_the_quota_its_older_big_job_waits_for():
    """a holds 8 of its 16; its 2x8 job would borrow, so its later small job may not use a's
    guarantee first (it would keep the big job out forever): it borrows, after b's guaranteed job."""
    tenants = [make_tenant("a", {"a100": 16}), make_tenant("b", {"a100": 8})]
    nodes = make_nodes(3)
    running = [make_running(8, on="n003", tenant="a")]
    big = make_job(8, nodes=2, tenant="a", submitted_at=0)
    small = make_job(4, tenant="a", submitted_at=1, time_limit_s=2 * 86400)
    b_job = make_job(8, tenant="b", submitted_at=2)
    d = schedule(make_snapshot(nodes, pending=[big, small, b_job], running=running, tenants=tenants), 0.0)
    assert list(placed(d)) == [b_job.id]
    assert d.reasons[big.id].startswith("Resources(needs 2x8 a100, largest free 8; reserved")
    assert d.reasons[small.id].startswith(f"BackfillBlocked(head job {big.id}")


def test_a_tenants_small_jobs_wait_behind_its_big_job_under_the_hard_limit():
    tenants = [make_tenant("a", {"a100": 8}, limit={"a100": 16})]
    running = [make_running(8, on="n003", tenant="a")]
    big, small = make_job(8, nodes=2, tenant="a"), make_job(4, tenant="a")
    d = schedule(make_snapshot(make_nodes(3), pending=[big, small], running=running, tenants=tenants), 0.0)
    assert not d.placements
    assert d.reasons[big.id] == "QuotaExceeded(a100: 8/16, needs 16)"
    assert d.reasons[small.id] == f"QuotaExceeded(a100: 8/16, behind job {big.id})"


def test_a_job_bigger_than_the_limit_blocks_nobody():
    tenants = [make_tenant("a", {"a100": 8}, limit={"a100": 8})]
    huge, small = make_job(8, nodes=2, tenant="a"), make_job(4, tenant="a")
    d = schedule(make_snapshot(make_nodes(3), pending=[huge, small], tenants=tenants), 0.0)
    assert list(placed(d)) == [small.id]
    assert d.reasons[huge.id] == "QuotaExceeded(a100: 0/8, needs 16)"

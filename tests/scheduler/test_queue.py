"""Step 1: queue order. Priority classes first, then fifo | priority | fairshare | sjf | las."""

import pytest

from gpufleet.scheduler import SchedulerConfig, schedule
from gpufleet.scheduler.queue import attained_gpu_s, order_queue, priority_class
from tests.scheduler.builders import make_job, make_node, make_running, make_snapshot, make_tenant, placed


def ids(classes):
    return [[j.id for j in jobs] for jobs in classes]


def order(jobs, policy, usage=None, tenants=(), **cfg):
    config = SchedulerConfig(policy=policy, **cfg)
    return ids(order_queue(jobs, config, usage or {}, {t.name: t for t in tenants}))


def test_fifo_is_submit_time_then_id():
    jobs = [make_job(id=3, submitted_at=5), make_job(id=1, submitted_at=9), make_job(id=2, submitted_at=5)]
    assert order(jobs, "fifo") == [[2, 3, 1]]


def test_priority_orders_inside_a_class_by_priority():
    jobs = [make_job(id=1, priority=1), make_job(id=2, priority=50), make_job(id=3, priority=50, submitted_at=0)]
    assert order(jobs, "priority") == [[3, 2, 1]]


@pytest.mark.parametrize("policy", ["fifo", "priority", "fairshare", "sjf", "las"])
def test_priority_classes_come_first_whatever_the_policy(policy):
    low = make_job(id=1, priority=-5, time_limit_s=60)  # class -1
    normal = make_job(id=2, priority=99, time_limit_s=600)  # class 0
    high = make_job(id=3, priority=100, time_limit_s=6000)  # class 1
    urgent = make_job(id=4, priority=1000, time_limit_s=60000)  # class 10
    assert order([low, normal, high, urgent], policy) == [[4], [3], [2], [1]]


def test_priority_class_bands_follow_the_configured_size():
    config = SchedulerConfig(priority_class_size=10)
    assert [priority_class(make_job(priority=p), config) for p in (0, 9, 10, -1)] == [0, 0, 1, -1]


def test_fifo_ignores_priority_within_a_class():
    jobs = [make_job(id=1, priority=0), make_job(id=2, priority=90)]
    assert order(jobs, "fifo") == [[1, 2]]


def test_sjf_orders_by_time_limit_with_the_default_for_none():
    jobs = [make_job(id=1, time_limit_s=7200), make_job(id=2), make_job(id=3, time_limit_s=60)]
    assert order(jobs, "sjf", default_time_limit_s=3600) == [[3, 2, 1]]


def test_las_orders_by_attained_service():
    jobs = [make_job(id=1, attained_gpu_s=500.0), make_job(id=2, attained_gpu_s=0.0),
            make_job(id=3, attained_gpu_s=100.0)]
    assert order(jobs, "las") == [[2, 3, 1]]


def test_attained_service_adds_the_current_run():
    job = make_running(4, on="n1", started_at=100.0, attained_gpu_s=50.0)
    assert attained_gpu_s(job, now=110.0) == 50.0 + 4 * 10.0
    assert attained_gpu_s(make_job(attained_gpu_s=7.0), now=1e9) == 7.0


def test_fairshare_least_weighted_usage_first():
    jobs = [make_job(id=1, tenant="a"), make_job(id=2, tenant="b"), make_job(id=3, tenant="c")]
    tenants = [make_tenant("a", weight=1), make_tenant("b", weight=4), make_tenant("c", weight=1)]
    # weighted usage: a 100, b 50, c 0
    assert order(jobs, "fairshare", usage={"a": 100.0, "b": 200.0}, tenants=tenants) == [[3, 2, 1]]


def test_fairshare_alternates_tenants_with_equal_usage():
    jobs = [make_job(id=i, tenant="a") for i in (1, 2, 3)] + [make_job(id=i, tenant="b") for i in (4, 5, 6)]
    assert order(jobs, "fairshare") == [[1, 4, 2, 5, 3, 6]]


def test_fairshare_charges_by_expected_gpu_seconds():
    big = make_job(id=1, tenant="a", gpus=8, time_limit_s=3600)
    a2 = make_job(id=2, tenant="a", gpus=1, time_limit_s=60)
    b = [make_job(id=i, tenant="b", gpus=1, time_limit_s=60) for i in (3, 4, 5)]
    # after a's 8 GPU-hour job, b's three small jobs (180 GPU-s in all) come before a's next one
    assert order([big, a2, *b], "fairshare") == [[1, 3, 4, 5, 2]]


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="unknown queue policy 'lottery'"):
        order([make_job()], "lottery")


@pytest.mark.parametrize("policy, winner", [
    ("fifo", 1), ("priority", 2), ("sjf", 3), ("las", 4), ("fairshare", 5),
])
def test_policy_decides_who_gets_the_only_node(policy, winner):
    jobs = [
        make_job(8, id=1, submitted_at=0, tenant="a", time_limit_s=9000, attained_gpu_s=900.0),
        make_job(8, id=2, submitted_at=1, tenant="a", priority=9, time_limit_s=9000, attained_gpu_s=900.0),
        make_job(8, id=3, submitted_at=2, tenant="a", time_limit_s=60, attained_gpu_s=900.0),
        make_job(8, id=4, submitted_at=3, tenant="a", time_limit_s=9000),
        make_job(8, id=5, submitted_at=4, tenant="idle", time_limit_s=9000, attained_gpu_s=900.0),
    ]
    snap = make_snapshot([make_node("n1", 8)], pending=jobs, usage={"a": 1e6}, policy=policy, backfill=False)
    assert list(placed(schedule(snap, 0.0))) == [winner]


def test_the_oldest_starved_job_goes_first_whatever_the_policy():
    day = 86400
    long_old = make_job(id=1, submitted_at=0, time_limit_s=7 * day)
    long_older = make_job(id=2, submitted_at=-10, time_limit_s=6 * day)
    short = make_job(id=3, submitted_at=8 * day, time_limit_s=60)
    config = SchedulerConfig(policy="sjf")  # starvation_s: 7 days
    assert ids(order_queue([long_old, short, long_older], config, {}, {}, now=8 * day)) == [[2, 3, 1]]
    assert ids(order_queue([long_old, short, long_older], config, {}, {}, now=6 * day)) == [[3, 2, 1]]
    off = SchedulerConfig(policy="sjf", starvation_s=0)
    assert ids(order_queue([long_old, short, long_older], off, {}, {}, now=8 * day)) == [[3, 2, 1]]

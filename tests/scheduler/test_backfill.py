"""Step 5: EASY backfill. The head job reserves; others may jump ahead only if they do not delay it."""

import pytest

from gpufleet.scheduler import schedule
from tests.scheduler.builders import make_job, make_node, make_nodes, make_running, make_snapshot, placed

H = 3600


def two_nodes_half_busy():
    """n001 and n002 each run a 4-GPU job: n001's ends at 1h, n002's at 3h."""
    nodes = make_nodes(2)
    running = [make_running(4, on="n001", started_at=0, time_limit_s=1 * H),
               make_running(4, on="n002", started_at=0, time_limit_s=3 * H)]
    return nodes, running


@pytest.mark.parametrize("limit, starts", [
    (30 * 60, True),    # ends before the head starts (1h): backfilled
    (1 * H, True),      # ends exactly then: still fine
    (2 * H, False),     # would still hold n001 when the head needs it
    (None, False),      # no limit: the default (24h) counts
])
def test_small_job_backfills_only_if_it_ends_before_the_head_starts(limit, starts):
    nodes, running = two_nodes_half_busy()
    running[1] = make_running(8, on="n002", started_at=0, time_limit_s=3 * H)  # only n001 has room
    head = make_job(8)  # needs a whole node: n001 at 1h
    small = make_job(4, time_limit_s=limit)
    d = schedule(make_snapshot(nodes, pending=[head, small], running=running, max_reservations=1), 0.0)
    assert head.id not in placed(d)
    assert d.reasons[head.id] == "Resources(needs 1x8 a100, largest free 4; reserved, starts in 1h)"
    assert (small.id in placed(d)) is starts
    if not starts:
        assert d.reasons[small.id] == f"BackfillBlocked(head job {head.id} starts in 1h)"


def test_long_job_may_use_nodes_the_head_does_not_need():
    nodes, running = two_nodes_half_busy()
    head = make_job(8)
    long = make_job(4, time_limit_s=10 * H)
    d = schedule(make_snapshot(nodes, pending=[head, long], running=running), 0.0)
    assert [a.node for a in placed(d)[long.id]] == ["n002"]


def test_spare_gpus_of_a_reserved_node_may_be_used():
    # the head needs 4 GPUs at 1h on n001, where 8 will be free: 4 spare for long jobs
    nodes = [make_node("n001", 8)]
    running = [make_running(6, on="n001", started_at=0, time_limit_s=H)]
    head, long1, long2 = make_job(4), make_job(2, time_limit_s=9 * H), make_job(1, time_limit_s=9 * H)
    d = schedule(make_snapshot(nodes, pending=[head, long1, long2], running=running), 0.0)
    assert long1.id in placed(d)  # takes 2 of the 4 spare GPUs
    assert head.id not in placed(d) and long2.id not in placed(d)  # nothing left free now


def test_spare_is_charged_by_jobs_running_past_the_start():
    nodes = [make_node("n001", 8)]
    running = [make_running(4, on="n001", started_at=0, time_limit_s=H)]
    head = make_job(8)
    long1, long2 = make_job(2, time_limit_s=9 * H), make_job(2, time_limit_s=9 * H)
    d = schedule(make_snapshot(nodes, pending=[head, long1, long2], running=running), 0.0)
    assert long1.id not in placed(d) and long2.id not in placed(d)  # spare is 0


def test_gang_head_reserves_whole_nodes_and_is_not_starved():
    """A stream of small jobs keeps coming; the 2-node gang still starts when the running jobs end."""
    nodes = make_nodes(2)
    running = [make_running(4, on="n001", started_at=0, time_limit_s=H),
               make_running(4, on="n002", started_at=0, time_limit_s=H)]
    gang = make_job(8, nodes=2, submitted_at=0)
    now = 0.0
    for step in range(4):
        stream = [make_job(2, submitted_at=now + 1, time_limit_s=4 * H) for _ in range(3)]
        d = schedule(make_snapshot(nodes, pending=[gang, *stream], running=running), now)
        assert not any(j.id in placed(d) for j in stream), "small long jobs must not delay the gang"
        if gang.id in placed(d):
            break
        now += 1800
        running = [r for r in running if r.started_at + r.spec.time_limit_s > now]
    assert gang.id in placed(d) and now == H


def test_without_backfill_no_reservation_is_made():
    nodes, running = two_nodes_half_busy()
    head, long = make_job(8), make_job(4, time_limit_s=10 * H)
    d = schedule(make_snapshot(nodes, pending=[head, long], running=running, backfill=False), 0.0)
    assert long.id in placed(d)
    assert d.reasons[head.id] == "Resources(needs 1x8 a100, largest free 4)"
    assert d.stats["reservations"] == 0


def test_the_first_blocked_jobs_reserve_disjoint_capacity():
    nodes = make_nodes(3)
    running = [make_running(8, on=f"n00{k}", time_limit_s=k * H) for k in (1, 2, 3)]
    jobs = [make_job(8) for _ in range(3)]
    d = schedule(make_snapshot(nodes, pending=jobs, running=running, max_reservations=2), 0.0)
    assert d.stats["reservations"] == 2
    assert d.reasons[jobs[0].id].endswith("reserved, starts in 1h)")
    assert d.reasons[jobs[1].id].endswith("reserved, starts in 2h)")
    assert d.reasons[jobs[2].id] == "Resources(needs 1x8 a100, largest free 0)"


def test_models_reserve_their_own_nodes():
    nodes = [make_node("a1", 8, "a100"), make_node("h1", 8, "h100")]
    running = [make_running(4, on="a1", time_limit_s=H), make_running(4, on="h1", time_limit_s=2 * H)]
    jobs = [make_job(8, gpu_model="a100"), make_job(8, gpu_model="a100"), make_job(8, gpu_model="h100")]
    d = schedule(make_snapshot(nodes, pending=jobs, running=running), 0.0)
    assert d.stats["reservations"] == 2
    assert d.reasons[jobs[0].id].endswith("reserved, starts in 1h)")
    assert d.reasons[jobs[1].id] == "Resources(needs 1x8 a100, largest free 4)"  # a1 is taken
    assert d.reasons[jobs[2].id].endswith("reserved, starts in 2h)")


def test_overdue_running_jobs_count_as_ending_now():
    nodes = [make_node("n001", 8)]
    running = [make_running(8, on="n001", started_at=0, time_limit_s=60)]
    head = make_job(8)
    d = schedule(make_snapshot(nodes, pending=[head], running=running), 7200.0)
    assert d.reasons[head.id] == "Resources(needs 1x8 a100, largest free 0; reserved, starts in 0s)"


def test_job_that_can_never_fit_gets_no_reservation():
    nodes = [make_node("n001", 8)]
    head = make_job(8)
    d = schedule(make_snapshot(nodes, pending=[head], foreign={"n001": (0,)}), 0.0)
    assert d.reasons[head.id] == "Resources(needs 1x8 a100, largest free 7)"
    assert d.stats["reservations"] == 0

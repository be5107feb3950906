"""Small traces whose right answers are known by hand, replayed through the real scheduler."""

from __future__ import annotations

import pytest

from tests.sim.builders import cluster, job, run, summary


def test_backfill_starts_the_short_job_at_t10_without_delaying_the_head():
    # one 8-GPU node; A holds 4 GPUs until t=100; B needs all 8 (blocked); C needs 2 for <= 30 s
    jobs = [job("A", 0, 100, 4), job("B", 5, 50, 8), job("C", 10, 20, 2, time_limit_s=30)]
    _, t = run(jobs, backfill=True)
    assert t["C"][0] == 10 and t["C"][1] == 30
    assert t["B"][0] == 100 and t["B"][1] == 150


def test_backfill_never_lets_a_long_job_delay_the_head():
    # same, but C's limit (200 s) reaches past B's reserved start at t=100 on GPUs B needs
    jobs = [job("A", 0, 100, 4), job("B", 5, 50, 8), job("C", 10, 20, 2, time_limit_s=200)]
    _, t = run(jobs, backfill=True)
    assert t["B"][0] == 100
    assert t["C"][0] == 150


def test_sjf_beats_fifo_on_average_jct():
    one_gpu = cluster(nodes=1, gpus=1, groups=1)
    jobs = [job("A", 0, 100), job("B", 1, 100), job("C", 2, 10)]
    fifo = summary(jobs, one_gpu, policy="fifo")
    sjf = summary(jobs, one_gpu, policy="sjf")
    assert fifo["avg_jct_s"] == pytest.approx((100 + 199 + 208) / 3)  # A, B, C in order
    assert sjf["avg_jct_s"] == pytest.approx((100 + 108 + 209) / 3)  # A, then C (short), then B
    assert fifo["max_queue_s"] == 198 and sjf["max_queue_s"] == 109


def test_a_gang_waits_for_whole_nodes_while_small_work_backfills():
    two_nodes = cluster(nodes=2, gpus=8)
    jobs = [job("A", 0, 100, 1), job("G", 1, 50, 16), job("S", 2, 10, 1)]
    s, t = run(jobs, two_nodes, backfill=True)
    assert t["G"][:2] == (100, 150)  # 16 GPUs = 2 whole nodes: only once A is gone
    assert t["S"][:2] == (2, 12)  # ends before G's reservation: backfilled
    g = s.jobs[[tj.id for tj in s.trace].index("G")]
    assert sorted(len(a.gpus) for a in g.allocation) == [8, 8]
    assert len({a.node for a in g.allocation}) == 2


@pytest.mark.parametrize("restart, low_end", [("resume", 120), ("scratch", 130)])
def test_priority_preempts_and_the_victim_resumes_or_restarts(restart, low_end):
    jobs = [job("L", 0, 100, 8), job("H", 10, 20, 8, priority=100)]
    s, t = run(jobs, policy="priority", preemption=True, restart=restart)
    assert t["H"][:2] == (10, 30)
    assert t["L"][0] == 0 and t["L"][1] == low_end  # first start stays 0
    assert t["L"][2] == "SUCCEEDED"
    assert s.rec.preemptions == 1


def test_fairshare_lets_the_light_tenant_go_next():
    one_gpu = cluster(nodes=1, gpus=1, groups=1)
    jobs = [job("x1", 0, 100, tenant="x"), job("x2", 0, 100, tenant="x"), job("x3", 0, 100, tenant="x"),
            job("y1", 1, 100, tenant="y")]
    _, fifo = run(jobs, one_gpu, policy="fifo")
    _, fair = run(jobs, one_gpu, policy="fairshare")
    assert fifo["y1"][0] == 300
    assert fair["y1"][0] == 100  # x already used 100 GPU-seconds, y none


def test_a_run_past_its_time_limit_times_out():
    jobs = [job("long", 0, 100, 1, time_limit_s=50), job("ok", 0, 10, 1)]
    s, t = run(jobs)
    assert t["long"][1:] == (50, "TIMEOUT")
    assert t["ok"][1:] == (10, "SUCCEEDED")
    out = summary(jobs)
    assert out["timeouts"] == 1 and out["succeeded"] == 1


def test_jobs_no_node_can_hold_are_rejected_like_the_api_would():
    jobs = [job("huge", 0, 10, 16, nodes=1), job("h100", 0, 10, 1, gpu_model="h100"), job("ok", 0, 10, 1)]
    out = summary(jobs)
    assert out["rejected"] == 2 and out["jobs"] == 1 and out["unfinished"] == 0


def test_quota_reclaim_gives_the_gpus_to_the_reclaimer():
    # once a ping-pong: the reclaimed borrower, of a higher priority class, was placed again first
    # on the GPUs freed for the reclaimer (the preemption wasted, the guarantee not met)
    from gpufleet.domain import Tenant
    from gpufleet.sim import Cluster

    base = cluster(nodes=1, gpus=4, groups=1)
    cl = Cluster(base.nodes, {"a": Tenant("a", {"a100": 2}), "b": Tenant("b", {"a100": 2})})
    # X (tenant a, class 1) borrows b's 2 GPUs; Y (tenant b, within quota) reclaims them at t=10
    jobs = [job("X", 0, 1000, 4, tenant="a", priority=100), job("Y", 10, 100, 2, tenant="b")]
    s, t = run(jobs, cl, policy="fifo", backfill=True)
    assert t["Y"][0] == 10
    assert s.rec.preemptions == 1


@pytest.mark.parametrize("starvation_s, long_start", [(0, 1000), (50, 60)])
def test_sjf_starves_a_long_job_unless_the_starvation_guard_promotes_it(starvation_s, long_start):
    # one GPU; shorter jobs keep arriving (10 s of work every 2 s); L (100 s) arrives at t=1.
    # SJF alone runs every short job first; with the guard L goes first once it has waited > 50 s
    # (t=51), i.e. when the GPU frees at t=60.
    one_gpu = cluster(nodes=1, gpus=1, groups=1)
    jobs = [job(f"S{k}", 2 * k, 10) for k in range(100)] + [job("L", 1, 100)]
    _, t = run(jobs, one_gpu, policy="sjf", backfill=True, starvation_s=starvation_s)
    assert t["L"][0] == long_start


@pytest.mark.parametrize("policy, short_start, long_end", [("fifo", 5000, 5000), ("las", 4000, 5010)])
def test_las_lets_a_short_job_preempt_one_past_the_attained_service_threshold(policy, short_start, long_end):
    # one GPU; L needs 5000 s and passes 1 GPU-hour of service at t=3600; S (10 s) arrives at t=4000.
    # las: S preempts L at once, L resumes at 4010 with its progress; fifo: S waits for L.
    one_gpu = cluster(nodes=1, gpus=1, groups=1)
    jobs = [job("L", 0, 5000), job("S", 4000, 10)]
    s, t = run(jobs, one_gpu, policy=policy, preemption=True, las_threshold_gpu_s=3600.0)
    assert t["S"][0] == short_start
    assert t["L"][1] == long_end and t["L"][2] == "SUCCEEDED"
    assert s.rec.preemptions == (1 if policy == "las" else 0)

"""Failure replays: node faults, checkpoints, restart costs, hot spares, and the goodput books."""

from __future__ import annotations

import math
import random

import pytest

from gpufleet.domain import Gpu, Node, ValidationError
from gpufleet.scheduler import SchedulerConfig
from gpufleet.sim import Cluster, Trace, replay, with_trace_tenants
from gpufleet.sim.engine import Simulation, SimOptions
from gpufleet.sim.failures import (Dist, daly_bound, daly_efficiency, make_failure_model, progress_s,
                                   run_wall_s, young_daly_interval)
from tests.sim.builders import cluster, job

H = 3600.0
SCHEDULE_KEYS = ("jobs", "succeeded", "timeouts", "failed", "unfinished", "makespan_s", "avg_jct_s",
                 "p99_jct_s", "avg_queue_s", "max_queue_s", "gpu_utilization", "avg_fragmentation",
                 "preemptions", "per_tenant", "cycles")


def random_trace(seed: int, n: int = 120) -> Trace:
    rnd = random.Random(seed)
    jobs, t = [], 0.0
    for k in range(n):
        t += rnd.expovariate(1 / 300)
        gpus = rnd.choice([1, 1, 2, 4, 8, 16])
        dur = rnd.uniform(60, 4 * H)
        jobs.append(job(str(k), t, dur, gpus, tenant=rnd.choice("abc"), priority=rnd.choice([0, 0, 100]),
                        time_limit_s=int(dur * rnd.choice([1, 2, 3])) + 1))
    return Trace(jobs)


def run(trace: Trace, cl: Cluster, failures=None, **config):
    config.setdefault("backfill", True)
    cl = with_trace_tenants(cl, trace.tenants)
    sim = Simulation(trace, cl, SimOptions(SchedulerConfig(**config), failures=failures))
    return sim, sim.run()


def model(**kw):
    data = kw.pop("data", {})
    return make_failure_model(data, **kw)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_zero_failure_rate_is_todays_replay_with_goodput_one(seed):
    trace, cl = random_trace(seed), cluster(nodes=4, racks=2)
    _, base = run(trace, cl)
    _, zero = run(trace, cl, model(rate=0.0, checkpoint_interval="30m", restart_cost="5m"))
    assert zero.first_start == base.first_start and zero.end == base.end and zero.state == base.state
    assert zero.preemptions == base.preemptions > 0  # preemptions still keep their progress
    t0 = with_trace_tenants(cl, trace.tenants)
    a = replay(trace, t0, SchedulerConfig(backfill=True)).summary
    b = replay(trace, t0, SchedulerConfig(backfill=True), failures=model(rate=0.0)).summary
    assert {k: a[k] for k in SCHEDULE_KEYS} == {k: b[k] for k in SCHEDULE_KEYS}
    for s in (a, b):
        assert s["goodput"] == pytest.approx(1.0) and s["lost_gpu_hours"] == 0 and s["restarts"] == 0
        assert s["time_to_restart_p50_s"] is None


def one_gang(spare: bool):
    """Two-node gang (16 GPUs, 10 h of work; checkpoint every 1 h taking 60 s, restart 300 s);
    n01 fails at 3.5 h and takes 2 h to repair."""
    cl = cluster(nodes=3 if spare else 2)
    fm = model(rate=0.0, repair_time="2h", checkpoint_interval="1h", checkpoint_cost="60s",
               restart_cost="300s", spares=1 if spare else 0, data={"inject": [{"node": "n01", "at": "210m"}]})
    return run(Trace([job("a", 0, 10 * H, 16, time_limit_s=10 ** 7)]), cl, fm)


def test_one_fault_loses_exactly_the_work_since_the_last_checkpoint():
    sim, rec = one_gang(spare=False)
    # attempt 1: 0 .. 12600 s; 3 segments of 3600 + 60 s are saved (10800 s), 1620 s of work since
    # the third checkpoint are lost, 3 x 60 s went to checkpoints
    assert rec.restarts == 1 and rec.node_faults == 1 and rec.spare_replacements == 0
    assert rec.lost_gpu_s == pytest.approx(16 * 1620)
    # no spare: it waits for n01 (back at 19800 s), pays 300 s, then 7 h of work and 6 checkpoints
    assert rec.first_start[0] == 0 and rec.end[0] == pytest.approx(19800 + 300 + 7 * H + 6 * 60)
    assert rec.time_to_restart == [pytest.approx(19800 - 12600 + 300)]
    assert rec.restart_gpu_s == pytest.approx(16 * 300)
    assert rec.checkpoint_gpu_s == pytest.approx(16 * (3 * 60 + 6 * 60))
    assert rec.useful_gpu_s == pytest.approx(16 * 10 * H)
    assert rec.alloc_gpu_s == pytest.approx(16 * (12600 + 300 + 7 * H + 360))
    assert sim.jobs[0].restarts == 1 and sim.jobs[0].attempt == 2


def test_a_hot_spare_restarts_the_gang_at_once_on_the_healthy_node_plus_the_spare():
    sim, rec = one_gang(spare=True)
    assert rec.spare_replacements == 1 and rec.lost_gpu_s == pytest.approx(16 * 1620)
    assert rec.end[0] == pytest.approx(12600 + 300 + 7 * H + 6 * 60)
    assert rec.time_to_restart == [pytest.approx(300)]
    assert sorted(a.node for a in sim.jobs[0].allocation) == ["n02", "n03"]
    # n01 came back as the new spare, the scheduler never saw it
    assert [sim.nodes[i].name for i in sim.spares[""]] == ["n01"] and sim.nodes[0].state.value == "drain"


def test_without_checkpoints_a_fault_loses_the_whole_attempt():
    cl = cluster(nodes=2)
    fm = model(rate=0.0, repair_time="1h", data={"inject": [{"node": "n02", "at": "2h"}]})
    sim, rec = run(Trace([job("a", 0, 5 * H, 8), job("b", 0, 5 * H, 8, time_limit_s=10 ** 6)]), cl, fm)
    # a on n01 is untouched; b on n02 loses 2 h and restarts on n01 at 5 h (n02 is back at 3 h: earlier)
    assert rec.lost_gpu_s == pytest.approx(8 * 2 * H)
    assert rec.end[1] == pytest.approx(3 * H + 5 * H) and rec.end[0] == pytest.approx(5 * H)


@pytest.mark.parametrize("seed", range(4))
def test_the_books_balance_under_random_faults(seed):
    trace, cl = random_trace(seed, n=80), cluster(nodes=6, racks=3)
    fm = model(rate=2e-2, data={"repair": {"distribution": "lognormal", "median": "1h", "sigma": 1.0},
                                "interarrival": {"distribution": "weibull", "shape": 0.7}},
               checkpoint_interval="20m", checkpoint_cost="30s", restart_cost="2m",
               spares=seed % 2, seed=seed)
    sim, rec = run(trace, cl, fm)
    assert rec.node_faults > 5 and rec.restarts > 0
    assert rec.alloc_gpu_s == pytest.approx(rec.useful_gpu_s + rec.lost_gpu_s + rec.restart_gpu_s
                                            + rec.checkpoint_gpu_s)
    ok = [i for i, s in enumerate(rec.state) if s == "SUCCEEDED"]
    useful_of_finished = sum(sim.trace[i].duration_s * sim.trace[i].gpus for i in ok)
    assert rec.useful_gpu_s >= useful_of_finished - 1e-6 * useful_of_finished
    assert rec.unfinished == 0 and all(s in ("SUCCEEDED", "TIMEOUT") for s in rec.state)
    assert len(rec.time_to_restart) <= rec.restarts


def test_same_seed_same_replay_other_seed_other_faults():
    trace, cl = random_trace(5, n=60), cluster(nodes=4, racks=2)

    def go(seed):
        fm = model(rate=3e-3, repair_time="1h", checkpoint_interval="30m", restart_cost="1m", seed=seed)
        s = replay(trace, with_trace_tenants(cl, trace.tenants), SchedulerConfig(), failures=fm).summary
        return {k: v for k, v in s.items() if k not in ("wall_s", "scheduler_s")}

    assert go(7) == go(7)
    assert go(7) != go(8)


def test_goodput_of_one_big_job_meets_daly_under_exponential_faults():
    # 64 nodes x 8 GPUs, one 60-node gang for 300 h of work; job MTBF 1 h, C = 60 s, R = 120 s
    nodes = [Node(f"n{k:03d}", labels={"rack": f"r{k // 16}"},
                  gpus=tuple(Gpu(i, "h100", f"G{k}-{i}", 81920, 0) for i in range(8))) for k in range(64)]
    rate = 1 / (480 * 1.0)  # per GPU-hour: 480 GPUs -> one fault an hour on the job
    mtbf = H
    tau = young_daly_interval(60, mtbf)
    fm = model(rate=rate, repair_time="4h", checkpoint_interval=f"{round(tau)}s", checkpoint_cost="60s",
               restart_cost="120s", spares=1, seed=11)
    sim, rec = run(Trace([job("big", 0, 300 * H, 480, time_limit_s=10 ** 8)]), Cluster(nodes, {}), fm)
    good = rec.useful_gpu_s / rec.alloc_gpu_s
    want = daly_efficiency(round(tau), 60, 120, mtbf)
    assert rec.restarts > 250
    assert good == pytest.approx(want, abs=0.02)
    assert daly_bound(60, 120, mtbf)[1] >= want


def test_checkpoint_arithmetic():
    assert run_wall_s(3 * H, H, 60, 300) == 300 + 3 * H + 2 * 60  # no checkpoint after the last piece
    assert run_wall_s(100, 0, 60, 0) == 100
    assert progress_s(299, H, 60, 300, saved_only=False) == 0  # still restarting
    assert progress_s(300 + H + 30, H, 60, 300, saved_only=True) == 0  # the first checkpoint is not done
    assert progress_s(300 + H + 60, H, 60, 300, saved_only=True) == H
    assert progress_s(300 + H + 90, H, 60, 300, saved_only=False) == H + 30
    assert young_daly_interval(30, 11000) == pytest.approx(math.sqrt(2 * 30 * 11000))
    best, eff = daly_bound(30, 300, 11000)
    assert eff >= daly_efficiency(young_daly_interval(30, 11000), 30, 300, 11000) - 1e-12
    assert 0.5 * young_daly_interval(30, 11000) < best < 1.5 * young_daly_interval(30, 11000)


@pytest.mark.parametrize("dist", [Dist("exponential", mean_s=100.0), Dist("weibull", mean_s=100.0, shape=0.7),
                                  Dist("lognormal", median_s=100.0, sigma=0.5), Dist("fixed", mean_s=100.0)])
def test_distributions_have_their_mean(dist):
    rng = random.Random(1)
    xs = [dist.sample(rng) for _ in range(20000)]
    assert sum(xs) / len(xs) == pytest.approx(dist.mean, rel=0.05)


@pytest.mark.parametrize("data, flags, field", [
    ({}, {"rate": -1}, "failure_rate"),
    ({"rate_per_gpu_hour": "often"}, {}, "failures.rate_per_gpu_hour"),
    ({"repair": {"distribution": "gamma", "mean": "1h"}}, {"rate": 1e-5}, "failures.repair.distribution"),
    ({"repair": {"distribution": "lognormal"}}, {"rate": 1e-5}, "failures.repair.median"),
    ({"interarrival": {"distribution": "weibull", "shape": 0}}, {"rate": 1e-5}, "failures.interarrival.shape"),
    ({"spares": {"per_domain": -2}}, {"rate": 1e-5}, "failures.spares.per_domain"),
    ({}, {"rate": 1e-5, "spares": -1}, "spares"),
    ({}, {"rate": 1e-5, "restart_cost": "soon"}, "restart_cost"),
    ({"inject": [{"at": "1h"}]}, {}, "failures.inject[0]"),
    ({"mtbf": "3h"}, {}, "failures.mtbf"),
])
def test_bad_models_name_the_field(data, flags, field):
    with pytest.raises(ValidationError) as e:
        make_failure_model(data, **flags)
    assert e.value.field == field


def test_a_spare_lent_to_another_domain_is_given_back_by_the_next_repair():
    cl = cluster(nodes=6, racks=3)  # r01: n01-n03, r02: n04-n06; spares n03 and n06
    fm = model(rate=0.0, repair_time="3h", spares=1,
               data={"inject": [{"node": "n01", "at": "1h"}, {"node": "n02", "at": "2h"}]})
    sim, rec = run(Trace([job("a", 0, 5 * H, 32, time_limit_s=10 ** 6)]), cl, fm)
    assert rec.spare_replacements == 2 and rec.time_to_restart == [0.0, 0.0]  # no restart cost here
    assert sorted(sim.nodes[i].name for v in sim.spares.values() for i in v) == ["n01", "n02"]
    assert rec.end[0] == pytest.approx(5 * H + 2 * H)  # no checkpoints: each fault cost all work so far

"""Busy GPU-seconds: the sampler reads each allocated GPU's utilisation once an interval through
the (fake) NVML, adds it to the attempt's open usage rows and to gpufleet_gpu_busy_seconds_total;
the report shows busy, idle and the top idle holders; nodes NVML does not reach stay unsampled."""

from __future__ import annotations

import pytest

from gpufleet.accounting import usage_report
from gpufleet.control.busy import BusySampler
from gpufleet.health.fake_nvml import FakeNvmlFleet
from gpufleet.observability.metrics import Metrics
from tests.accounting.conftest import end, lab, run, submit


@pytest.fixture
def sampled(store):
    lab(store)
    dgx = [n for n in store.nodes() if n.name == "dgx1"]
    fleet = FakeNvmlFleet(dgx)  # only dgx1 is reachable through NVML; the desktops are not
    metrics = Metrics()
    sampler = BusySampler(fleet, store, metrics.add_busy, interval_s=10.0)
    return store, fleet, sampler, metrics


def _running(store):
    return [j for j in store.active_jobs() if j.state.value == "RUNNING"]


def test_busy_idle_and_top_idle_holders(sampled):
    store, fleet, sampler, metrics = sampled
    fleet.set_utilization("dgx1", 0, 100)
    fleet.set_utilization("dgx1", 1, 50)  # job a: 2 GPUs, 1.5 busy
    a = submit(store, "alice", "vision", 900.0, gpus=2)
    run(store, a, 1000.0, ("dgx1", (0, 1)))
    b = submit(store, "bob", "vision", 900.0, gpus=1)
    run(store, b, 1000.0, ("dgx1", (2,)))  # job b: 1 GPU at 0 %: all idle
    c = submit(store, "carol", "speech", 900.0, gpus=2)
    run(store, c, 1000.0, ("desk-001", (0, 1)))  # not reachable: not sampled
    nodes = store.nodes()
    assert sampler.sample(_running(store), nodes, 1000.0) == 0  # nothing held yet
    assert sampler.sample(_running(store), nodes, 1005.0) == 0  # not due
    assert sampler.sample(_running(store), nodes, 1010.0) == 3  # three GPUs read, one read each
    fleet.set_utilization("dgx1", 1, 0)
    assert sampler.sample(_running(store), nodes, 1020.0) == 3
    for job in (a, b, c):
        end(store, job, 1020.0)
    r = usage_report(store.engine, 0.0, 5000.0, 5000.0, ["user"])
    g = {x.key["user"]: x for x in r.groups}
    assert g["alice"].busy_gpu_s == pytest.approx(15.0 + 10.0) and g["alice"].sampled_gpu_s == 40.0
    assert g["bob"].busy_gpu_s == 0.0 and g["bob"].sampled_gpu_s == 20.0
    assert g["carol"].busy_gpu_s is None and g["carol"].sampled_gpu_s == 0.0
    assert r.total.busy_gpu_s == pytest.approx(25.0) and r.total.gpu_s == 100.0
    assert [(h.job_id, h.idle_gpu_s) for h in r.idle] == [(b.id, 20.0), (a.id, pytest.approx(15.0))]
    value = metrics.registry.get_sample_value
    assert value("gpufleet_gpu_busy_seconds_total", {"tenant": "vision", "user": "alice", "gpu_model": "a100"}) == 25.0
    assert value("gpufleet_gpu_busy_seconds_total", {"tenant": "speech", "user": "carol", "gpu_model": "rtx4090"}) is None


def test_busy_is_cut_to_the_period_and_a_running_job_is_a_holder(sampled):
    store, fleet, sampler, _ = sampled
    fleet.set_utilization("dgx1", 0, 25)
    a = submit(store, "alice", "vision", 900.0)
    run(store, a, 1000.0, ("dgx1", (0,)))
    for t in (1010.0, 1020.0, 1030.0, 1040.0):
        sampler.sample(_running(store), store.nodes(), t)
    # still running at 1040: 40 s held, 10 s busy so far; the period [1020, 1040) holds half of it
    r = usage_report(store.engine, 1020.0, 1040.0, 1040.0, ["tenant"])
    assert r.total.gpu_s == 20.0 and r.total.busy_gpu_s == pytest.approx(5.0)
    assert [(h.job_id, h.idle_gpu_s) for h in r.idle] == [(a.id, pytest.approx(15.0))]


def test_a_tenant_sees_only_its_idle_holders(sampled):
    store, fleet, sampler, _ = sampled
    a = submit(store, "alice", "vision", 900.0)
    run(store, a, 1000.0, ("dgx1", (0,)))
    b = submit(store, "carol", "speech", 900.0)
    run(store, b, 1000.0, ("dgx1", (1,)))
    sampler.sample(_running(store), store.nodes(), 1010.0)
    end(store, a, 1010.0)
    end(store, b, 1010.0)
    r = usage_report(store.engine, 0.0, 2000.0, 2000.0, ["user"], tenant="speech")
    assert [h.user for h in r.idle] == ["carol"] and [g.key["user"] for g in r.groups] == ["carol"]


def test_the_last_interval_takes_the_busy_share_of_the_readings(sampled):
    store, fleet, sampler, metrics = sampled
    fleet.set_utilization("dgx1", 0, 80)
    a = submit(store, "alice", "vision", 900.0)
    run(store, a, 1000.0, ("dgx1", (0,)))
    for t in (1010.0, 1020.0):
        sampler.sample(_running(store), store.nodes(), t)
    end(store, a, 1025.0)  # 1020 -> 1025 has no reading of its own
    r = usage_report(store.engine, 0.0, 2000.0, 2000.0, ["user"])
    assert r.total.busy_gpu_s == pytest.approx(0.8 * 25) and r.total.sampled_gpu_s == 25.0
    assert metrics.registry.get_sample_value("gpufleet_gpu_busy_seconds_total",
                                             {"tenant": "vision", "user": "alice", "gpu_model": "a100"}) == 16.0

"""Prometheus for resilient runs (issue 17): restarts by tenant and cause, lost GPU-hours counted
from the newest checkpoint, time from the interruption to the new attempt running."""

from __future__ import annotations

import pytest

from gpufleet.domain import NodeState, transition
from gpufleet.observability.metrics import Metrics
from tests.control.conftest import make_loop_world
from tests.scheduler.builders import make_nodes

SLOW = {"GPUFLEET_FAKE_SECONDS": "10000"}


@pytest.fixture
def w(tmp_path):
    w = make_loop_world(tmp_path, make_nodes(4, "g", nodes_per_rack=2))
    w.metrics = Metrics()

    def on_cycle(report):
        w.metrics.observe_interruptions(report.interruptions)
        w.metrics.update_fleet(report.jobs, report.nodes, w.ctx.clock())
    w.loop.on_cycle = on_cycle
    return w


def value(w, name, **labels):
    return w.metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_node_fault_counts_a_restart_the_gpu_hours_since_the_checkpoint_and_the_time_to_restart(w):
    job = w.submit(gpus=8, nodes=2, env=SLOW)
    w.loop.cycle()
    tenant = w.store.get_job(job).tenant
    w.ctx.clock.advance(3600)
    w.executor.checkpoint(job)
    w.ctx.clock.advance(900)  # 15 min of work after the checkpoint
    node = w.store.get_node(w.store.get_job(job).node_names[0])
    w.store.save_node(node, transition(node, NodeState.DOWN, "power", w.ctx.clock()))
    w.loop.cycle()  # signals the gang
    assert value(w, "gpufleet_job_restarts_total", tenant=tenant, cause="node_fault") == 0
    w.ctx.clock.advance(5)
    w.loop.cycle()  # observes the end (at the signal), restarts and places it
    assert value(w, "gpufleet_job_restarts_total", tenant=tenant, cause="node_fault") == 1
    assert value(w, "gpufleet_lost_gpu_hours_total", tenant=tenant) == pytest.approx(16 * 0.25, rel=0.01)
    assert value(w, "gpufleet_restart_seconds_count", tenant=tenant) == 1
    assert value(w, "gpufleet_restart_seconds_sum", tenant=tenant) == pytest.approx(5, abs=1)


def test_a_hang_is_its_own_cause_and_without_a_checkpoint_the_whole_attempt_is_lost(w):
    job = w.submit(gpus=8, heartbeat="1m", env=SLOW)
    w.loop.cycle()
    tenant = w.store.get_job(job).tenant
    w.ctx.clock.advance(61)
    w.loop.cycle()
    w.loop.cycle()
    assert value(w, "gpufleet_job_restarts_total", tenant=tenant, cause="hang") == 1
    assert value(w, "gpufleet_job_restarts_total", tenant=tenant, cause="node_fault") == 0
    assert value(w, "gpufleet_lost_gpu_hours_total", tenant=tenant) == pytest.approx(8 * 61 / 3600, rel=0.05)


def test_a_plain_failure_or_a_cancel_is_no_restart_and_no_lost_work(w):
    failed = w.submit(env={"GPUFLEET_FAKE_SECONDS": "10", "GPUFLEET_FAKE_EXIT": "3"})
    retried = w.submit(restart="on-failure:1", env={"GPUFLEET_FAKE_SECONDS": "10", "GPUFLEET_FAKE_EXIT": "3"})
    w.loop.cycle()
    tenant = w.store.get_job(failed).tenant
    w.ctx.clock.advance(20)
    w.loop.cycle()
    assert value(w, "gpufleet_job_restarts_total", tenant=tenant, cause="failure") == 1  # only the retried one
    assert value(w, "gpufleet_lost_gpu_hours_total", tenant=tenant) == pytest.approx(10 / 3600, rel=0.05)
    assert w.store.get_job(retried).attempt == 2

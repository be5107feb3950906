"""Resilient runs (issue 17) on the fake engine and a fake clock: --restart policies, node faults
restart a gang as a new attempt on healthy nodes, hung jobs (--heartbeat) are restarted."""

from __future__ import annotations

import pytest

from gpufleet.domain import JobState, NodeState, ValidationError, transition
from gpufleet.scheduler import SchedulerConfig
from tests.control.conftest import make_loop_world
from tests.scheduler.builders import make_node, make_nodes

SLOW = {"GPUFLEET_FAKE_SECONDS": "1000"}


@pytest.fixture
def w(tmp_path):
    return make_loop_world(tmp_path, make_nodes(4, "g", nodes_per_rack=2))


def fault(w, node: str) -> None:
    n = w.store.get_node(node)
    w.store.save_node(n, transition(n, NodeState.DOWN, "power", w.ctx.clock()))


def test_a_gang_on_a_faulted_node_restarts_elsewhere_as_attempt_2(w):
    job = w.submit(gpus=8, nodes=2, env=SLOW)
    w.loop.cycle()
    first = w.store.get_job(job).node_names
    fault(w, first[0])
    w.loop.cycle()  # signals the gang
    w.loop.cycle()  # observes it stopped, restarts it on the two healthy nodes in the same cycle
    j = w.store.get_job(job)
    assert (j.state, j.attempt, j.failures) == (JobState.RUNNING, 2, 1)
    assert first[0] not in j.node_names and len(j.node_names) == 2
    assert "Restarting after a fault (1)" in w.store.attempts(job)[0].reason


def test_a_non_zero_exit_ends_the_job_unless_restart_on_failure(w):
    plain = w.submit(env={"GPUFLEET_FAKE_SECONDS": "1", "GPUFLEET_FAKE_EXIT": "3"})
    retried = w.submit(restart="on-failure:2", env={"GPUFLEET_FAKE_SECONDS": "1", "GPUFLEET_FAKE_EXIT": "3"})
    for _ in range(4):
        w.loop.cycle()
        w.ctx.clock.advance(2)
    assert w.store.get_job(plain).state is JobState.FAILED
    j = w.store.get_job(retried)
    assert (j.state, j.attempt, j.failures) == (JobState.FAILED, 3, 2)  # 1 run + 2 restarts, then it gave up
    assert "gave up after 2 restarts: --restart on-failure:2" in j.reason
    assert [a.exit_code for a in w.store.attempts(retried)] == [3, 3, 3]


def test_restart_never_fails_on_a_node_fault(w):
    job = w.submit(gpus=8, restart="never", env=SLOW)
    w.loop.cycle()
    fault(w, w.store.get_job(job).node_names[0])
    w.loop.cycle()
    w.loop.cycle()
    j = w.store.get_job(job)
    assert j.state is JobState.FAILED and "(restart never)" in j.reason


def test_a_run_the_engine_lost_is_a_fault_and_restarts(w):
    job = w.submit(gpus=8, env=SLOW)
    w.loop.cycle()
    w.executor.vanish(job)
    w.loop.cycle()
    j = w.store.get_job(job)
    assert (j.state, j.attempt) == (JobState.RUNNING, 2)


def test_a_job_whose_heartbeat_stops_is_restarted_with_the_reason(w):
    job = w.submit(gpus=8, heartbeat="1m", env=SLOW)
    w.loop.cycle()
    for _ in range(3):  # alive: beats every 30 s
        w.ctx.clock.advance(30)
        w.executor.beat(job)
        w.loop.cycle()
    assert w.store.get_job(job).attempt == 1
    w.ctx.clock.advance(61)  # hung: no beat for over a minute
    w.loop.cycle()  # decides and signals
    w.loop.cycle()  # observes the end: restarted
    j = w.store.get_job(job)
    assert (j.state, j.attempt, j.failures) == (JobState.RUNNING, 2, 1)
    reason = w.store.attempts(job)[0].reason
    assert "heartbeat stopped: no sign of life for 1:01 (--heartbeat 1:00)" in reason, reason


@pytest.mark.parametrize("spec, field", [
    ({"restart": "sometimes"}, "restart"), ({"restart": "never:2"}, "restart"),
    ({"heartbeat": "1s"}, "heartbeat"), ({"nodes": "8:6"}, "nodes"), ({"nodes": "0:2"}, "nodes"),
    ({"nodes": 2, "nodes_min": 3}, "nodes_min"),
])
def test_bad_restart_fields_are_refused_naming_the_field(w, spec, field):
    with pytest.raises(ValidationError) as e:
        w.submit(**spec)
    assert e.value.field == field
    assert w.store.active_jobs() == []


def test_an_elastic_gang_restarts_on_fewer_nodes_when_no_replacement_is_free(w):
    job = w.submit(gpus=8, nodes="3:4", env=SLOW)
    w.loop.cycle()
    first = w.store.get_job(job).node_names
    assert len(first) == 4
    fault(w, first[1])
    w.loop.cycle()
    w.loop.cycle()
    j = w.store.get_job(job)
    assert (j.state, j.attempt, j.failures) == (JobState.RUNNING, 2, 1)
    assert len(j.node_names) == 3 and first[1] not in j.node_names


def test_a_restarted_gang_goes_back_to_the_rack_it_ran_in(tmp_path):
    # r01: g1-g3, r02: g4-g7. With r01 drained the gang starts in r02; r01 comes back; a node of the
    # gang faults: both racks now have 3 free nodes and plain best fit would take r01 (name order)
    nodes = [make_node(f"g{i}", rack="r01" if i <= 3 else "r02") for i in range(1, 8)]
    w = make_loop_world(tmp_path, nodes)

    def move(name, state):
        n = w.store.get_node(name)
        w.store.save_node(n, transition(n, state, "test", w.ctx.clock()))
    for name in ("g1", "g2", "g3"):
        move(name, NodeState.DRAIN)
    job = w.submit(gpus=8, nodes=2, env=SLOW)
    w.loop.cycle()
    first = w.store.get_job(job).node_names
    assert set(first) <= {"g4", "g5", "g6", "g7"}
    for name in ("g1", "g2", "g3"):
        move(name, NodeState.UP)
    move(first[0], NodeState.DOWN)
    w.loop.cycle()
    w.loop.cycle()
    j = w.store.get_job(job)
    assert j.attempt == 2 and set(j.node_names) <= {"g4", "g5", "g6", "g7"} - {first[0]}, j.node_names


def test_a_gang_restarts_onto_the_hot_spare_within_one_cycle(tmp_path):
    # one block of 3 nodes, spares_per_block=1: g3 is the spare. A 2-node gang runs on g1, g2; a
    # one-node job waits for the spare it may not use. g1 faults: the gang restarts on g2 + g3 in
    # the cycle that sees it stopped (without spares the one-node job took g3 and the gang waited)
    w = make_loop_world(tmp_path, [make_node(f"g{i}", switch="s1") for i in (1, 2, 3)])
    w.loop.config = SchedulerConfig(spares_per_block=1)
    gang = w.submit(gpus=8, nodes=2, env=SLOW)
    other = w.submit(gpus=8, env=SLOW)
    w.loop.cycle()
    assert sorted(w.store.get_job(gang).node_names) == ["g1", "g2"]
    assert w.store.get_job(other).reason.startswith("HotSpares(needs 1x8 a100; 1 node held as hot spares")
    fault(w, "g1")
    w.loop.cycle()  # signals the gang
    w.loop.cycle()  # observes it stopped, restarts it onto the spare in the same cycle
    j = w.store.get_job(gang)
    assert (j.state, j.attempt) == (JobState.RUNNING, 2)
    assert sorted(j.node_names) == ["g2", "g3"]
    assert w.state(other) is JobState.PENDING

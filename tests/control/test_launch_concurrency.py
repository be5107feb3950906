"""Launches in parallel (control/loop.py `_launch_all`): bounded by `launch_concurrency`, only on an
engine that declares Ability.CONCURRENT_LAUNCH, each outcome recorded on its own."""

from __future__ import annotations

import threading

import pytest

from gpufleet.control.loop import ControlLoop
from gpufleet.domain import JobState
from gpufleet.executors.base import Ability, EngineUnavailable
from gpufleet.executors.fake import FakeExecutor
from tests.control.conftest import make_loop_world


class Overlap:
    """A slow engine: each launch waits until `width` launches are in it at once (a barrier), and
    records the most that ever were. Serial launches break the barrier (after `timeout` s)."""

    def __init__(self, width: int, timeout: float = 5.0):
        self.barrier = threading.Barrier(width, timeout=timeout)
        self.lock = threading.Lock()
        self.inside = self.peak = 0
        self.fail: set[int] = set()

    def __call__(self, job) -> None:
        with self.lock:
            self.inside += 1
            self.peak = max(self.peak, self.inside)
        try:
            self.barrier.wait()
            if job.id in self.fail:
                raise RuntimeError("image not found")
        finally:
            with self.lock:
                self.inside -= 1


@pytest.fixture
def world(tmp_path):
    return make_loop_world(tmp_path)


def test_launches_overlap_up_to_the_bound(world):
    world.loop.launch_concurrency = 3
    hook = world.executor.launch_hook = Overlap(3)
    jobs = [world.submit(gpus=1) for _ in range(6)]
    world.loop.cycle()
    assert hook.peak == 3  # 3 at once (the barrier passed twice), never more
    assert sorted(world.executor.launches) == jobs
    assert all(world.store.get_job(j).handle for j in jobs)


def test_a_failing_launch_fails_only_its_job(world):
    world.loop.launch_concurrency = 4
    hook = world.executor.launch_hook = Overlap(4)
    jobs = [world.submit(gpus=1) for _ in range(4)]
    hook.fail = {jobs[1]}
    world.loop.cycle()
    bad = world.store.get_job(jobs[1])
    assert bad.state is JobState.FAILED and "launch failed: image not found" in bad.reason
    for j in jobs[:1] + jobs[2:]:
        assert world.store.get_job(j).state is JobState.RUNNING and world.store.get_job(j).handle


def test_an_engine_outage_leaves_each_decision_for_the_next_cycle(world):
    jobs = [world.submit(gpus=1) for _ in range(3)]
    world.executor.launch_error = EngineUnavailable("API server restarting")
    world.loop.cycle()
    assert all(world.store.get_job(j).state is JobState.RUNNING and world.store.get_job(j).handle is None
               for j in jobs)
    world.executor.launch_error = None
    world.loop.cycle()
    assert sorted(world.executor.launches) == jobs


class SerialEngine(FakeExecutor):
    abilities = FakeExecutor.abilities - {Ability.CONCURRENT_LAUNCH}


def test_an_engine_without_concurrent_launches_gets_them_one_at_a_time(world):
    ex = SerialEngine(world.clock, world.executor.world)
    loop = ControlLoop(world.store, ex, world.clock, launch_concurrency=8)
    hook = ex.launch_hook = Overlap(1)  # a barrier of 1 always passes: it only counts
    jobs = [world.submit(gpus=1) for _ in range(4)]
    loop.cycle()
    assert hook.peak == 1 and sorted(ex.launches) == jobs


def test_launch_concurrency_1_is_serial(world):
    world.loop.launch_concurrency = 1
    hook = world.executor.launch_hook = Overlap(1)
    jobs = [world.submit(gpus=1) for _ in range(4)]
    world.loop.cycle()
    assert hook.peak == 1 and sorted(world.executor.launches) == jobs


def test_a_crash_mid_batch_relaunches_nothing_twice(world):
    """The decisions of a batch are written before any launch; a restart after some launched
    (handles not yet recorded) launches each job exactly once in all."""
    jobs = [world.submit(gpus=1) for _ in range(4)]
    world.executor.launch_error = EngineUnavailable("gone")  # decided, nothing recorded
    world.loop.cycle()
    world.executor.launch_error = None
    for j in jobs[:2]:  # these reached the engine before the "crash"
        world.executor.launch(world.store.get_job(j))
    restarted = ControlLoop(world.store, world.executor.restarted(), world.clock, launch_concurrency=4)
    restarted.cycle()
    restarted.cycle()
    assert sorted(world.executor.launches) == jobs
    assert all(world.store.get_job(j).handle for j in jobs)
    restarted.close()

"""The executor contract on FakeExecutor (on a fake clock), and what only the fake does."""

from __future__ import annotations

import pytest

from gpufleet.domain import Allocation
from gpufleet.executors.base import Phase
from gpufleet.executors.fake import FakeClock, FakeExecutor
from tests.executors.contract import ExecutorContract, build_job


class TestFakeContract(ExecutorContract):
    RUNS_COMMANDS = False
    SLACK_S = 5.0

    @pytest.fixture
    def executor(self):
        self.fake_clock = FakeClock()
        ex = FakeExecutor(self.fake_clock)
        yield ex
        ex.close()

    @pytest.fixture
    def nodes(self):
        return [Allocation("n1", (0, 1)), Allocation("n2", (3,))]

    def reopen(self, executor):
        return executor.restarted()

    def clock(self) -> float:
        return self.fake_clock()

    def sleep(self, seconds: float) -> None:
        self.fake_clock.advance(seconds)

    def times_started(self, executor, job):
        return executor.launches.count(job.id)


NODES = [Allocation("n1", (0,)), Allocation("n2", (1,))]


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def fake(clock):
    return FakeExecutor(clock)


def phase(ex, job):
    return [(o.phase, o.exit_code) for o in ex.poll([job])]


def test_job_without_seconds_runs_until_finished(fake, clock):
    job = build_job(1, NODES[:1], seconds=None)
    job.handle = fake.launch(job)
    clock.advance(10_000)
    assert phase(fake, job) == [(Phase.RUNNING, None)]
    fake.finish(job.id, 7)
    assert phase(fake, job) == [(Phase.FAILED, 7)]
    fake.finish(job.id, 0)  # an ended job stays ended
    assert phase(fake, job) == [(Phase.FAILED, 7)]


def test_seconds_and_exit_follow_the_clock(fake, clock):
    job = build_job(2, NODES, seconds=30, exit_code=0, output="hi")
    job.handle = fake.launch(job)
    clock.advance(29.9)
    assert phase(fake, job) == [(Phase.RUNNING, None)]
    clock.advance(0.1)
    (obs,) = fake.poll([job])
    assert (obs.phase, obs.exit_code, obs.at) == (Phase.SUCCEEDED, 0, 1_000_030.0)
    assert fake.logs(job, 0, rank=1).data == b"hi\n"


def test_time_limit_before_the_end_is_timeout(fake, clock):
    job = build_job(3, NODES[:1], seconds=100, time_limit_s=60)
    job.handle = fake.launch(job)
    clock.advance(61)
    (obs,) = fake.poll([job])
    assert obs.phase is Phase.TIMEOUT and obs.at == 1_000_060.0


def test_vanish_is_lost_and_unknown_launched_job_is_lost(fake):
    job = build_job(4, NODES[:1], seconds=None)
    job.handle = fake.launch(job)
    fake.vanish(job.id)
    assert phase(fake, job) == [(Phase.LOST, None)]
    stranger = build_job(5, NODES[:1])
    assert fake.poll([stranger]) == []  # never launched, no handle: not the engine's business
    stranger.handle = "fake-5"
    assert phase(fake, stranger) == [(Phase.LOST, None)]


def test_launch_error_and_launch_record(fake):
    job = build_job(6, NODES[:1], seconds=None)
    fake.launch_error = RuntimeError("no capacity")
    with pytest.raises(RuntimeError, match="no capacity"):
        fake.launch(job)
    assert fake.launches == []
    fake.launch_error = None
    fake.launch(job)
    fake.restarted().launch(job)
    assert fake.launches == [6]


def test_cancel_records_and_ends(fake):
    job = build_job(7, NODES[:1], seconds=None)
    job.handle = fake.launch(job)
    fake.cancel(job)
    assert fake.world.cancels == [7]
    assert phase(fake, job)[0][0] is Phase.CANCELLED

"""Which run `logs(attempt=None)` means, and a job seen as one of its earlier runs (executors/base.py)."""

from __future__ import annotations

import pytest

from gpufleet.domain import Allocation, Job, JobSpec, JobState, ValidationError
from gpufleet.executors.base import attempt_view, latest_attempt

ALLOC = (Allocation("n1", (0,)),)


def job(state: JobState, restarts: int, started: float | None) -> Job:
    return Job(5, JobSpec(command=("true",)), state=state, restarts=restarts, started_at=started,
               allocation=ALLOC if state is JobState.RUNNING else (), handle="h" if started else None)


@pytest.mark.parametrize("state,restarts,started,latest", [
    (JobState.PENDING, 0, None, 1),  # never ran: its first run is the one to come
    (JobState.RUNNING, 0, 1.0, 1),
    (JobState.PENDING, 1, None, 1),  # requeued, waiting: the run before
    (JobState.RUNNING, 1, 5.0, 2),
    (JobState.SUCCEEDED, 2, 9.0, 3),
    (JobState.CANCELLED, 1, None, 1),  # cancelled while waiting after a requeue
])
def test_latest_attempt(state, restarts, started, latest):
    assert latest_attempt(job(state, restarts, started)) == latest


def test_an_earlier_attempt_is_over_and_has_its_own_restart_count():
    running = job(JobState.RUNNING, 2, 5.0)
    same, over = attempt_view(running)
    assert same is running and not over
    first, over = attempt_view(running, 1)
    assert over and (first.restarts, first.attempt, first.allocation, first.handle) == (0, 1, (), None)
    assert running.restarts == 2  # the job itself is left alone
    for bad in (0, 4):
        with pytest.raises(ValidationError, match="attempt"):
            attempt_view(running, bad)
    assert attempt_view(job(JobState.PENDING, 1, None))[1] is True  # requeued: its last run ended

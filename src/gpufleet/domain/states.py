"""States and THE transition tables. Nobody assigns `.state` directly: use `transition`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class JobState(str, Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    LOST = "LOST"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_JOB_STATES

    def __str__(self) -> str:
        return self.value


TERMINAL_JOB_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.TIMEOUT, JobState.LOST}
)
ACTIVE_JOB_STATES = frozenset({JobState.PENDING, JobState.RUNNING})


class NodeState(str, Enum):
    UP = "up"
    DRAIN = "drain"
    DOWN = "down"

    def __str__(self) -> str:
        return self.value


J = JobState
JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    # PENDING -> FAILED: can never run (e.g. its booking expired); -> CANCELLED: user cancel.
    J.PENDING: frozenset({J.RUNNING, J.CANCELLED, J.FAILED}),
    # RUNNING -> PENDING: preempted or its node went down, and the job may be requeued.
    J.RUNNING: frozenset({J.SUCCEEDED, J.FAILED, J.CANCELLED, J.TIMEOUT, J.LOST, J.PENDING}),
    J.SUCCEEDED: frozenset(),
    J.FAILED: frozenset(),
    J.CANCELLED: frozenset(),
    J.TIMEOUT: frozenset(),
    J.LOST: frozenset(),
}

N = NodeState
NODE_TRANSITIONS: dict[NodeState, frozenset[NodeState]] = {
    N.UP: frozenset({N.DRAIN, N.DOWN}),
    N.DRAIN: frozenset({N.UP, N.DOWN}),
    N.DOWN: frozenset({N.UP, N.DRAIN}),
}


@dataclass(frozen=True, slots=True)
class StateChange:
    """One edge walked: what the event history records."""

    kind: str  # "job" | "node"
    key: str  # job id or node name
    old: str
    new: str
    reason: str
    at: float
    attempt: int | None = None  # job changes into or out of RUNNING: the number of that run



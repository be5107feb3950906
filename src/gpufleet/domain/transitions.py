"""The one function through which every state changes."""

from __future__ import annotations

from gpufleet.domain.errors import IllegalTransition
from gpufleet.domain.job import Job
from gpufleet.domain.node import Node
from gpufleet.domain.states import JOB_TRANSITIONS, NODE_TRANSITIONS, JobState, NodeState, StateChange


def transition(obj: Job | Node, new_state: JobState | NodeState, reason: str, now: float) -> StateChange:
    """Walk one edge of the table: check it, stamp times, return the event to record."""
    if isinstance(obj, Job):
        return _job(obj, JobState(new_state), reason, now)
    return _node(obj, NodeState(new_state), reason, now)


def _job(job: Job, new: JobState, reason: str, now: float) -> StateChange:
    old = job.state
    if new not in JOB_TRANSITIONS[old]:
        raise IllegalTransition("job", old.value, new.value)
    attempt = job.attempt if JobState.RUNNING in (old, new) else None  # the run it starts or ends
    if new is JobState.RUNNING:
        job.started_at = now
        job.ended_at = None
        job.exit_code = None
    elif new is JobState.PENDING:  # requeued: give the GPUs back, remember what it used
        if job.started_at is not None:
            job.attained_gpu_s += job.gpus_held * max(0.0, now - job.started_at)
        job.restarts += 1
        job.allocation = ()
        job.handle = None
        job.started_at = None
    else:  # terminal
        job.ended_at = now
    job.state = new
    job.reason = reason
    return StateChange("job", str(job.id), old.value, new.value, reason, now, attempt)


def _node(node: Node, new: NodeState, reason: str, now: float) -> StateChange:
    old = node.state
    if new is old:
        node.reason = reason or node.reason
        return StateChange("node", node.name, old.value, new.value, reason, now)
    if new not in NODE_TRANSITIONS[old]:
        raise IllegalTransition("node", old.value, new.value)
    node.state = new
    node.reason = "" if new is NodeState.UP else reason
    node.updated_at = now
    return StateChange("node", node.name, old.value, new.value, reason, now)

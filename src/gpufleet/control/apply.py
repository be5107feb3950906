"""Turning what an engine observed into job transitions (pure: no store, no executor)."""

from __future__ import annotations

from gpufleet.domain import Job, JobState, StateChange, transition
from gpufleet.executors.base import Observation, Phase

_END_STATE = {
    Phase.SUCCEEDED: JobState.SUCCEEDED,
    Phase.FAILED: JobState.FAILED,
    Phase.TIMEOUT: JobState.TIMEOUT,
    Phase.CANCELLED: JobState.CANCELLED,
    Phase.LOST: JobState.LOST,
}


def apply_observation(job: Job, obs: Observation, now: float) -> StateChange | None:
    """Apply one observation to a RUNNING job. Returns the state change, or None (no change).

    A job with a pending action (decided by us before we signalled the engine) ends the way the
    decision says: "cancel" -> CANCELLED; "preempt"/"requeue" -> back to PENDING (or FAILED when
    the job asked for no requeue), whatever exit code the killed process had.
    """
    if obs.handle and obs.handle != job.handle:
        job.handle = obs.handle
    if not obs.phase.ended:
        return None
    at = obs.at or now
    job.exit_code = obs.exit_code
    action = job.extra.get("pending_action")
    action_reason = str(job.extra.get("action_reason") or "")
    if action == "cancel":
        return transition(job, JobState.CANCELLED, action_reason or "cancelled", at)
    if action in ("preempt", "requeue") or obs.phase is Phase.PREEMPTED:
        why = action_reason or obs.reason or "preempted by the engine"
        if job.spec.requeue:
            job.exit_code = None
            return transition(job, JobState.PENDING, f"Requeued: {why}", at)
        return transition(job, JobState.FAILED, f"{why} (no requeue)", at)
    return transition(job, _END_STATE[obs.phase], _end_reason(obs), at)


def _end_reason(obs: Observation) -> str:
    if obs.reason:
        return obs.reason
    if obs.phase is Phase.SUCCEEDED:
        return "exited with 0"
    if obs.phase is Phase.FAILED:
        return f"exited with {obs.exit_code}"
    if obs.phase is Phase.TIMEOUT:
        return "time limit reached"
    return obs.phase.value

"""Turning what an engine observed into job transitions (pure: no store, no executor)."""

from __future__ import annotations

from gpufleet.domain import Job, JobState, StateChange, transition
from gpufleet.domain.training import restart_policy
from gpufleet.executors.base import Observation, Phase

HEARTBEAT_STOPPED = "heartbeat stopped"  # how control/loop.py's hang decision begins its reason

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
    decision says, whatever exit code the killed process had: "cancel" -> CANCELLED; "preempt" ->
    back to PENDING (or FAILED when the job asked for no requeue); "requeue" (a fault: its node went
    down or failed its health checks, or its heartbeat stopped) -> restarted as a new attempt when
    its restart policy allows (domain/training.py), else FAILED. A run the engine lost is a fault
    too; a non-zero exit restarts only under `--restart on-failure`.
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
    if action == "preempt" or obs.phase is Phase.PREEMPTED:
        why = action_reason or obs.reason or "preempted by the engine"
        if job.spec.requeue:
            job.exit_code = None
            return transition(job, JobState.PENDING, f"Requeued: {why}", at)
        return transition(job, JobState.FAILED, f"{why} (no requeue)", at)
    if action == "requeue":
        job.exit_code = None
        return restart_or_end(job, action_reason or "node fault", at, fault=True, end=JobState.FAILED)
    if obs.phase is Phase.LOST:
        return restart_or_end(job, _end_reason(obs), at, fault=True, end=JobState.LOST)
    if obs.phase is Phase.FAILED:
        return restart_or_end(job, _end_reason(obs), at, fault=False, end=JobState.FAILED)
    return transition(job, _END_STATE[obs.phase], _end_reason(obs), at)


def restart_or_end(job: Job, why: str, at: float, fault: bool, end: JobState) -> StateChange:
    """A run ended by a fault (lost to the infrastructure) or a failure (non-zero exit): a new
    attempt when the job's restart policy allows it (counted in `job.failures`), else `end`."""
    policy = restart_policy(job.spec.restart, job.spec.requeue)
    if policy.allows(fault, job.failures):
        job.failures += 1
        limit = f" of {policy.max}" if policy.max is not None else ""
        kind = "fault" if fault else "failure"
        return transition(job, JobState.PENDING, f"Restarting after a {kind} ({job.failures}{limit}): {why}", at)
    if not fault and policy.mode != "on-failure":
        return transition(job, end, why, at)
    if policy.mode == "never":
        return transition(job, end, f"{why} (no requeue)" if not job.spec.requeue and not job.spec.restart
                          else f"{why} (restart never)", at)
    return transition(job, end, f"{why} (gave up after {job.failures} restarts: --restart {policy})", at)


def interruption_cause(job: Job, obs: Observation) -> str | None:
    """Why an ending run lost its work, read before the observation is applied (the metrics'
    `cause`): "hang" (its --heartbeat stopped), "node_fault" (a node went down or failed its health
    checks), "lost" (the engine lost the run), "failure" (a non-zero exit); None when it succeeded,
    timed out, or was cancelled or preempted on purpose."""
    if not obs.phase.ended:
        return None
    action = job.extra.get("pending_action")
    if action == "requeue":
        return "hang" if str(job.extra.get("action_reason") or "").startswith(HEARTBEAT_STOPPED) else "node_fault"
    if action in ("cancel", "preempt") or obs.phase is Phase.PREEMPTED:
        return None
    return {Phase.LOST: "lost", Phase.FAILED: "failure"}.get(obs.phase)


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

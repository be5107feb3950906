"""From the cached objects of one job attempt to an `Observation` (pure functions, no I/O)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from gpufleet.executors.base import Observation, Phase
from gpufleet.executors.kubernetes import names as n

Obj = dict[str, Any]
# pod failure reasons that mean "the cluster took the pod away", not "the program failed"
# container waiting reasons that never resolve by themselves
FATAL_WAITING_REASONS = frozenset({"InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError"})
_PREEMPTED_REASONS = {"Evicted", "Preempting", "NodeLost", "Shutdown", "Terminated", "NodeShutdown"}


def ts(text: str | None) -> float | None:
    if not text:
        return None
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp()


def _status(obj: Obj) -> Obj:
    return obj.get("status") or {}


def _terminated(pod: Obj) -> Obj | None:
    """The main container's end, else a failed init container's (the checkpoint folder refused)."""
    for cs in _status(pod).get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated")
        if term:
            return term
    for cs in _status(pod).get("initContainerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated")
        if term and term.get("exitCode"):
            return {**term, "reason": f"init container {cs.get('name')}: {term.get('reason', 'Error')}"}
    return None


def _rank(pod: Obj) -> int:
    try:
        return int((pod["metadata"].get("labels") or {}).get(n.RANK, "0"))
    except ValueError:
        return 0


def pending_reason(pod: Obj) -> str:
    """Why a pod is not running yet: the scheduler's message or a container's waiting reason."""
    for cond in _status(pod).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return f"{cond.get('reason', 'Unschedulable')}: {cond.get('message', '')}".strip()
    for cs in _status(pod).get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting:
            return f"{waiting.get('reason', 'Waiting')}: {waiting.get('message', '')}".strip(": ")
    if not (pod.get("spec") or {}).get("nodeName"):
        return "waiting for kube-scheduler"
    return "pod pending on its node"


def pod_outcome(job_id: int, pod: Obj, handle: str) -> Observation | None:
    """The observation a single ended pod implies, or None while it is still active."""
    st = _status(pod)
    phase = st.get("phase")
    term = _terminated(pod)
    at = ts(term.get("finishedAt")) if term else None
    if phase == "Succeeded":
        return Observation(job_id, Phase.SUCCEEDED, 0, "", handle, at)
    if phase != "Failed":
        return None
    reason, msg = st.get("reason", ""), st.get("message", "")
    code = term.get("exitCode") if term else None
    where = f"rank {_rank(pod)} ({pod['metadata']['name']} on {pod['spec'].get('nodeName', '?')})"
    if reason == "DeadlineExceeded":
        return Observation(job_id, Phase.TIMEOUT, code, f"time limit reached: {where}", handle, at)
    if reason in _PREEMPTED_REASONS:
        return Observation(job_id, Phase.PREEMPTED, code, f"{reason}: {msg} [{where}]", handle, at)
    why = term.get("reason", "Error") if term else (reason or "Failed")
    return Observation(job_id, Phase.FAILED, code, f"{why} (exit {code}) in {where}", handle, at)


def _active(pods: list[Obj], job_id: int, handle: str) -> Observation:
    running = [p for p in pods if _status(p).get("phase") == "Running"]
    if pods and len(running) == len(pods):
        at = max((ts(_status(p).get("startTime")) or 0.0) for p in pods) or None
        return Observation(job_id, Phase.RUNNING, None, "", handle, at)
    waiting = [p for p in pods if _status(p).get("phase") == "Pending"]
    reason = pending_reason(waiting[0]) if waiting else "waiting for pods"
    return Observation(job_id, Phase.STARTING, None, reason, handle)


def observe_batch_job(job_id: int, kjobs: list[Obj], pods: list[Obj], handle: str) -> Observation:
    """A single-node job (batch/v1 Job with one pod, backoffLimit 0)."""
    kjob = kjobs[0] if kjobs else None
    for cond in _status(kjob).get("conditions") or [] if kjob else []:
        if cond.get("status") != "True":
            continue
        at = ts(cond.get("lastTransitionTime"))
        if cond.get("type") == "Complete":
            return Observation(job_id, Phase.SUCCEEDED, 0, "", handle, at)
        if cond.get("type") == "Failed" and cond.get("reason") == "DeadlineExceeded":
            return Observation(job_id, Phase.TIMEOUT, None, f"time limit reached: {cond.get('message', '')}",
                               handle, at)
    ended = [o for o in (pod_outcome(job_id, p, handle) for p in pods) if o is not None]
    if ended:  # the pod's exit code is more telling than the Job's BackoffLimitExceeded
        return ended[0]
    if kjob is not None and kjob["metadata"].get("deletionTimestamp"):
        return Observation(job_id, Phase.CANCELLED, None, "Job deleted", handle)
    for cond in _status(kjob).get("conditions") or [] if kjob else []:
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            return Observation(job_id, Phase.FAILED, None, f"{cond.get('reason')}: {cond.get('message', '')}",
                               handle, ts(cond.get("lastTransitionTime")))
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    return _active(live, job_id, handle)


def observe_gang(job_id: int, ranks: int, pods: list[Obj], handle: str, settled: bool) -> Observation:
    """A multi-node gang: one bare pod per rank. Any rank failing fails the gang.

    `settled`: launch finished long enough ago that every rank pod must be visible by now."""
    pods = sorted(pods, key=_rank)
    outcomes = [pod_outcome(job_id, p, handle) for p in pods]
    stopped = [bool((p["metadata"].get("annotations") or {}).get(n.STOPPED_ANN)) for p in pods]
    bad = [o for o, s in zip(outcomes, stopped) if o is not None and o.phase is not Phase.SUCCEEDED and not s]
    if bad:
        return bad[0]
    if len(pods) == ranks and all(o is not None for o in outcomes):
        at = max((o.at or 0.0) for o in outcomes if o is not None) or None
        return Observation(job_id, Phase.SUCCEEDED, 0, "", handle, at)
    if any(p["metadata"].get("deletionTimestamp") for p in pods):
        return Observation(job_id, Phase.CANCELLED, None, "gang pods deleted", handle)
    if len(pods) < ranks:
        if settled:
            return Observation(job_id, Phase.FAILED, None,
                               f"only {len(pods)}/{ranks} rank pods left: deleted outside gpufleet", handle)
        return Observation(job_id, Phase.STARTING, None, f"{len(pods)}/{ranks} rank pods exist", handle)
    return _active([p for p, o in zip(pods, outcomes) if o is None], job_id, handle)

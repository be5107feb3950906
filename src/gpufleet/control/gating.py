"""Which pending jobs the scheduler may see this cycle: jobs waiting for a dependency and array
tasks over their group's %N limit are held back (with the reason shown in `gpufleet jobs`); a job
whose dependency can never be met is ended. Plain data in, plain data out: the control loop loads
the facts (store/groups.py) and applies the outcome; the scheduler itself does not change."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from gpufleet.domain import Job, JobState
from gpufleet.domain.group import dependency_verdict

Deps = Mapping[int, Sequence[tuple[str, int, JobState | None]]]


@dataclass(slots=True)
class Gate:
    eligible: list[Job] = field(default_factory=list)  # what the scheduler sees
    held: dict[int, str] = field(default_factory=dict)  # job id -> pending reason
    doomed: dict[int, str] = field(default_factory=dict)  # job id -> why it can never run


def gate(pending: Sequence[Job], running: Sequence[Job], deps: Deps, limits: Mapping[int, int]) -> Gate:
    """`deps`: job id -> (kind, target id, target state or None: no such job); `limits`:
    group id -> at most that many of its jobs RUNNING at once."""
    out = Gate()
    in_group: dict[int, int] = {}
    for j in running:
        gid = j.extra.get("group_id")
        if gid in limits:
            in_group[gid] = in_group.get(gid, 0) + 1
    for job in pending:  # oldest first: array tasks start in index order
        why_not, wait = _dependency(deps.get(job.id, ()))
        if why_not:
            out.doomed[job.id] = why_not
            continue
        if wait:
            out.held[job.id] = wait
            continue
        gid = job.extra.get("group_id")
        if gid in limits:
            if in_group.get(gid, 0) >= limits[gid]:
                out.held[job.id] = f"JobArrayTaskLimit: {limits[gid]} of group {gid} running (%{limits[gid]})"
                continue
            in_group[gid] = in_group.get(gid, 0) + 1  # a slot for it (the scheduler may still not place it)
        out.eligible.append(job)
    return out


def _dependency(items: Sequence[tuple[str, int, JobState | None]]) -> tuple[str, str]:
    """(why it can never be met, what it still waits for); both empty: met (or none)."""
    waiting = []
    for kind, target, state in items:
        verdict = dependency_verdict(kind, state)
        if verdict is False:
            seen = "does not exist" if state is None else f"ended {state.value}"
            return f"DependencyNeverSatisfied: job {target} {seen} ({kind}:{target})", ""
        if verdict is None:
            waiting.append(f"job {target} ({kind}:{target}, {state.value if state else '?'})")
    return "", ("Dependency: waiting for " + ", ".join(waiting)) if waiting else ""

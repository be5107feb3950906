"""Pending reasons: short, precise, user-readable; the first thing a waiting user reads.

    NodeConstraint(driver=560.35 matches 0 up nodes)      no UP node has what the job requires
    QuotaExceeded(a100: 16/16)                            the tenant's hard limit (or quota, no borrowing)
    WaitingForBooking(booking 7 starts in 41m)            its booking has not started
    Resources(needs 2x8 h100, largest free 8)             not enough free GPUs now
    Resources(needs at least 6x8 h100 (nodes 6:8), ...)   an elastic gang: fewer than its minimum fit
    BackfillBlocked(head job 123 starts in 41m)           it fits, but would delay a reserved head job
    ...; reserved, starts in 2h)                          one of the first blocked jobs: capacity reserved
    Booked(booking 7 of tenant b, 2h left)                it fits only on nodes booked by others
    HotSpares(needs 1x8 a100; 1 node held as hot ...)    it fits only on hot spares (restarts, preemptible work)
    Preempting(jobs 12,13)                                victims chosen this cycle; it starts once they exit
    WaitingForRelease(jobs 12,13 exiting)                 GPUs it needs are being freed
"""

from __future__ import annotations


def fmt_in(seconds: float) -> str:
    """41m, 2h05m, 3d4h, 30s: a relative time for reasons."""
    s = max(0, int(seconds + 0.5))
    if s < 60:
        return f"{s}s"
    m = (s + 30) // 60 if s < 3600 else s // 60
    if m < 60:
        return f"{m}m"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h}h{m:02d}m" if m else f"{h}h"
    d, h = divmod(h, 24)
    return f"{d}d{h}h" if h else f"{d}d"


def count(nodes: int, most: int = 0) -> str:
    """How many nodes a job needs: "6", or "at least 6" for an elastic gang (nodes_min < nodes)."""
    return f"at least {nodes}" if most > nodes else str(nodes)


def what(gpus: int, nodes: int, models, cpus: int = 0, mem_mb: int = 0, most: int = 0) -> str:
    model = models[0] if len(models) == 1 else "gpus" if not models else "|".join(models)
    extra = [f"{cpus} CPUs"] * bool(cpus) + [f"{mem_mb} MB"] * bool(mem_mb)
    elastic = f" (nodes {nodes}:{most})" if most > nodes else ""
    return (f"{count(nodes, most)}x{gpus} {model}{elastic}"
            + (f" with {', '.join(extra)} per node" if extra else ""))


def resources(gpus: int, nodes: int, models, largest: int, cpus: int = 0, mem_mb: int = 0,
              most: int = 0) -> str:
    free = f"largest free {largest}"
    if (cpus or mem_mb) and largest >= gpus:
        free += ", CPUs/memory short"
    return f"Resources(needs {what(gpus, nodes, models, cpus, mem_mb, most)}, {free})"


def backfill_blocked(head_job: int, starts_in: float) -> str:
    return f"BackfillBlocked(head job {head_job} starts in {fmt_in(starts_in)})"


def job_list(ids) -> str:
    ids = sorted(ids)
    shown = ",".join(str(i) for i in ids[:8])
    return shown + (f",+{len(ids) - 8}" if len(ids) > 8 else "")

"""The pure scheduler: `schedule(snapshot, now) -> Decisions`. No I/O, no clock reads.
`Scheduler()` is the same function with memory between snapshots of one cluster (the simulator)."""

from gpufleet.scheduler.core import Scheduler, schedule
from gpufleet.scheduler.types import (
    POLICIES,
    Decisions,
    Placement,
    Preemption,
    SchedulerConfig,
    Snapshot,
)

__all__ = ["POLICIES", "Decisions", "Placement", "Preemption", "Scheduler", "SchedulerConfig", "Snapshot", "schedule"]

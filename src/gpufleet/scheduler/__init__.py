"""The pure scheduler: `schedule(snapshot, now) -> Decisions`. No I/O, no clock reads."""

from gpufleet.scheduler.core import schedule
from gpufleet.scheduler.types import (
    POLICIES,
    Decisions,
    Placement,
    Preemption,
    SchedulerConfig,
    Snapshot,
)

__all__ = ["POLICIES", "Decisions", "Placement", "Preemption", "SchedulerConfig", "Snapshot", "schedule"]

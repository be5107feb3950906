"""Plain types of gpufleet. Imports nothing else of ours."""

from gpufleet.domain.errors import (
    Conflict,
    Forbidden,
    GpufleetError,
    IllegalTransition,
    NotFound,
    ValidationError,
)
from gpufleet.domain.job import Allocation, Attempt, Job, JobSpec
from gpufleet.domain.node import Gpu, Node, NodeKind, normalise_model
from gpufleet.domain.states import (
    ACTIVE_JOB_STATES,
    JOB_TRANSITIONS,
    NODE_TRANSITIONS,
    TERMINAL_JOB_STATES,
    JobState,
    NodeState,
    StateChange,
)
from gpufleet.domain.tenant import ApiToken, Booking, BookingLimits, Tenant, User, parse_booking_limits
from gpufleet.domain.transitions import transition
from gpufleet.domain.units import format_duration, parse_duration, parse_mem_mb

__all__ = [
    "ACTIVE_JOB_STATES", "JOB_TRANSITIONS", "NODE_TRANSITIONS", "TERMINAL_JOB_STATES",
    "Allocation", "ApiToken", "Attempt", "Booking", "BookingLimits", "Conflict", "Forbidden", "Gpu", "GpufleetError", "IllegalTransition",
    "Job", "JobSpec", "JobState", "Node", "NodeKind", "NodeState", "NotFound", "StateChange",
    "Tenant", "User", "ValidationError", "format_duration", "normalise_model", "parse_duration",
    "parse_booking_limits", "parse_mem_mb", "transition",
]

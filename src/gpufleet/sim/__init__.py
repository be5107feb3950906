"""The simulator: the real scheduler on a virtual clock, replaying job traces."""

from gpufleet.sim.cluster import Cluster, load_cluster, with_trace_tenants
from gpufleet.sim.engine import SimError, Simulation, SimOptions
from gpufleet.sim.importers import load_trace
from gpufleet.sim.runner import SimResult, prepare, replay
from gpufleet.sim.timelimit import TimeLimitModel, parse_time_limit_model
from gpufleet.sim.trace import Trace, TraceJob

__all__ = [
    "Cluster", "SimError", "SimOptions", "SimResult", "Simulation", "TimeLimitModel", "Trace",
    "TraceJob", "load_cluster", "load_trace", "parse_time_limit_model", "prepare", "replay",
    "with_trace_tenants",
]

"""Slurm engine: gpufleet decides, a real slurmctld runs (see docs/slurm.md)."""

from gpufleet.executors.slurm.client import SlurmError, SlurmUnavailable
from gpufleet.executors.slurm.config import SlurmConfig
from gpufleet.executors.slurm.executor import SlurmExecutor

__all__ = ["SlurmConfig", "SlurmError", "SlurmExecutor", "SlurmUnavailable"]

"""Embedded boards through a labgrid board farm (labgrid-coordinator + exporters): docs/boards.md."""

from __future__ import annotations

from pathlib import Path

from gpufleet.executors.labgrid.config import LabgridConfig, parse_config
from gpufleet.executors.labgrid.executor import LabgridExecutor

__all__ = ["LabgridConfig", "LabgridExecutor", "create", "parse_config"]


def create(options: dict, home: Path) -> LabgridExecutor:
    """The composition root's factory (gpufleet.main.build_executor / build_pools)."""
    return LabgridExecutor(parse_config(options), Path(home))

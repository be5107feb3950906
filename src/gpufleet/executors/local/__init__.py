"""The local executor: jobs run as detached, supervised child processes on this host."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpufleet.executors.local.container import ContainerConfig
from gpufleet.executors.local.executor import LaunchError, LocalExecutor

__all__ = ["LaunchError", "LocalExecutor", "create"]


def create(options: dict[str, Any], home: Path) -> LocalExecutor:
    """The composition root's factory: runs live under `home`/runs unless options say otherwise."""
    return LocalExecutor(
        run_dir=Path(options.get("run_dir") or Path(home) / "runs"),
        addresses=options.get("addresses"),
        grace_s=float(options.get("grace_s", 5.0)),
        accounts=options.get("accounts"),
        lang=options.get("lang"),
        containers=ContainerConfig.of(options.get("containers")),
    )

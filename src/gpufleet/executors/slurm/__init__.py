"""Slurm engine: gpufleet decides, a real slurmctld runs (see docs/slurm.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpufleet.executors.slurm.client import SlurmError, SlurmUnavailable
from gpufleet.executors.slurm.config import SlurmConfig
from gpufleet.executors.slurm.container import SlurmContainers
from gpufleet.executors.slurm.executor import SlurmExecutor


def create(options: dict[str, Any], home: Path) -> SlurmExecutor:
    """The composition root's factory. `options` are the `slurm:` settings (see SlurmConfig) and
    `accounts` (the gpufleet user -> Unix account mapping); job output defaults to `home`/slurm-logs (it must be on a filesystem the nodes share)."""
    opts = dict(options or {})
    accounts = opts.pop("accounts", None)  # executors.accounts.Accounts: who jobs run as
    containers = SlurmContainers.of(opts.pop("containers", None))  # podman, per-tenant authfiles
    # jobs that run as other accounts (a root server, or slurmrestd's user) cannot enter the 0700
    # home: their output goes to a sibling folder
    others = opts.get("api") == "rest" or (accounts is not None and accounts.run_as_owner)
    opts.setdefault("log_dir", str(Path(home).parent / f"{Path(home).name}-slurm-logs" if others
                                   else Path(home) / "slurm-logs"))
    return SlurmExecutor(SlurmConfig.from_mapping(opts), accounts=accounts, containers=containers)


__all__ = ["SlurmConfig", "SlurmError", "SlurmExecutor", "SlurmUnavailable", "create"]

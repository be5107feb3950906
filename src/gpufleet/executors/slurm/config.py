"""Settings of the Slurm executor (built by main.py from gpufleet's settings; never read from the
environment here)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping


@dataclass(frozen=True, slots=True)
class SlurmConfig:
    # Where gpufleet's placement goes: False = gpufleet chose the nodes and they are passed with
    # --nodelist (topology-aware); True = only counts are passed and Slurm places the job itself.
    slurm_place: bool = False
    partition: str | None = None  # None: the cluster's default partition
    # Job output (rank 0 / batch: gf<id>.<run>.out, rank r: gf<id>.<run>.rank<r>.out). Must be a
    # folder that the compute nodes can write and this host can read (a shared filesystem).
    log_dir: str = "/var/tmp/gpufleet-slurm"
    # $GPUFLEET_CHECKPOINT_DIR of each job: <checkpoint_dir>/<tag>-<job id>-<submitted ms>/, made by
    # the job's first rank as the job's user (0700) and kept across its attempts. Must be shared by
    # the compute nodes (the restart may land elsewhere); "" = `log_dir`/.checkpoints. Made 1777
    # (sticky) when the server creates it, like log_dir.
    checkpoint_dir: str = ""
    # Job API: "cli" (sbatch/squeue/sinfo/scancel) or "rest" (slurmrestd at rest_url).
    api: str = "cli"
    rest_url: str | None = None  # unix:/path/slurmrestd.sock or http://host:6820
    rest_version: str = "v0.0.38"  # OpenAPI plugin version slurmrestd serves (22.05: v0.0.36-38)
    rest_user: str | None = None  # X-SLURM-USER-NAME (JWT) and the user REST jobs run as
    rest_token_file: str | None = None  # file holding the JWT (scontrol token)
    # Marks this gpufleet installation's jobs (--comment "<tag>:<job id>:..."); jobs without it are
    # foreign. Two gpufleet installations on one Slurm cluster must use different tags.
    tag: str = "gpufleet"
    # Slurm time limits are whole minutes; with this on, gpufleet cancels a job at its exact limit
    # and reports it as TIMEOUT (the Slurm limit, rounded up to minutes, stays as a backstop).
    exact_time_limit: bool = True
    create_accounts: bool = True  # tenant -> Slurm account, created on demand with sacctmgr
    account_parent: str = "root"
    submit_user: str | None = None  # the Unix user sbatch runs as (None: the current user)
    reservation_prefix: str = "gpufleet_b"  # booking 7 -> reservation gpufleet_b7
    bin_dir: str = ""  # where sbatch & co live ("" = PATH)
    env: Mapping[str, str] = field(default_factory=dict)  # e.g. {"SLURM_CONF": "/etc/slurm/slurm.conf"}
    # how a job's `image` runs: "pyxis" (srun --container-image), "podman" (inside the allocation),
    # "auto": pyxis when `srun --help` offers --container-image, else podman (container.py)
    container_runtime: str = "auto"
    command_timeout_s: float = 30.0
    # while gpufleet jobs are in Slurm, look this often (a cheap `squeue -h -o %i`) whether one of
    # them left Slurm's queue, and wake the control loop when one did (Ability.WATCH); 0: off
    # (ends are then seen at the loop's next interval)
    watch_interval_s: float = 0.2
    # perf jobs: the `gpufleet` the batch script runs `perf prolog|sample|epilog` with ("" = the
    # server's own, beside sys.executable: the nodes must see that venv at the same path), and a
    # fake NVML spec file for GPU-less test/demo nodes ("" = real NVML; cli/hardware.py --fake-nvml)
    gpufleet_bin: str = ""
    perf_fake_nvml: str = ""
    log_chunk_bytes: int = 1 << 20
    # Slurm's network topology (topology/tree switches, topology/block blocks) as the nodes'
    # `switch` / `block` labels (topology.py): read with `scontrol show topology`, again every
    # `topology_refresh_s` and whenever the node set changes; False: never read
    topology: bool = True
    topology_refresh_s: float = 600.0

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SlurmConfig:
        """From settings, ignoring unknown keys; accepts an optional `slurm_` prefix on every key."""
        names = {f.name for f in fields(cls)}
        kwargs = {}
        for key, value in values.items():
            name = key[len("slurm_"):] if key.startswith("slurm_") and key != "slurm_place" else key
            if name in names and value is not None:
                kwargs[name] = value
        return cls(**kwargs)

"""Jobs: the spec a user submits and the job the system runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from gpufleet.domain.board import BoardPolicy
from gpufleet.domain.perf import PerfPolicy
from gpufleet.domain.states import JobState


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What to run and what it needs. `gpus`, `cpus`, `mem_mb` are PER NODE (like --gres=gpu:N)."""

    command: tuple[str, ...]
    gpus: int = 1
    nodes: int = 1
    gpu_model: str | None = None
    cpus: int | None = None
    mem_mb: int | None = None
    time_limit_s: int | None = None
    tenant: str = "default"
    priority: int = 0
    name: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None
    constraints: Mapping[str, str] = field(default_factory=dict)  # kind=server, driver=560.35, rack=r1 ...
    booking: int | None = None
    requeue: bool = True  # when preempted: back to the queue (True) or FAILED
    image: str | None = None  # container image: podman (local), pyxis/podman (Slurm), the pod (Kubernetes)
    mounts: tuple[str, ...] = ()  # bind mounts into the image, canonical "SRC:DST[:ro]" (domain/image.py)
    pull: str = "missing"  # image pull policy: always | missing | never
    perf: PerfPolicy | None = None  # a clean-room performance run (whole nodes, prolog/epilog checks)
    labels: Mapping[str, str] = field(default_factory=dict)  # purpose=dev, project=...: what usage groups by
    artifacts: tuple[str, ...] = ()  # globs relative to the workdir, collected when an attempt ends
    dependency: tuple[tuple[str, int], ...] = ()  # (afterok|afternotok|afterany, job id): start after
    board: BoardPolicy | None = None  # embedded boards: flash an image / power-cycle first (labgrid)
    restart: str | None = None  # never | on-node-fault | on-failure[:N] (domain/training.py); None: default
    heartbeat_s: int | None = None  # the run must show life this often, or it is hung (restarted)
    nodes_min: int | None = None  # an elastic gang: may run on as few as this many nodes (< nodes)

    @property
    def total_gpus(self) -> int:
        return self.gpus * self.nodes

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        return self.command[0].rsplit("/", 1)[-1] if self.command else "job"


@dataclass(frozen=True, slots=True)
class Allocation:
    """The GPUs one rank of a job holds on one node."""

    node: str
    gpus: tuple[int, ...]


@dataclass(slots=True)
class Job:
    id: int
    spec: JobSpec
    user: str = "admin"
    state: JobState = JobState.PENDING
    reason: str = ""
    submitted_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    allocation: tuple[Allocation, ...] = ()
    handle: str | None = None  # the engine's id for this job (pid file, Slurm job id, k8s name)
    restarts: int = 0  # times it was preempted / requeued
    failures: int = 0  # of those, restarts after a fault or failure (what --restart on-failure:N counts)
    attained_gpu_s: float = 0.0  # GPU-seconds already consumed by earlier runs (LAS)
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def tenant(self) -> str:
        return self.spec.tenant

    @property
    def gpus_held(self) -> int:
        return sum(len(a.gpus) for a in self.allocation)

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(a.node for a in self.allocation)

    @property
    def attempt(self) -> int:
        """The number (1, 2, ...) of the run this job is on (RUNNING) or will start next
        (PENDING): every requeue starts a new attempt. GPUFLEET_RESTART_COUNT is attempt - 1."""
        return self.restarts + 1


@dataclass(frozen=True, slots=True)
class Attempt:
    """One run of a job: from entering RUNNING to leaving it. `state` is RUNNING while it runs,
    then the state the job went to (PENDING: it was requeued, so another attempt follows)."""

    n: int  # 1, 2, ...: GPUFLEET_ATTEMPT; GPUFLEET_RESTART_COUNT is n - 1
    state: JobState
    reason: str = ""
    started_at: float = 0.0
    ended_at: float | None = None
    exit_code: int | None = None
    allocation: tuple[Allocation, ...] = ()
    handle: str | None = None

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(a.node for a in self.allocation)

    @property
    def requeued(self) -> bool:
        return self.state is JobState.PENDING

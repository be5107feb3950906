"""The one shape every engine has: local, slurm, kubernetes, fake.

The control loop is the only caller. It writes its decision to the store first (job RUNNING with
its allocation), then calls `launch`; `launch` must therefore be idempotent: called twice for the
same job (after a crash between the two steps) it must not start the job twice. What the engine
sees comes back through `poll` as `Observation`s, which the control loop applies to the store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, BinaryIO, Callable, ClassVar, Iterable, Iterator, Protocol, Sequence, runtime_checkable

from gpufleet.domain import Booking, Job, JobState, Node, ValidationError


class EngineUnavailable(Exception):
    """The engine cannot be reached right now (e.g. slurmctld restarting). Transient: the control
    loop leaves the job as it is and tries again next cycle instead of failing it."""


class Ability(str, Enum):
    """Optional abilities an executor declares (never probed with isinstance)."""

    NODES = "nodes"  # owns the inventory: `nodes()` is the source of truth (Slurm, Kubernetes)
    DRAIN = "drain"  # drain/resume reach the engine
    LOGS = "logs"  # `logs()` returns the job's output
    BOOKINGS = "bookings"  # bookings become engine reservations
    ADOPT = "adopt"  # running jobs survive a gpufleet restart and are re-attached by `poll`
    IMAGES = "images"  # runs a job's container `image` (without it, a spec with an image is refused)
    HOST_PATHS = "host-paths"  # jobs run on this host's file system: a `workdir` must exist here
    # a root server runs each job as its owner's Unix account (executors/accounts.py): submit refuses
    # a user without one, launch fails such a job with why
    RUN_AS_OWNER = "run-as-owner"
    # `results(job, attempt)` returns the files the job wrote into $GPUFLEET_RESULTS_DIR
    RESULTS = "results"
    # `artifacts(job, attempt, globs, notes)` yields the files of each rank's workdir matching the
    # job's artifact globs (collected into the artifact store when an attempt ends)
    ARTIFACTS = "artifacts"
    # a perf job's clean-room prolog/sampling/epilog run inside the allocation (not through this
    # server's NVML): `perf_verdicts(job, attempt)` returns what they decided per rank, read back
    # when the attempt ends (control/perf.py PerfGuard.record_in_job)
    PERF_IN_JOB = "perf-in-job"
    # `open_session(job, argv, ...)` starts one more process on a pty in a running job's
    # allocation (gpufleet shell/attach/exec; executors/local/sessions.py)
    SESSIONS = "sessions"
    # `last_sign_of_life(job)`: when a running job last touched $GPUFLEET_HEARTBEAT_FILE or wrote
    # output (any rank); the control loop restarts a job whose --heartbeat it outlived (a hang)
    HEARTBEAT = "heartbeat"
    # `launch` may be called from several threads at once (for different jobs): the control loop
    # then launches up to its `launch_concurrency` jobs in parallel; without it, one at a time
    CONCURRENT_LAUNCH = "concurrent-launch"
    # `watch(on_event)`: the engine calls `on_event()` (from its own thread) when one of gpufleet's
    # jobs ended there, so the control loop cycles at once instead of at its next interval
    WATCH = "watch"


class Phase(str, Enum):
    """What the engine says about one job. Maps onto JobState in the control loop."""

    STARTING = "starting"  # accepted by the engine, not yet running
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # exited non-zero, or the engine failed it (OOM, NODE_FAIL: see reason)
    TIMEOUT = "timeout"  # killed at its time limit
    CANCELLED = "cancelled"  # cancelled in the engine (by us or by someone else)
    PREEMPTED = "preempted"  # the engine took it away; the control loop may requeue it
    LOST = "lost"  # the engine has no trace of it and it cannot be re-attached

    @property
    def ended(self) -> bool:
        return self not in (Phase.STARTING, Phase.RUNNING)


@dataclass(frozen=True, slots=True)
class Observation:
    job_id: int
    phase: Phase
    exit_code: int | None = None
    reason: str = ""
    handle: str | None = None  # the engine's id, when it learned one (Slurm job id, pod name)
    at: float | None = None  # when the engine says it happened (None: now)


@dataclass(frozen=True, slots=True)
class LogChunk:
    data: bytes
    offset: int  # offset to ask for next time
    complete: bool  # the job ended and everything was read
    note: str = ""  # e.g. "logs are not available from this engine: ..."
    attempt: int | None = None  # which run the data is of (set by the jobs service)


@dataclass(frozen=True, slots=True)
class ResultFile:
    """One file a rank wrote into $GPUFLEET_RESULTS_DIR (JSON Lines or JUnit XML)."""

    rank: int
    name: str
    data: bytes


@dataclass(slots=True)
class ArtifactFile:
    """One file of a rank's workdir that matched the job's artifact globs, open for reading
    (closed by the consumer)."""

    rank: int
    path: str  # relative to the workdir, with `/`
    size: int
    file: BinaryIO


@runtime_checkable
class Executor(Protocol):
    name: ClassVar[str]
    abilities: ClassVar[frozenset[Ability]]
    requires: ClassVar[frozenset[str]]  # job-spec fields this engine needs (e.g. "image")
    # without RUN_AS_OWNER: the one account the engine runs every job as when it is not the
    # server's (Slurm's REST user); None: the server's
    runs_jobs_as: str | None

    def launch(self, job: Job) -> str | None:
        """Start `job` on `job.allocation` (one process/task/pod per allocation entry = per rank).

        Idempotent. Returns the engine's handle (stored on the job) or None.
        """

    def poll(self, jobs: Sequence[Job]) -> list[Observation]:
        """Observe the given RUNNING jobs (cheaply, in bulk). Jobs not returned are unchanged."""

    def cancel(self, job: Job) -> None:
        """Stop the job (all ranks). Idempotent; a job already gone is fine."""

    def logs(self, job: Job, offset: int = 0, rank: int = 0, attempt: int | None = None) -> LogChunk:
        """Output of rank `rank` of attempt `attempt` (1, 2, ...; None: the job's latest)."""

    def nodes(self) -> list[Node]:
        """The engine's view of its nodes (Ability.NODES), with GPUs held by foreign work marked
        in `node.labels["gpufleet.io/foreign-gpus"]` as a comma list of GPU indices (or a count
        as "n:<count>" when indices are unknown). Executors without NODES return []."""

    def drain(self, node: str, reason: str) -> None: ...

    def resume(self, node: str) -> None: ...

    def book(self, booking: Booking) -> None:
        """Mirror a booking into the engine (Ability.BOOKINGS), e.g. a Slurm reservation."""

    def unbook(self, booking: Booking) -> None: ...

    def close(self) -> None: ...


class ExecutorBase:
    """Defaults for the optional parts; engines override what they support."""

    name: ClassVar[str] = "base"
    abilities: ClassVar[frozenset[Ability]] = frozenset()
    requires: ClassVar[frozenset[str]] = frozenset()  # job-spec fields this engine needs, e.g. image
    runs_jobs_as: str | None = None

    def nodes(self) -> list[Node]:
        return []

    def logs(self, job: Job, offset: int = 0, rank: int = 0, attempt: int | None = None) -> LogChunk:
        return LogChunk(b"", offset, True, note=f"logs are not available from the {self.name} engine")

    def drain(self, node: str, reason: str) -> None:
        return None

    def resume(self, node: str) -> None:
        return None

    def book(self, booking: Booking) -> None:
        return None

    def unbook(self, booking: Booking) -> None:
        return None

    def results(self, job: Job, attempt: int) -> tuple[list[ResultFile], list[str]]:
        """(files of $GPUFLEET_RESULTS_DIR, notes); engines with Ability.RESULTS override it."""
        return [], [f"results are not collected from the {self.name} engine yet"]

    def artifacts(self, job: Job, attempt: int, globs: Sequence[str], notes: list[str]) -> Iterator[ArtifactFile]:
        """The files matching `globs` in the workdir of every rank of run `attempt`; what was
        skipped is appended to `notes`. Engines with Ability.ARTIFACTS override it."""
        notes.append(f"artifacts are not collected from the {self.name} engine yet")
        return iter(())

    def open_session(self, job: Job, argv: Sequence[str], *, rows: int = 24, cols: int = 80,
                     term: str = "xterm-256color", tty_mode: bool = True, rank: int = 0) -> Any:
        """A process on a pty in running `job`'s allocation (an object with `fd`, `resize`,
        `exit_code`, `wait`, `terminate`, `close`: executors/local/sessions.PtyProcess). Engines
        with Ability.SESSIONS override it."""
        raise ValidationError("job", f"interactive sessions are not available on the {self.name} engine yet")

    def last_sign_of_life(self, job: Job) -> float | None:
        """Engines with Ability.HEARTBEAT override it (None: nothing seen yet)."""
        return None

    def watch(self, on_event: Callable[[], None]) -> None:
        """Engines with Ability.WATCH override it: call `on_event()` when a job of ours ended
        (cheap, from any thread; the control loop's wake)."""
        return None

    def last_checkpoint(self, job: Job) -> float | None:
        """When `job` last wrote under $GPUFLEET_CHECKPOINT_DIR (None: unknown, or nothing yet):
        the work lost at a fault is counted from there (gpufleet_lost_gpu_hours_total)."""
        return None

    def close(self) -> None:
        return None


HEARTBEAT_FILE = "heartbeat"  # $GPUFLEET_HEARTBEAT_FILE = $GPUFLEET_RUN_DIR/heartbeat


def newest_mtime(paths: Iterable[str | os.PathLike]) -> float | None:
    """The newest modification time of those of `paths` that exist (lstat: no link followed; the
    job writes these files), None when none does: last_sign_of_life over heartbeat files and logs."""
    newest = None
    for f in paths:
        try:
            t = os.lstat(f).st_mtime
        except OSError:
            continue
        newest = t if newest is None else max(newest, t)
    return newest


def newest_write_below(top: str | os.PathLike, limit: int = 10_000) -> float | None:
    """The newest modification time of the files below `top` (links not followed; after `limit`
    entries the newest seen so far), or None when there are none."""
    newest, seen, stack = None, 0, [str(top)]
    while stack and seen < limit:
        try:
            with os.scandir(stack.pop()) as entries:
                for e in entries:
                    seen += 1
                    if e.is_dir(follow_symlinks=False):
                        stack.append(e.path)
                    else:
                        t = e.stat(follow_symlinks=False).st_mtime
                        newest = t if newest is None else max(newest, t)
        except OSError:
            continue
    return newest


FOREIGN_GPUS_LABEL = "gpufleet.io/foreign-gpus"


def rank_env(job: Job, rank: int, master_addr: str, master_port: int) -> dict[str, str]:
    """The environment every engine gives rank `rank` of `job` (torchrun-compatible + twins)."""
    alloc = job.allocation[rank]
    visible = ",".join(str(i) for i in alloc.gpus)
    world = str(len(job.allocation))
    env = {
        "GPUFLEET_JOB_ID": str(job.id),
        "GPUFLEET_JOB_NAME": job.spec.display_name,
        "GPUFLEET_TENANT": job.spec.tenant,
        "GPUFLEET_NODE": alloc.node,
        "GPUFLEET_NODELIST": ",".join(job.node_names),
        "CUDA_VISIBLE_DEVICES": visible,
        "NVIDIA_VISIBLE_DEVICES": visible,
        "GPUFLEET_GPUS": visible,
        "MASTER_ADDR": master_addr,
        "MASTER_PORT": str(master_port),
        "WORLD_SIZE": world,
        "NODE_RANK": str(rank),
        "GPUFLEET_MASTER_ADDR": master_addr,
        "GPUFLEET_MASTER_PORT": str(master_port),
        "GPUFLEET_WORLD_SIZE": world,
        "GPUFLEET_NODE_RANK": str(rank),
        "GPUFLEET_ATTEMPT": str(job.attempt),
        "GPUFLEET_RESTART_COUNT": str(job.restarts),  # torchrun elastic's TORCHELASTIC_RESTART_COUNT
    }
    if job.extra.get("group_id") is not None:  # a matrix cell or an array task (like SLURM_ARRAY_JOB_ID)
        env["GPUFLEET_GROUP_ID"] = str(job.extra["group_id"])
    return env


def latest_attempt(job: Job) -> int:
    """The run `logs(attempt=None)` means: the current one, or for a job requeued and not yet
    running again (no start time since the requeue), the run before."""
    if job.state is not JobState.RUNNING and job.started_at is None and job.restarts:
        return job.restarts
    return job.attempt


def attempt_view(job: Job, attempt: int | None = None) -> tuple[Job, bool]:
    """`job` as it was on run `attempt` (None: the latest), for engines that name their files and
    objects by attempt, and whether that run is certainly over (an earlier one, or a job that
    ended). An earlier run's allocation and handle are not on the job: they are left empty."""
    n = latest_attempt(job) if attempt is None else attempt
    if not 1 <= n <= job.attempt:
        raise ValidationError("attempt", f"job {job.id} has attempts 1..{latest_attempt(job)}, not {n}")
    over = n < job.attempt or job.state.terminal
    if n == job.attempt:
        return job, over
    return replace(job, restarts=n - 1, allocation=(), handle=None), over


def master_port_for(job_id: int) -> int:
    """A deterministic port per job so restarts and all ranks agree (29500..39499)."""
    return 29500 + job_id % 10000

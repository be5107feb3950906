"""FakeExecutor: an in-memory engine for unit tests of the control loop. Nothing executes.

A job behaves as its spec's env says:
    GPUFLEET_FAKE_SECONDS   run time in seconds (float); unset: runs until `finish()` (or cancel,
                            time limit, `vanish()`)
    GPUFLEET_FAKE_EXIT      exit code when it ends by itself (default 0)
    GPUFLEET_FAKE_OUTPUT    the text its log holds (every rank prints it once); $VARS of the job's
                            env and of the rank env (GPUFLEET_ATTEMPT, NODE_RANK, ...) are expanded
    GPUFLEET_FAKE_RESTARTED_SECONDS   run time of the attempts after the first (default: as above)
Time is the injected `clock` (e.g. `FakeClock`, advanced by the test). What the engine knows lives
in a `FakeWorld`, one run per attempt of a job; a second FakeExecutor on the same world is a
restarted server (re-attachment). `world.launches` records every real start (a job id per start):
the proof that nothing was launched twice.
"""

from __future__ import annotations

import io
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from gpufleet.domain import Job, ValidationError
from gpufleet.domain.globs import matches
from gpufleet.executors.base import (
    Ability, ArtifactFile, ExecutorBase, LogChunk, Observation, Phase, attempt_view, master_port_for, rank_env,
)

ENV_SECONDS = "GPUFLEET_FAKE_SECONDS"
ENV_EXIT = "GPUFLEET_FAKE_EXIT"
ENV_OUTPUT = "GPUFLEET_FAKE_OUTPUT"
ENV_RESTARTED_SECONDS = "GPUFLEET_FAKE_RESTARTED_SECONDS"
TERM_EXIT = 128 + 15


class FakeClock:
    """A clock tests move by hand: `clock()` is now, `clock.advance(s)` (or `sleep(s)`) moves it."""

    def __init__(self, start: float = 1_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    sleep = advance


@dataclass(slots=True)
class FakeRun:
    job_id: int
    ranks: int
    started: float
    seconds: float | None
    exit_code: int
    output: tuple[str, ...]  # per rank
    time_limit_s: int | None
    handle: str
    ended: Observation | None = None  # set once it ended by finish/cancel/vanish


@dataclass(slots=True)
class FakeWorld:
    """The engine's state, shared by every FakeExecutor made on it."""

    runs: dict[tuple[int, int], FakeRun] = field(default_factory=dict)  # (job id, attempt)
    launches: list[int] = field(default_factory=list)  # job ids, one entry per real start
    cancels: list[int] = field(default_factory=list)
    # what each rank's workdir holds when a run ends: (job id, attempt) -> {rank: {path: bytes}}
    files: dict[tuple[int, int], dict[int, dict[str, bytes]]] = field(default_factory=dict)
    beats: dict[tuple[int, int], float] = field(default_factory=dict)  # (job id, attempt) -> last heartbeat
    checkpoints: dict[int, float] = field(default_factory=dict)  # job id -> last checkpoint write


class FakeExecutor(ExecutorBase):
    name = "fake"
    abilities = frozenset({Ability.LOGS, Ability.ADOPT, Ability.ARTIFACTS, Ability.HEARTBEAT,
                           Ability.CONCURRENT_LAUNCH})

    def __init__(self, clock: Callable[[], float] = time.time, world: FakeWorld | None = None):
        self.clock = clock
        self.world = world if world is not None else FakeWorld()
        self.launch_error: Exception | None = None  # set it: the next launches raise it
        # called first by every launch, from the launching thread (tests: a slow or failing engine)
        self.launch_hook: Callable[[Job], None] | None = None
        self._lock = threading.Lock()

    def artifacts(self, job: Job, attempt: int, globs: Sequence[str], notes: list[str]) -> Iterator[ArtifactFile]:
        """The files of `world.files` for that run that match `globs`, rank by rank."""
        for rank, files in sorted(self.world.files.get((job.id, attempt), {}).items()):
            for path in sorted(files):
                if matches(path, globs):
                    yield ArtifactFile(rank, path, len(files[path]), io.BytesIO(files[path]))

    def restarted(self) -> FakeExecutor:
        """A new executor over the same engine state: what a restarted server sees."""
        return FakeExecutor(self.clock, self.world)

    @property
    def launches(self) -> list[int]:
        return self.world.launches

    def launch(self, job: Job) -> str:
        if self.launch_hook is not None:
            self.launch_hook(job)
        if self.launch_error is not None:
            raise self.launch_error
        if not job.allocation:
            raise ValidationError("allocation", f"job {job.id} has no allocation")
        with self._lock:
            return self._start(job)

    def _start(self, job: Job) -> str:
        run = self.world.runs.get((job.id, job.attempt))
        if run is not None:
            return run.handle
        env = job.spec.env
        seconds = env.get(ENV_RESTARTED_SECONDS) if job.restarts else None
        seconds = env.get(ENV_SECONDS) if seconds in (None, "") else seconds
        suffix = f"-a{job.attempt}" if job.restarts else ""
        run = FakeRun(
            job_id=job.id, ranks=len(job.allocation), started=self.clock(),
            seconds=float(seconds) if seconds not in (None, "") else None,
            exit_code=int(env.get(ENV_EXIT, "0") or 0),
            output=tuple(_expand(env.get(ENV_OUTPUT, ""), job, r) for r in range(len(job.allocation))),
            time_limit_s=job.spec.time_limit_s, handle=f"fake-{job.id}{suffix}",
        )
        self.world.runs[(job.id, job.attempt)] = run
        self.world.launches.append(job.id)
        return run.handle

    def poll(self, jobs: Sequence[Job]) -> list[Observation]:
        out = []
        for job in jobs:
            run = self.world.runs.get((job.id, job.attempt))
            if run is None:
                if job.handle is not None:
                    out.append(Observation(job.id, Phase.LOST, reason="unknown to the fake engine"))
                continue
            out.append(self._observe(run))
        return out

    def _observe(self, run: FakeRun) -> Observation:
        if run.ended is not None:
            return run.ended
        now = self.clock()
        limit_at = run.started + run.time_limit_s if run.time_limit_s else None
        end_at = run.started + run.seconds if run.seconds is not None else None
        if limit_at is not None and now >= limit_at and (end_at is None or end_at > limit_at):
            run.ended = Observation(run.job_id, Phase.TIMEOUT, TERM_EXIT,
                                    f"time limit ({run.time_limit_s}s) reached", run.handle, limit_at)
        elif end_at is not None and now >= end_at:
            run.ended = _exited(run, run.exit_code, end_at)
        else:
            return Observation(run.job_id, Phase.RUNNING, handle=run.handle)
        return run.ended

    def cancel(self, job: Job) -> None:
        self.world.cancels.append(job.id)
        run = self.world.runs.get((job.id, job.attempt))
        if run is not None and self._observe(run).phase is Phase.RUNNING:
            run.ended = Observation(job.id, Phase.CANCELLED, TERM_EXIT, "cancelled", run.handle, self.clock())

    def _latest(self, job_id: int) -> FakeRun:
        return self.world.runs[max(k for k in self.world.runs if k[0] == job_id)]

    def finish(self, job_id: int, exit_code: int = 0) -> None:
        """The job's latest run exits now with `exit_code` (all ranks)."""
        run = self._latest(job_id)
        if self._observe(run).phase is Phase.RUNNING:
            run.ended = _exited(run, exit_code, self.clock())

    def beat(self, job_id: int) -> None:
        """The job's latest run touches its heartbeat file now."""
        self.world.beats[max(k for k in self.world.runs if k[0] == job_id)] = self.clock()

    def last_sign_of_life(self, job: Job) -> float | None:
        return self.world.beats.get((job.id, job.attempt))

    def checkpoint(self, job_id: int) -> None:
        """The job writes its checkpoint now."""
        self.world.checkpoints[job_id] = self.clock()

    def last_checkpoint(self, job: Job) -> float | None:
        return self.world.checkpoints.get(job.id)

    def vanish(self, job_id: int) -> None:
        """The engine loses every trace of the job's latest run: it will be LOST."""
        run = self._latest(job_id)
        if self._observe(run).phase is Phase.RUNNING:
            run.ended = Observation(job_id, Phase.LOST, None, "the fake process vanished", run.handle,
                                    self.clock())

    def logs(self, job: Job, offset: int = 0, rank: int = 0, attempt: int | None = None) -> LogChunk:
        view, over = attempt_view(job, attempt)
        run = self.world.runs.get((job.id, view.attempt))
        if run is None:
            return LogChunk(b"", offset, over or job.state.terminal, note="not launched")
        if not 0 <= rank < run.ranks:
            raise ValidationError("rank", f"job {job.id} has no rank {rank}")
        out = run.output[rank]
        text = out if not out or out.endswith("\n") else out + "\n"
        data = text.encode()[offset:]
        ended = self._observe(run).phase.ended
        return LogChunk(data, offset + len(data), ended)


_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def _expand(text: str, job: Job, rank: int) -> str:
    """$VAR / ${VAR} from the rank's environment, like the shell of a real engine would."""
    if "$" not in text:
        return text
    env = {**job.spec.env, **rank_env(job, rank, "127.0.0.1", master_port_for(job.id))}
    return _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), text)


def _exited(run: FakeRun, code: int, at: float) -> Observation:
    if code == 0:
        return Observation(run.job_id, Phase.SUCCEEDED, 0, "", run.handle, at)
    return Observation(run.job_id, Phase.FAILED, code, f"rank 0 exited with {code}", run.handle, at)


def create(options: dict, home: object = None) -> FakeExecutor:
    """The composition root's factory (wall-clock time: jobs with GPUFLEET_FAKE_SECONDS end)."""
    return FakeExecutor(clock=time.time)

"""The four custom-executor programs (docs.gitlab.com/runner/executors/custom), as functions of
the runner's settings, the environment the runner gave them, a gpufleet client and an `Io`
(streams, clock, sleep, SIGTERM flag), so tests drive them without a runner or a server."""

from __future__ import annotations

import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping

from gpufleet import __version__
from gpufleet.ci.gitlab.files import AllocDir, StageDir
from gpufleet.ci.gitlab.variables import (
    allocation_spec, ci_job_id, ci_vars, failure_codes, idempotency_key, perf_requested, var_for,
)
from gpufleet.client import ApiError, ServerUnreachable
from gpufleet.domain import ValidationError
from gpufleet.domain.spec import build_spec

ACTIVE = ("PENDING", "RUNNING")
POLL_S = 0.1
JOB_CHECK_S = 2.0  # how often run asks the server whether the allocation still runs
AGENT_START_S = 60.0  # a RUNNING allocation whose agent has not said ready by then is a fault
BUILD_ERRORS = (400, 401, 403, 404, 409, 422)  # the CI job's own input or rights: not the system's fault


@dataclass(frozen=True)
class Runner:
    """What config.toml passes to every program (the same flags on each)."""

    builds_dir: Path
    cache_dir: Path | None = None
    heartbeat_timeout: float = 120.0
    report_every: float = 5.0
    default_time_limit: str | None = "1h"
    python: str = sys.executable
    grace_s: float = 5.0  # TERM -> KILL of a stage script
    release_wait: float = 15.0  # cleanup: how long the agent may take to end before a cancel


@dataclass
class Io:
    out: BinaryIO
    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    terminated: bool = False  # set by the SIGTERM handler

    def say(self, text: str) -> None:
        self.out.write(f"gpufleet: {text}\n".encode())
        self.out.flush()


class Fault(Exception):
    """Ends a program with SYSTEM_FAILURE_EXIT_CODE (system=True) or BUILD_FAILURE_EXIT_CODE."""

    def __init__(self, message: str, system: bool = True):
        super().__init__(message)
        self.system = system


def guarded(environ: Mapping[str, str], io: Io, body: Callable[[], int]) -> int:
    """Run one program's body; expected failures become one `error:` line and the exit code the
    runner asked for: bad CI variables, refusals and rights are build failures, an unreachable
    or failing server and a lost allocation are system failures."""
    build, system = failure_codes(environ)
    try:
        return body()
    except ValidationError as e:
        message, is_system = f"{var_for(e.field)}: {e.message}", False
    except ApiError as e:
        is_system = e.status not in BUILD_ERRORS
        message = f"{var_for(e.field)}: {e.message}" if e.field else str(e)
    except ServerUnreachable as e:
        message, is_system = str(e), True
    except Fault as e:
        message, is_system = str(e), e.system
    except OSError as e:  # the builds dir: full, not writable...
        message, is_system = f"allocation directory: {e}", True
    io.out.write(f"error: {message}\n".encode())
    io.out.flush()
    return system if is_system else build


def config_output(runner: Runner) -> dict[str, Any]:
    """config_exec's JSON on stdout: where builds and caches live, and who drives them."""
    out: dict[str, Any] = {"builds_dir": str(runner.builds_dir), "builds_dir_is_shared": True,
                           "hostname": socket.gethostname(),
                           "driver": {"name": "gpufleet", "version": __version__}}
    if runner.cache_dir:
        out["cache_dir"] = str(runner.cache_dir)
    return out


def agent_command(runner: Runner, alloc: AllocDir) -> list[str]:
    return [runner.python, "-m", "gpufleet.ci.gitlab.agent", "--dir", str(alloc.path),
            "--heartbeat-timeout", f"{runner.heartbeat_timeout:g}", "--grace", f"{runner.grace_s:g}"]


def prepare(runner: Runner, environ: Mapping[str, str], client, io: Io, defer_term=None) -> int:
    """Submit the allocation (once per CI job) and wait until it runs, printing why it waits."""
    def body() -> int:
        ci = ci_vars(environ)
        alloc = AllocDir.of(runner.builds_dir, ci_job_id(ci))
        spec = allocation_spec(ci, agent_command(runner, alloc), str(alloc.path), runner.default_time_limit)
        build_spec(spec)  # a bad GPUFLEET_* variable is named before anything is stored
        if perf_requested(ci):
            io.say("GPUFLEET_PERF=1: this gpufleet server has no performance mode; ignored")
        alloc.create()
        alloc.beat()
        state = alloc.state()
        if state is None:
            with defer_term() if defer_term else _nothing():  # SIGTERM waits until the id is kept
                job = client.submit(spec, idempotency_key=idempotency_key(ci))
                alloc.write_state({"job_id": job.id, "ci_job_id": ci["CI_JOB_ID"], "submitted_at": time.time()})
            state = {"job_id": job.id}
            io.say(f"allocation {job.id} submitted: {_request(spec)}")
        return wait_running(runner, client, alloc, state["job_id"], io)

    return guarded(environ, io, body)


def wait_running(runner: Runner, client, alloc: AllocDir, job_id: int, io: Io) -> int:
    reported_at, reason, running_since = -1e18, None, None
    while True:
        if io.terminated:
            raise Fault(f"stopped by SIGTERM while waiting; cleanup releases allocation {job_id}")
        alloc.beat()
        j = client.job(job_id)
        if j.state == "RUNNING":
            ready = alloc.ready()
            if ready is not None:
                io.say(f"allocation {job_id} running on {','.join(j.nodes)} "
                       f"(GPUs {_gpus(j.gpus)})")
                return 0
            running_since = running_since if running_since is not None else io.now()
            if io.now() - running_since > AGENT_START_S:
                raise Fault(f"allocation {job_id} runs but its agent did not start within {AGENT_START_S:g}s")
        elif j.state != "PENDING":
            raise Fault(f"allocation {job_id} ended before it started: {j.state} {j.reason}".rstrip())
        elif j.reason != reason or io.now() - reported_at >= runner.report_every:
            io.say(f"allocation {job_id} pending: {j.reason}")
            reported_at, reason = io.now(), j.reason
        io.sleep(POLL_S * 5 if j.state == "PENDING" else POLL_S)


def run(runner: Runner, environ: Mapping[str, str], script: str, stage: str, client, io: Io) -> int:
    """Run one sub-stage's script inside the allocation, streaming its output; 0, or the build
    failure code with the script's real code in BUILD_EXIT_CODE_FILE, or the system failure code."""
    def body() -> int:
        alloc = AllocDir.of(runner.builds_dir, ci_job_id(ci_vars(environ)))
        state = alloc.state()
        if state is None:
            raise Fault("no gpufleet allocation for this CI job (prepare did not run, or cleanup released it)")
        try:
            text = Path(script).read_bytes()
            st = alloc.add_stage(stage, text)
        except (OSError, ValueError) as e:
            raise Fault(f"cannot hand stage {stage!r} to the allocation: {e}") from None
        code = follow_stage(runner, client, alloc, st, state["job_id"], io)
        if code == 0:
            return 0
        exit_file = environ.get("BUILD_EXIT_CODE_FILE")
        if exit_file:  # how the runner learns the script's real code (allow_failure:exit_codes)
            Path(exit_file).write_text(f"{code}\n")
        return failure_codes(environ)[0]

    return guarded(environ, io, body)


def follow_stage(runner: Runner, client, alloc: AllocDir, st: StageDir, job_id: int, io: Io) -> int:
    offset, next_check, give_up = 0, 0.0, None
    while True:
        alloc.beat()
        offset = _copy(st.output, offset, io.out)
        code = st.exit_code()
        if code is not None:
            while (more := _copy(st.output, offset, io.out)) != offset:
                offset = more
            return code
        if io.terminated and give_up is None:
            st.stop()
            give_up = io.now() + runner.grace_s + 5.0
        if give_up is not None and io.now() > give_up:
            return 128 + 15
        if io.now() >= next_check:
            next_check = io.now() + JOB_CHECK_S
            try:
                j = client.job(job_id)
            except ServerUnreachable:
                j = None  # the agent keeps running the script; ask again later
            if j is not None and j.state != "RUNNING" and st.exit_code() is None:
                _copy(st.output, offset, io.out)
                raise Fault(f"allocation {job_id} is {j.state}: {j.reason} (the script did not finish)")
        io.sleep(POLL_S)


def cleanup(runner: Runner, environ: Mapping[str, str], client, io: Io) -> int:
    """Release the allocation: the agent ends on `release`; cancel it if it does not. Nothing to
    do (exit 0) when this CI job has no allocation."""
    def body() -> int:
        alloc = AllocDir.of(runner.builds_dir, ci_job_id(ci_vars(environ)))
        state = alloc.state()
        if state is None:
            alloc.remove()
            return 0
        job_id = state["job_id"]
        alloc.release()
        running = alloc.ready() is not None  # an agent reads `release`; a pending job has none
        if not running or not _wait_ended(client, job_id, runner.release_wait, io):
            client.cancel(job_id)
            if not _wait_ended(client, job_id, runner.release_wait, io):
                raise Fault(f"allocation {job_id} still active after cancel")
        io.say(f"allocation {job_id} released")
        alloc.remove()
        return 0

    return guarded(environ, io, body)


def _wait_ended(client, job_id: int, seconds: float, io: Io) -> bool:
    deadline = io.now() + seconds
    while True:
        try:
            if client.job(job_id).state not in ACTIVE:
                return True
        except ApiError as e:
            if e.status == 404:
                return True
            raise
        if io.now() >= deadline:
            return False
        io.sleep(POLL_S * 2)


def _copy(path: Path, offset: int, out: BinaryIO) -> int:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(1 << 20)
    except OSError:
        return offset
    if data:
        out.write(data)
        out.flush()
    return offset + len(data)


def _request(spec: Mapping[str, Any]) -> str:
    parts = [f"{spec.get('nodes', 1)} node(s) x {spec.get('gpus', 1)} GPU(s)"]
    for key in ("gpu_model", "constraint", "tenant", "time_limit", "image"):
        if spec.get(key):
            parts.append(f"{key}={spec[key]}")
    return " ".join(parts)


def _gpus(gpus: Mapping[str, list[int]]) -> str:
    return " ".join(f"{n}:{','.join(map(str, g))}" for n, g in gpus.items()) or "-"


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

"""Interactive sessions on the local engine: one more process in a running job's allocation.

`gpufleet shell`, `attach` and `exec` (docs/sessions.md) reach here through the API's pty relay
(api/routers/sessions.py). The process is started like `srun --overlap --pty` starts a step: on
the rank's node (this host), with the rank's whole environment (launch.env: its GPUs in
CUDA_VISIBLE_DEVICES, GPUFLEET_JOB_ID...), as the job's account (the rank's run_as: the shim in
`--session` mode drops to it), in its workdir, in its container (`podman exec`) when it has an
image. It gets a fresh pty (its controlling terminal, in its own session); the server holds the
master end. It is a child of the server, not of the rank's shim: the relay ends it when the job
ends, when the client goes away, or when it has been idle too long.
"""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import subprocess
import termios
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from gpufleet.domain import Job, JobState, ValidationError
from gpufleet.executors.accounts import DEFAULT_PATH
from gpufleet.executors.local.files import JobPaths, read_json


@dataclass
class PtyProcess:
    """A process on a pty whose master end `fd` this server holds."""

    proc: subprocess.Popen[bytes]
    fd: int

    def resize(self, rows: int, cols: int) -> None:
        set_winsize(self.fd, rows, cols)  # the kernel sends SIGWINCH to the foreground group

    def exit_code(self) -> int | None:
        code = self.proc.poll()
        if code is None:
            return None
        return 128 - code if code < 0 else code

    def wait(self, timeout: float | None = None) -> int:
        self.proc.wait(timeout)
        code = self.exit_code()
        assert code is not None
        return code

    def terminate(self, grace_s: float = 2.0) -> None:
        """HUP its process group (what a closed terminal does), then KILL after `grace_s`."""
        for signum in (signal.SIGHUP, signal.SIGTERM):
            _killpg(self.proc.pid, signum)
        deadline = time.monotonic() + grace_s
        while self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        _killpg(self.proc.pid, signal.SIGKILL)
        self.proc.poll()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _killpg(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except OSError:
        pass


def set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", max(1, rows), max(1, cols), 0, 0))


def plain_pty(fd: int) -> None:
    attrs = termios.tcgetattr(fd)
    attrs[1] &= ~termios.OPOST
    attrs[3] &= ~(termios.ECHO | termios.ECHONL)
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


def open_session(run_dir: Path, python: str, shim: Path, job: Job, argv: Sequence[str], *, rows: int = 24,
                 cols: int = 80, term: str = "xterm-256color", tty_mode: bool = True, rank: int = 0) -> PtyProcess:
    """Start `argv` (empty: the account's shell) in rank `rank` of running `job`.

    `tty_mode` False (a command whose output is not a terminal): the pty neither echoes nor turns
    LF into CRLF, so the output arrives as the command wrote it; ^C (SIGINT) and ^D (EOF at the
    start of a line) still work."""
    if job.state is not JobState.RUNNING:
        raise ValidationError("job", f"job {job.id} is {job.state.value}, not RUNNING")
    if rank < 0 or rank >= len(job.allocation):
        raise ValidationError("rank", f"job {job.id} has ranks 0..{max(len(job.allocation) - 1, 0)}")
    rp = JobPaths.of(run_dir, job.id, job.attempt).rank(rank)
    pids = read_json(rp.pid)
    if pids is None or rp.exit.exists():
        raise ValidationError("job", f"job {job.id} is not running on its node yet (or has just ended)")
    workdir = job.spec.workdir or str(rp.dir / "work")
    master, slave = os.openpty()
    try:
        set_winsize(slave, rows, cols)
        if not tty_mode:
            plain_pty(slave)
        proc = subprocess.Popen(
            [python, "-I", "-S", str(shim), "--session", str(rp.dir), workdir, "--", *argv],
            stdin=slave, stdout=slave, stderr=slave, start_new_session=True, close_fds=True,
            cwd=rp.dir, env={"PATH": DEFAULT_PATH, "TERM": term or "xterm-256color"},
        )
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    os.set_blocking(master, False)
    return PtyProcess(proc, master)


__all__ = ["PtyProcess", "open_session", "plain_pty", "set_winsize"]

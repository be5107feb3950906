"""`gpufleet shell`, `attach`, `exec`: a terminal in a job's allocation (docs/sessions.md).

`shell` submits a job like `submit` does (same quotas, same queue; while it waits, the pending
reason is shown and kept up to date), and once it runs opens a terminal in it; leaving the shell
ends the job, its exit code is the CLI's. `attach ID` opens one more shell in a running job,
`exec ID -- CMD` runs one command there. The terminal is relayed by the server (client/pty.py).
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import sys
import termios
import time
import tty
from typing import Any, Optional

import typer

from gpufleet.cli.jobs import _as_env
from gpufleet.client import ApiError, Client
from gpufleet.client.pty import Exited, Output, PtyConnection

POLL_S = 0.5
OPEN_RETRY_S = 10.0  # RUNNING in the store a moment before the rank's process is up
HOLD = ["sleep", "2147483647"]  # what a shell job runs: it holds the allocation the sessions use
ENDED = ("SUCCEEDED", "FAILED", "CANCELLED", "TIMEOUT", "LOST")


def shell(
    gpus: Optional[int] = typer.Option(None, "--gpus", "-G", help="GPUs"),
    gpu_model: Optional[str] = typer.Option(None, "--gpu-model", help="e.g. a100, h100"),
    constraint: Optional[list[str]] = typer.Option(None, "--constraint", help="K=V[,K=V] node attributes"),
    image: Optional[str] = typer.Option(None, "--image", help="container image to open the shell in"),
    mount: Optional[list[str]] = typer.Option(None, "--mount", help="SRC:DST[:ro] bind mount into the image"),
    time_limit: Optional[str] = typer.Option("2h", "--time-limit", "-t", help="90s, 30m, 4h, HH:MM:SS"),
    cpus: Optional[int] = typer.Option(None, "--cpus", help="CPUs"),
    mem: Optional[str] = typer.Option(None, "--mem", help="memory, e.g. 16G"),
    tenant: Optional[str] = typer.Option(None, "--tenant", "-T"),
    name: Optional[str] = typer.Option("shell", "--name", "-n"),
    env: Optional[list[str]] = typer.Option(None, "--env", "-e", help="K=V (repeatable)"),
    workdir: Optional[str] = typer.Option(None, "--workdir", "-C"),
    label: Optional[list[str]] = typer.Option(None, "--label", help="K=V job label (repeatable)"),
    idle_timeout: Optional[str] = typer.Option(None, "--idle-timeout", help="end the session after this "
                                               "long without input (default: the server's, 30m)"),
) -> None:
    """An interactive shell on a GPU node: queues like any job, then a terminal in it."""
    spec: dict[str, Any] = {"command": HOLD, "label": ",".join(["session=shell", *(label or [])])}
    for key, value in (("gpus", gpus), ("gpu_model", gpu_model), ("image", image), ("time_limit", time_limit),
                       ("cpus", cpus), ("mem", mem), ("tenant", tenant), ("name", name), ("workdir", workdir)):
        if value is not None:
            spec[key] = value
    if constraint:
        spec["constraint"] = ",".join(constraint)
    if mount:
        spec["mounts"] = list(mount)
    if env:
        spec["env"] = _as_env(list(env))
    with Client.from_env() as c:
        job = c.submit(spec)
        _note(f"job {job.id} submitted")
        try:
            _wait_running(c, job.id)
            code = _session(c, job.id, [], end_job=True, idle_timeout=idle_timeout)
        except KeyboardInterrupt:
            c.cancel(job.id)
            _note(f"\njob {job.id} cancelled")
            raise typer.Exit(130)
        except BaseException:
            _cancel_quietly(c, job.id)
            raise
    raise typer.Exit(code)


def attach(job_id: int = typer.Argument(..., help="a running job"),
           idle_timeout: Optional[str] = typer.Option(None, "--idle-timeout", help="end the session after "
                                                      "this long without input (default: the server's)")) -> None:
    """One more shell in a running job's allocation (its node, GPUs, environment, account)."""
    with Client.from_env() as c:
        code = _session(c, job_id, [], end_job=False, idle_timeout=idle_timeout)
    raise typer.Exit(code)


def exec_(job_id: int = typer.Argument(..., help="a running job"),
          command: list[str] = typer.Argument(..., help="CMD ARGS... (after --)"),
          idle_timeout: Optional[str] = typer.Option(None, "--idle-timeout")) -> None:
    """Run one command in a running job's allocation; its exit code is this command's."""
    with Client.from_env() as c:
        code = _session(c, job_id, list(command), end_job=False, idle_timeout=idle_timeout)
    raise typer.Exit(code)


def _note(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _cancel_quietly(c: Client, job_id: int) -> None:
    try:
        c.cancel(job_id)
    except Exception:  # noqa: BLE001 - the original error is the one to show
        pass


def _wait_running(c: Client, job_id: int) -> None:
    """Until the job runs, with its state and pending reason on one line, kept up to date."""
    live = sys.stderr.isatty()
    shown = ""
    while True:
        j = c.job(job_id)
        if j.state == "RUNNING":
            if live and shown:
                sys.stderr.write("\r\x1b[K")
            where = "  ".join(f"{n} (GPUs {','.join(map(str, g))})" for n, g in j.gpus.items())
            _note(f"job {job_id} is running on {where or '?'}")
            return
        if j.state in ENDED:
            raise ApiError(409, f"job {job_id} ended before it ran: {j.state} {j.reason}".strip())
        line = f"job {job_id} {j.state.lower()}: {j.reason or 'waiting'}"
        if line != shown:
            if live:
                width = shutil.get_terminal_size().columns
                sys.stderr.write("\r\x1b[K" + line[:max(10, width - 1)])
                sys.stderr.flush()
            else:
                _note(line)
            shown = line
        time.sleep(POLL_S)


def _open(c: Client, job_id: int, cmd: list[str], **options: Any) -> PtyConnection:
    deadline = time.monotonic() + OPEN_RETRY_S
    while True:
        try:
            return c.open_pty(job_id, cmd, **options)
        except ApiError as e:
            if e.field != "job" or "yet" not in e.message or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _session(c: Client, job_id: int, cmd: list[str], *, end_job: bool, idle_timeout: str | None) -> int:
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    rows, cols = _size()
    conn = _open(c, job_id, cmd, rows=rows, cols=cols, term=os.environ.get("TERM") or "xterm-256color",
                 tty=interactive or not cmd, end_job=end_job, idle_timeout=idle_timeout)
    try:
        return Terminal(conn, interactive).run()
    finally:
        conn.close()


def _size() -> tuple[int, int]:
    size = shutil.get_terminal_size((80, 24))
    return size.lines, size.columns


class Terminal:
    """This terminal, raw, wired to the remote one: keys go there, output comes here, a window
    resize is passed on (SIGWINCH -> a resize message -> TIOCSWINSZ there)."""

    def __init__(self, conn: PtyConnection, interactive: bool):
        self.conn, self.interactive = conn, interactive
        self.stdin = sys.stdin.fileno()
        self.stdout = sys.stdout.fileno()
        self.resized = False

    def run(self) -> int:
        saved = termios.tcgetattr(self.stdin) if self.interactive else None
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        old_wakeup = signal.set_wakeup_fd(wake_w)
        old_winch = signal.signal(signal.SIGWINCH, self._on_winch)
        try:
            if saved is not None:
                tty.setraw(self.stdin, termios.TCSANOW)  # keep what was typed ahead
            return self._loop(wake_r)
        finally:
            if saved is not None:
                termios.tcsetattr(self.stdin, termios.TCSADRAIN, saved)
            signal.signal(signal.SIGWINCH, old_winch)
            signal.set_wakeup_fd(old_wakeup)
            os.close(wake_r)
            os.close(wake_w)

    def _on_winch(self, *_: Any) -> None:
        self.resized = True

    def _loop(self, wake_r: int) -> int:
        reading = True
        while True:
            if not self.conn.pending():
                try:
                    ready, _, _ = select.select([self.conn, wake_r] + ([self.stdin] if reading else []), [], [], 1.0)
                except KeyboardInterrupt:  # not a terminal here: ^C is passed on as one
                    self.conn.send(b"\x03")
                    continue
            else:
                ready = [self.conn]
            if wake_r in ready:
                os.read(wake_r, 512)
            if self.resized:
                self.resized = False
                self.conn.resize(*_size())
            if self.conn in ready:
                msg = self.conn.recv()
                if isinstance(msg, Exited):
                    if msg.reason and msg.code != 0:
                        sys.stderr.write(f"\r\ngpufleet: {msg.reason}\r\n")
                    return msg.code
                if isinstance(msg, Output):
                    view = memoryview(msg.data)
                    while view:
                        view = view[os.write(self.stdout, view):]
            if reading and self.stdin in ready:
                data = os.read(self.stdin, 4096)
                if data:
                    self.conn.send(data)
                else:  # EOF: passed on as ^D (EOF at the start of a line there); nothing more to read
                    reading = False
                    if not self.interactive:
                        self.conn.send(b"\x04")

"""The run directory of the local executor and the few file/process primitives it is built on.

Every run of a job (an attempt: the first, and one more per requeue) has a directory of its own,
so a requeued job starts afresh and the logs of earlier runs stay readable:

    RUN_DIR/jobs/<job id>/attempt-<n>/      n = 1, 2, ... (Job.attempt; GPUFLEET_ATTEMPT)
        job.json          what was launched (for people; poll does not need it)
        launch-failed     why launch gave up (then the job ends FAILED)
        rank-<r>/
            launched      O_EXCL marker: this rank of this attempt was (being) spawned; never twice
            launch.env    NUL-separated K=V the shim adds to its environment for the command
            shim.json     {pid, start} of the shim, written by the launcher right after the spawn
            shim.log      the shim's own stdout/stderr (tracebacks if it ever crashes)
            pid.json      written by the shim once the command runs (see shim.py)
            output.log    the command's stdout+stderr (read with no link followed: logfile.py)
            stop          a stop request: "cancel" | "gang" | "lost" | "abort" (first writer wins)
            exit.json     written by the shim when the command ended: the rank's result

Run directories of an older gpufleet (rank-<r>/ right under jobs/<job id>/) are read as attempt 1.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpufleet.executors.local.shim import proc_start


@dataclass(frozen=True, slots=True)
class RankPaths:
    dir: Path

    @property
    def marker(self) -> Path:
        return self.dir / "launched"

    @property
    def env(self) -> Path:
        return self.dir / "launch.env"

    @property
    def shim(self) -> Path:
        return self.dir / "shim.json"

    @property
    def shim_log(self) -> Path:
        return self.dir / "shim.log"

    @property
    def pid(self) -> Path:
        return self.dir / "pid.json"

    @property
    def output(self) -> Path:
        return self.dir / "output.log"

    @property
    def stop(self) -> Path:
        return self.dir / "stop"

    @property
    def exit(self) -> Path:
        return self.dir / "exit.json"


@dataclass(frozen=True, slots=True)
class JobPaths:
    """The directory of one attempt of a job."""

    root: Path

    @classmethod
    def of(cls, run_dir: Path, job_id: int, attempt: int = 1) -> JobPaths:
        job_dir = run_dir / "jobs" / str(job_id)
        root = job_dir / f"attempt-{attempt}"
        if attempt == 1 and not root.is_dir() and (job_dir / "rank-0").is_dir():
            return cls(job_dir)  # laid out by an older gpufleet: its only run
        return cls(root)

    def parts(self, run_dir: Path) -> tuple[str, ...]:
        """The attempt directory as names below `run_dir` (for opening level by level)."""
        return self.root.relative_to(run_dir).parts

    @property
    def meta(self) -> Path:
        return self.root / "job.json"

    @property
    def launch_failed(self) -> Path:
        return self.root / "launch-failed"

    def rank(self, r: int) -> RankPaths:
        return RankPaths(self.root / f"rank-{r}")

    def existing_ranks(self) -> list[int]:
        if not self.root.is_dir():
            return []
        return sorted(int(p.name[5:]) for p in self.root.glob("rank-*") if p.name[5:].isdigit())


def _tmp(path: Path) -> Path:
    return path.with_name(f"{path.name}.tmp{os.getpid()}.{os.urandom(4).hex()}")


def read_json(path: Path) -> dict[str, Any] | None:
    """The object in `path`, or None when it is missing or unreadable (files are renamed in whole)."""
    try:
        with open(path, "rb") as f:
            obj = json.load(f)
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def write_json(path: Path, obj: dict[str, Any]) -> None:
    tmp = _tmp(path)
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    tmp = _tmp(path)
    tmp.write_bytes(data)
    os.replace(tmp, path)


def create_exclusive(path: Path, text: str = "") -> bool:
    """Create `path` holding `text` unless it exists (atomic: readers never see it half-written)."""
    if path.exists():
        return False
    tmp = _tmp(path)
    tmp.write_text(text)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def alive(pid: int | None, start: int | None) -> bool:
    """Is `pid` running (not a zombie) and still the process that started at `start`?"""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (not Linux): existence is all we can know
        return _exists(pid)
    rest = data[data.rindex(b")") + 2:].split()
    if rest[0] in (b"Z", b"X"):
        return False
    return start is None or int(rest[19]) == start


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_process(pid: int | None, start: int | None, signum: int) -> bool:
    """Signal `pid` if it is still the same process. True when sent."""
    if not alive(pid, start):
        return False
    try:
        os.kill(pid, signum)  # type: ignore[arg-type]
        return True
    except OSError:
        return False


def kill_group(pgid: int | None, leader_start: int | None) -> None:
    """SIGKILL an orphaned process group whose leader is still the process we started."""
    if pgid and alive(pgid, leader_start):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass


__all__ = [
    "JobPaths", "RankPaths", "alive", "create_exclusive", "kill_group", "proc_start", "read_json",
    "signal_process", "write_bytes_atomic", "write_json",
]

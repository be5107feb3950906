"""The allocation directory of one CI job, shared by the runner's programs and the agent (stdlib
only: the agent runs inside the allocation). `<builds_dir>/.gpufleet/<CI_JOB_ID>/`, 0700:

  state.json   prepare, right after the submission: {"job_id": N, "ci_job_id": "..."}
  heartbeat    its mtime says the runner's programs are alive (prepare and run touch it each second;
               the agent ends, releasing the GPUs, when it is older than its heartbeat timeout)
  ready.json   the agent, once the allocation runs: {"job_id", "node", "gpus", "pid"}
  release      cleanup: the agent ends with exit 0
  stages/<NNN>-<stage>/script      run: the runner's script of one sub-stage (renamed into place whole)
                      /output.log  the script's stdout and stderr, appended as it runs
                      /stop        run got SIGTERM: the agent stops the script (TERM, grace, KILL)
                      /exit.json   the agent: {"code": N} once the script ended (128 + N: signal N)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

STATE_DIR = ".gpufleet"
_STAGE = re.compile(r"[A-Za-z0-9_]{1,64}")  # build_script, step_script, step_release, after_script...


def write_json(path: Path, data: Any) -> None:
    """Atomically: readers see the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class StageDir:
    def __init__(self, path: Path):
        self.path = path
        self.name = path.name

    @property
    def script(self) -> Path:
        return self.path / "script"

    @property
    def output(self) -> Path:
        return self.path / "output.log"

    def exit_code(self) -> int | None:
        data = read_json(self.path / "exit.json")
        return data.get("code") if isinstance(data, dict) and isinstance(data.get("code"), int) else None

    def set_exit_code(self, code: int) -> None:
        write_json(self.path / "exit.json", {"code": code})

    def stop(self) -> None:
        (self.path / "stop").touch()

    def stopped(self) -> bool:
        return (self.path / "stop").exists()


class AllocDir:
    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def of(cls, builds_dir: str | Path, ci_job_id: str) -> "AllocDir":
        return cls(Path(builds_dir) / STATE_DIR / ci_job_id)

    def create(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path.mkdir(mode=0o700, exist_ok=True)
        (self.path / "stages").mkdir(mode=0o700, exist_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    # prepare / cleanup
    def state(self) -> dict | None:
        data = read_json(self.path / "state.json")
        return data if isinstance(data, dict) and isinstance(data.get("job_id"), int) else None

    def write_state(self, data: dict) -> None:
        write_json(self.path / "state.json", data)

    def release(self) -> None:
        if self.path.is_dir():
            (self.path / "release").touch()

    def released(self) -> bool:
        return (self.path / "release").exists()

    # heartbeat
    def beat(self) -> None:
        (self.path / "heartbeat").touch()

    def heartbeat_age(self, now: float | None = None) -> float:
        try:
            return (time.time() if now is None else now) - (self.path / "heartbeat").stat().st_mtime
        except OSError:
            return float("inf")

    # agent
    def ready(self) -> dict | None:
        data = read_json(self.path / "ready.json")
        return data if isinstance(data, dict) else None

    def write_ready(self, data: dict) -> None:
        write_json(self.path / "ready.json", data)

    # stages
    def add_stage(self, stage: str, script: bytes) -> StageDir:
        """A new stage directory holding `script`, renamed into place whole (the agent never sees
        half a script)."""
        if not _STAGE.fullmatch(stage):
            raise ValueError(f"stage name {stage!r} is not a runner stage")
        stages = self.path / "stages"
        n = 1 + max((int(p.name[:3]) for p in stages.iterdir() if p.name[:3].isdigit()), default=0)
        tmp = stages / f".new-{os.getpid()}-{n:03d}"
        tmp.mkdir(mode=0o700)
        fd = os.open(tmp / "script", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
        with os.fdopen(fd, "wb") as f:
            f.write(script)
        final = stages / f"{n:03d}-{stage}"
        os.rename(tmp, final)
        return StageDir(final)

    def next_stage(self) -> StageDir | None:
        """The oldest stage not yet started (no output.log) nor finished."""
        try:
            names = sorted(p.name for p in (self.path / "stages").iterdir() if p.name[:3].isdigit())
        except OSError:
            return None
        for name in names:
            s = StageDir(self.path / "stages" / name)
            if not s.output.exists() and s.exit_code() is None:
                return s
        return None

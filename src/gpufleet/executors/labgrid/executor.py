"""The labgrid executor: embedded boards as nodes, through a real labgrid-coordinator.

Places are nodes: `nodes()` turns every place (or the configured ones) into a node of kind
`embedded`, its tags into labels (soc, board, carrier, jetpack, gpu -> GPU model). A job:
`launch` acquires (locks) the job's place as gpufleet's identity, then starts a detached runner
(runner.py) that powers, flashes, waits for SSH, runs the command over labgrid's SSHDriver, captures
the serial console, and releases the place at the end. State lives in files under
<home>/labgrid/runs/<job>-a<attempt>/ (job.json, runner.pid, output.log, serial.log, status.json),
so a restarted server re-adopts a running board job from them; a place left acquired by gpufleet
with no live runner behind it (a crash between acquire and start, a runner killed) is released by
the next `nodes()`. A board whose power-on, flash or SSH fails is drained with the reason (kept in
<home>/labgrid/drains.json, as are admin drains: labgrid has no drain of its own) and handed to the
health loop's remediation (health.py: `board_health`, wired by gpufleet.main).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import psutil

from gpufleet.domain import Gpu, Job, Node, NodeKind, NodeState, ValidationError
from gpufleet.executors.base import (
    FOREIGN_GPUS_LABEL, Ability, EngineUnavailable, ExecutorBase, LogChunk, Observation, Phase,
    attempt_view, master_port_for, rank_env,
)
from gpufleet.executors.labgrid.config import LABEL_TAGS, LabgridConfig
from gpufleet.executors.labgrid.coordinator import Coordinator, PlaceInfo, holder
from gpufleet.executors.labgrid.health import HEALTH_PREFIX, GoldenChecks, health_drain
from gpufleet.executors.logfile import UnsafeLog, read_chunk, refusal

LOG_CHUNK = 1 << 20
_PHASES = {"succeeded": Phase.SUCCEEDED, "failed": Phase.FAILED, "timeout": Phase.TIMEOUT,
           "cancelled": Phase.CANCELLED}


class LabgridExecutor(ExecutorBase):
    name = "labgrid"
    abilities = frozenset({Ability.NODES, Ability.DRAIN, Ability.LOGS, Ability.ADOPT})

    def __init__(self, config: LabgridConfig, home: Path, coordinator: Coordinator | None = None):
        self.config = config
        self.dir = Path(home) / "labgrid"
        self.runs = self.dir / "runs"
        self.runs.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.coordinator = coordinator or Coordinator(config.coordinator, config.identity, config.timeout_s)
        self._lock = threading.Lock()
        self._places: dict[str, PlaceInfo] = {}
        self._starting_places: set[str] = set()  # acquired by a health run whose runner is not up yet
        self.golden = GoldenChecks(self)
        self.board_health = self.golden  # the health loop's handle (services/health.py add_boards)

    # files ------------------------------------------------------------------------------------
    def run_dir(self, job_id: int, attempt: int) -> Path:
        return self.runs / f"{job_id}-a{attempt}"

    def _drains(self) -> dict[str, str]:
        try:
            return json.loads((self.dir / "drains.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def _set_drain(self, node: str, reason: str | None) -> None:
        with self._lock:
            drains = self._drains()
            if reason is None:
                drains.pop(node, None)
            else:
                drains[node] = reason
            tmp = self.dir / "drains.json.tmp"
            tmp.write_text(json.dumps(drains))
            os.replace(tmp, self.dir / "drains.json")

    @staticmethod
    def _runner_alive(run: Path) -> bool:
        try:
            pid, started = (run / "runner.pid").read_text().split()
            proc = psutil.Process(int(pid))
            if abs(proc.create_time() - float(started)) >= 1.0:
                return False  # the pid was reused
            if proc.status() == psutil.STATUS_ZOMBIE:  # ended; our child when this server started it
                try:
                    os.waitpid(int(pid), os.WNOHANG)
                except ChildProcessError:
                    pass
                return False
            return True
        except (FileNotFoundError, ValueError, psutil.Error):
            return False

    @staticmethod
    def _status(run: Path) -> dict | None:
        try:
            return json.loads((run / "status.json").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def _hold(self, place: str, run: Path) -> None:
        """Remember which run holds `place` (read by _release_orphans), before acquiring it."""
        held = self.dir / "held"
        held.mkdir(exist_ok=True, mode=0o700)
        (held / place).write_text(str(run))

    @contextmanager
    def _starting(self, place: str):
        with self._lock:
            self._starting_places.add(place)
        try:
            yield
        finally:
            with self._lock:
                self._starting_places.discard(place)

    def _held_by_live_runner(self, place: str) -> bool:
        try:
            run = Path((self.dir / "held" / place).read_text())
        except FileNotFoundError:
            return False
        return not (run / "status.json").exists() and self._runner_alive(run)

    # nodes ------------------------------------------------------------------------------------
    def nodes(self) -> list[Node]:
        places = self.coordinator.places()
        self._places = places
        self.golden.remember(places)
        self._release_orphans(places)
        checking = self.golden.step(places, self._drains())
        drains = self._drains()
        ours = holder(self.config.identity)
        out = []
        for name in sorted(places):
            if self.config.places and name not in self.config.places:
                continue
            node = self._node(places[name], drains.get(name), ours)
            if name in checking:  # the golden check holds the board: no job lands there meanwhile
                node.labels[FOREIGN_GPUS_LABEL] = "n:1"
                node.labels["board-health"] = "checking"
            out.append(node)
        return out

    def _node(self, p: PlaceInfo, drained: str | None, ours: str) -> Node:
        tags = dict(p.tags)
        labels = {k: v for k, v in tags.items() if k not in ("arch",)}
        model = tags.get("gpu", "embedded")
        gpus = (Gpu(0, model.lower()),)
        if p.acquired and p.acquired != ours:  # someone works on it outside gpufleet
            labels[FOREIGN_GPUS_LABEL] = "n:1"
            labels["labgrid-acquired"] = p.acquired
        for key in LABEL_TAGS:
            if key in tags:
                labels[key] = tags[key]
        state = NodeState.DRAIN if drained else NodeState.UP
        return Node(name=p.name, kind=NodeKind.EMBEDDED, arch=tags.get("arch", self.config.arch),
                    labels=labels, gpus=gpus, state=state, reason=drained or "")

    def _release_orphans(self, places: dict[str, PlaceInfo]) -> None:
        ours = holder(self.config.identity)
        for name, p in places.items():
            if p.acquired == ours and name not in self._starting_places and not self._held_by_live_runner(name):
                self.coordinator.release(name)

    def drain(self, node: str, reason: str) -> None:
        self._set_drain(node, reason)

    def resume(self, node: str) -> None:
        self._set_drain(node, None)

    # jobs -------------------------------------------------------------------------------------
    def launch(self, job: Job) -> str:
        if len(job.allocation) != 1:
            raise ValidationError("nodes", f"a board job runs on one board, not {len(job.allocation)}")
        if job.spec.image:
            raise ValidationError("image", "the labgrid engine runs commands on the board, not container images")
        place = job.allocation[0].node
        run = self.run_dir(job.id, job.attempt)
        handle = f"labgrid:{place}:{job.id}-a{job.attempt}"
        if (run / "runner.pid").exists():
            return handle  # launched before (idempotent)
        if place in self.golden.running() or self._held_by_live_runner(place):
            raise EngineUnavailable(f"board {place} is being health-checked or reflashed")
        run.mkdir(parents=True, exist_ok=True, mode=0o700)
        (run / "job.json").write_text(json.dumps(self._job_file(job, place)))
        self._hold(place, run)
        self.coordinator.acquire(place)  # EngineUnavailable: someone holds it; retried next cycle
        self._spawn(run)
        return handle

    @staticmethod
    def _spawn(run: Path) -> None:
        """The runner of `run`, detached (its own session: a server's kill -9 leaves it running)."""
        with open(run / "runner.log", "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gpufleet.executors.labgrid.runner", str(run)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True)
        started = psutil.Process(proc.pid).create_time()
        (run / "runner.pid").write_text(f"{proc.pid} {started}")

    def _job_file(self, job: Job, place: str) -> dict:
        c = self.config
        env = {**job.spec.env, **rank_env(job, 0, "127.0.0.1", master_port_for(job.id))}
        board = job.spec.board.to_dict() if getattr(job.spec, "board", None) else {}
        info = self._places.get(place)
        return {
            "job_id": job.id, "attempt": job.attempt, "place": place, "command": list(job.spec.command),
            "env": env, "time_limit_s": job.spec.time_limit_s, "coordinator": c.coordinator,
            "identity": c.identity, "ssh_key": c.ssh_key, "ssh_timeout_s": c.ssh_timeout_s,
            "power_cycle": c.power_cycle, "power_off_after": c.power_off_after, "serial": c.serial,
            "flash_command": c.flash_command, "flash_timeout_s": c.flash_timeout_s,
            "board": board, "tags": dict(info.tags) if info else {},
        }

    def poll(self, jobs: Sequence[Job]) -> list[Observation]:
        out = []
        for job in jobs:
            run = self.run_dir(job.id, job.attempt)
            status = self._status(run)
            if status is None and (run / "runner.pid").exists() and self._runner_alive(run):
                out.append(Observation(job.id, Phase.RUNNING))
                continue
            status = status or self._status(run)  # it may have just finished
            if status is None:
                if (run / "runner.pid").exists() or job.handle is not None:
                    out.append(self._lost(job, run))
                continue
            out.append(self._ended(job, run, status))
        return out

    def _ended(self, job: Job, run: Path, status: dict) -> Observation:
        place = job.allocation[0].node if job.allocation else ""
        if status.get("drain") and place and not (run / "drained").exists():
            drained = self._drains().get(place)
            if not drained or health_drain(drained):  # an admin's drain stays as it is
                self._set_drain(place, HEALTH_PREFIX + status["drain"])
            self.golden.events.add(place, "board", False, status["drain"], status.get("at") or time.time(),
                                   job=job.id, attempt=job.attempt)
            (run / "drained").touch()
        if not status.get("released") and place:
            self._release_quietly(place)
        return Observation(job.id, _PHASES.get(status.get("phase"), Phase.FAILED), status.get("exit_code"),
                           status.get("reason", ""), at=status.get("at"))

    def _lost(self, job: Job, run: Path) -> Observation:
        if job.allocation:
            self._release_quietly(job.allocation[0].node)
        if (run / "cancel").exists():  # the cancel stopped the runner before it could say so
            return Observation(job.id, Phase.CANCELLED, reason="cancelled")
        return Observation(job.id, Phase.LOST, reason="the board job's runner is gone (no exit status)")

    def _release_quietly(self, place: str) -> None:
        try:
            self.coordinator.release(place)
        except EngineUnavailable:
            pass  # the next nodes() releases it: no live runner stands behind it

    def cancel(self, job: Job) -> None:
        run = self.run_dir(job.id, job.attempt)
        if run.exists():
            (run / "cancel").touch()
        if self._runner_alive(run):
            pid = int((run / "runner.pid").read_text().split()[0])
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        elif self._status(run) is None and run.exists():
            if job.allocation:
                self._release_quietly(job.allocation[0].node)
            (run / "status.json").write_text(json.dumps(
                {"phase": "cancelled", "exit_code": None, "reason": "cancelled before the board job started",
                 "released": True}))

    def logs(self, job: Job, offset: int = 0, rank: int = 0, attempt: int | None = None) -> LogChunk:
        view, over = attempt_view(job, attempt)
        if rank != 0:
            raise ValidationError("rank", f"job {job.id} has no rank {rank} (a board job has one)")
        run = self.run_dir(job.id, view.attempt)
        ended = over or self._status(run) is not None
        try:
            data, size = read_chunk(self.runs, (run.name, "output.log"), offset, LOG_CHUNK)
        except FileNotFoundError:
            return LogChunk(b"", offset, ended, note="" if ended else "no output yet")
        except UnsafeLog:
            return LogChunk(b"", offset, True, note=refusal("the board job's output"))
        return LogChunk(data, offset + len(data), ended and offset + len(data) >= size)

    def close(self) -> None:
        self.coordinator.close()

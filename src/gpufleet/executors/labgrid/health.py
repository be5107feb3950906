"""Board health, after LAVA's health checks.

Detection, here in the engine: on a schedule a golden check runs on each idle board (the place is
acquired, the board optionally power-cycled, and `golden_command` run over SSH: e.g. the expected
JetPack release in /etc/nv_tegra_release and `tegrastats` answering); a failing check, like a
job's failed power-on, flash or SSH, drains the board at once with the reason (`board health: …`),
so no job lands there before the health loop has seen it. Every verdict also goes into an event
log (<home>/labgrid/health/events.jsonl) that the server's health loop reads.

Remediation, in the health loop (services/health.py, the same Remediator, table and tickets as the
servers'): a failing verdict starts a remediation whose runbook step is `reflash()` (the golden
image through the farm's flashing strategy) and whose re-check is `check()` (the golden check);
resumed when it passes, a ticket after the last failed round. The health loop `attach()`es itself:
from then on the engine never lifts a drain and leaves drained boards to the remediation.
Without a health loop attached (or with remediation off), a drained board is re-checked on the
schedule and resumed here when a check passes, as before. An admin's drain is never touched.

The checks are the same runner as jobs (runner.py), in <home>/labgrid/health/<place>-<n>/; the
executor's `nodes()` starts and reads the scheduled ones, so they need no thread of their own;
`reflash()` and `check()` block (the health loop's remediation worker threads call them).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

from gpufleet.executors.base import EngineUnavailable

HEALTH_PREFIX = "board health: "  # drains board health may lift again
REMEDIATION_PREFIX = "health: "  # drains of the health loop's remediation (health/remediation.py)
HISTORY = 50  # verdicts kept per board in its state file


def health_drain(reason: str | None) -> bool:
    """A drain board health or the health loop set (not an admin's)."""
    return bool(reason) and (reason.startswith(HEALTH_PREFIX) or reason.startswith(REMEDIATION_PREFIX))


class BoardEvents:
    """The verdicts for the health loop: one JSON line each in `path`; the loop acknowledges the
    offset it has stored up to (`<path>.offset`), so a crash between reading and storing re-reads
    (at least once) and a restart loses none."""

    def __init__(self, path: Path):
        self.path = path
        self.offset_path = path.with_name(path.name + ".offset")
        self._lock = threading.Lock()

    def add(self, place: str, check: str, ok: bool, message: str, at: float, **facts: Any) -> None:
        line = json.dumps({"place": place, "check": check, "ok": ok, "message": message, "at": at,
                           "facts": facts}) + "\n"
        with self._lock, open(self.path, "a") as f:
            f.write(line)

    def unread(self) -> tuple[list[dict], int]:
        with self._lock:
            start = self._offset()
            try:
                with open(self.path, "rb") as f:
                    f.seek(start)
                    data = f.read()
            except FileNotFoundError:
                return [], start
        data = data[: data.rfind(b"\n") + 1]
        events = []
        for line in data.splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        return events, start + len(data)

    def ack(self, offset: int) -> None:
        with self._lock:
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                size = 0
            if offset >= size > 0:  # all read: start the log afresh (it never grows unbounded)
                self.path.unlink()
                offset = 0
            tmp = self.offset_path.with_name(self.offset_path.name + ".tmp")
            tmp.write_text(str(offset))
            tmp.replace(self.offset_path)

    def _offset(self) -> int:
        try:
            return int(self.offset_path.read_text())
        except (FileNotFoundError, ValueError):
            return 0


class GoldenChecks:
    def __init__(self, executor, clock: Callable[[], float] = time.time):
        self.ex = executor
        self.config = executor.config
        self.dir = executor.dir / "health"
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.clock = clock
        self.events = BoardEvents(self.dir / "events.jsonl")
        self.managed = False  # a health loop runs the remediation (attach())
        self._lock = threading.Lock()
        self._known_file = self.dir / "places"  # the farm's boards as last seen (a restart with the
        try:  # coordinator down still knows which nodes are boards)
            self._known = frozenset(self._known_file.read_text().split())
        except FileNotFoundError:
            self._known = frozenset()

    @property
    def enabled(self) -> bool:
        return bool(self.config.golden_command)

    def _state(self, place: str) -> dict:
        try:
            return json.loads((self.dir / f"{place}.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def _save(self, place: str, state: dict) -> None:
        tmp = self.dir / f"{place}.json.tmp"
        tmp.write_text(json.dumps(state))
        tmp.replace(self.dir / f"{place}.json")

    def running(self) -> dict[str, Path]:
        """Place -> run directory of the scheduled checks under way."""
        out = {}
        for f in self.dir.glob("*.json"):
            run = self._state(f.stem).get("run")
            if run:
                out[f.stem] = Path(run)
        return out

    # the health loop's side ------------------------------------------------------------------
    def attach(self, managed: bool = True) -> None:
        """The health loop takes the verdicts (`unread`/`ack`); `managed`: and remediates."""
        self.managed = managed

    def owns(self, node: str) -> bool:
        """Whether `node` is one of this farm's boards (as of the last `nodes()` that reached it)."""
        return node in self._known and (not self.config.places or node in self.config.places)

    def remember(self, places) -> None:
        names = frozenset(places)
        if names != self._known:
            self._known = names
            tmp = self._known_file.with_name("places.tmp")
            tmp.write_text("\n".join(sorted(names)))
            tmp.replace(self._known_file)

    def unread(self) -> tuple[list[dict], int]:
        return self.events.unread()

    def ack(self, offset: int) -> None:
        self.events.ack(offset)

    def admin_drained(self, node: str) -> bool:
        reason = self.ex._drains().get(node)
        return bool(reason) and not health_drain(reason)

    def reflash(self, place: str) -> tuple[bool, str, dict]:
        """Remediation: the golden image through the flashing strategy (power off, flash_command,
        power on, SSH answers); without golden_image or flash_command, a power-cycle."""
        c = self.config
        if c.golden_image and c.flash_command:
            board, what = {"image": c.golden_image, "flash": True}, f"reflashed with {c.golden_image}"
        else:
            board, what = {"power_cycle": True}, "power-cycled (no golden_image and flash_command to reflash with)"
        status, run = self.run_now(place, "reflash", "true", board, True,
                                   c.flash_timeout_s + c.ssh_timeout_s + 120)
        ok = status.get("phase") == "succeeded"
        return ok, what if ok else f"reflash failed: {status.get('reason', '')}", {"run": str(run)}

    def check(self, place: str) -> tuple[bool, str, dict]:
        """The golden check now (without golden_command: the board boots and answers SSH)."""
        c = self.config
        status, run = self.run_now(place, "check", c.golden_command or "true", {}, c.golden_power_cycle,
                                   c.golden_timeout_s + c.ssh_timeout_s + 120)
        ok = status.get("phase") == "succeeded"
        reason = status.get("reason", "")
        self._record(place, ok, reason, event=False)  # the health loop stores this verdict itself
        return ok, "golden check passed" if ok else f"golden check failed: {reason}", {"run": str(run)}

    def run_now(self, place: str, what: str, command: str, board: dict, power_cycle: bool,
                timeout_s: float, poll_s: float = 0.2) -> tuple[dict, Path]:
        """Acquire the place, run `command` on the board through the runner, wait for its end."""
        run = self.dir / f"{place}-{what}-{time.time_ns()}"
        run.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = self.ex._places.get(place)
        job = self._job(place, 1, command, what, power_cycle, board, self.config.golden_timeout_s)
        job["tags"] = dict(info.tags) if info else {}
        (run / "job.json").write_text(json.dumps(job))
        deadline = time.monotonic() + timeout_s
        while self.ex._held_by_live_runner(place):  # e.g. a reflash of the server before a restart
            if time.monotonic() > deadline:
                return {"phase": "failed", "reason": "the place is still held by an earlier run"}, run
            time.sleep(poll_s)
        with self.ex._starting(place):  # not released as an orphan before its runner is up
            self.ex._hold(place, run)
            try:
                self.ex.coordinator.acquire(place)
            except EngineUnavailable as e:
                return {"phase": "failed", "reason": f"could not acquire the place: {e}"}, run
            self.ex._spawn(run)
        deadline = time.monotonic() + timeout_s
        while (status := self._status(run)) is None:
            if time.monotonic() > deadline:
                self._stop(run)
                status = self.ex._status(run) or {"phase": "failed", "reason": f"no end within {timeout_s:.0f}s"}
                break
            time.sleep(poll_s)
        if not status.get("released"):
            self.ex._release_quietly(place)
        return status, run

    def _status(self, run: Path) -> dict | None:
        status = self.ex._status(run)
        if status is None and not self.ex._runner_alive(run):
            status = self.ex._status(run) or {"phase": "failed", "reason": "the runner died"}
        return status

    def _stop(self, run: Path, grace_s: float = 20.0) -> None:
        try:
            os.kill(int((run / "runner.pid").read_text().split()[0]), signal.SIGTERM)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return
        deadline = time.monotonic() + grace_s
        while self.ex._runner_alive(run) and time.monotonic() < deadline:
            time.sleep(0.2)

    # the schedule (the executor's nodes()) ---------------------------------------------------
    def step(self, places: dict, drains: dict[str, str]) -> set[str]:
        """Read finished checks, start due ones; the places being checked now."""
        if not self.enabled:
            return set()
        busy = set()
        for name, p in places.items():
            if self.config.places and name not in self.config.places:
                continue
            state = self._state(name)
            if state.get("run"):
                if not self._finished(name, state, drains):
                    busy.add(name)
                continue
            drained = drains.get(name)
            if drained and (self.managed or not drained.startswith(HEALTH_PREFIX)):
                continue  # an admin's drain: left alone; managed: the remediation re-checks it
            if p.acquired or self.clock() - state.get("last_at", 0) < self.config.golden_every_s \
                    or self.ex._held_by_live_runner(name):  # a remediation's run (an admin resumed meanwhile)
                continue
            if self._start(name, state):
                busy.add(name)
        return busy

    def _finished(self, place: str, state: dict, drains: dict[str, str]) -> bool:
        run = Path(state["run"])
        status = self.ex._status(run)
        if status is None:
            if self.ex._runner_alive(run):
                return False
            status = self.ex._status(run) or {"phase": "failed", "reason": "the check's runner died"}
        if not status.get("released"):
            self.ex._release_quietly(place)
        ok = status.get("phase") == "succeeded"
        reason = status.get("reason", "")
        self._record(place, ok, reason, run=None)
        drained = drains.get(place)
        if not ok and (drained is None or drained.startswith(HEALTH_PREFIX)):
            self.ex._set_drain(place, f"{HEALTH_PREFIX}golden check failed: {reason}")
        elif ok and not self.managed and drained and drained.startswith(HEALTH_PREFIX):
            self.ex._set_drain(place, None)
            drains.pop(place, None)
        return True

    def _record(self, place: str, ok: bool, reason: str, event: bool = True, **more: Any) -> None:
        """A verdict: the board's history (the last 50, for flakiness) and the health loop's log."""
        now = self.clock()
        with self._lock:
            state = self._state(place)
            state.update(more, last_at=now, ok=ok, reason=reason)
            history = state.setdefault("history", [])
            history.append([now, ok])
            del history[:-HISTORY]
            self._save(place, state)
        if event:
            self.events.add(place, "golden", ok, "golden check passed" if ok else f"golden check failed: {reason}", now)

    def _job(self, place: str, n: int, command: str, kind: str, power_cycle: bool, board: dict,
             time_limit_s: int) -> dict:
        c = self.config
        return {
            "job_id": f"health-{place}", "attempt": n, "place": place,
            "command": ["sh", "-c", command], "env": {"GPUFLEET_HEALTH_CHECK": kind},
            "time_limit_s": time_limit_s, "coordinator": c.coordinator, "identity": c.identity,
            "ssh_key": c.ssh_key, "ssh_timeout_s": c.ssh_timeout_s, "power_cycle": power_cycle,
            "power_off_after": False, "serial": c.serial, "flash_command": c.flash_command,
            "flash_timeout_s": c.flash_timeout_s, "board": board,
        }

    def _start(self, place: str, state: dict) -> bool:
        n = int(state.get("n", 0)) + 1
        run = self.dir / f"{place}-{n}"
        run.mkdir(parents=True, exist_ok=True, mode=0o700)
        c = self.config
        job = self._job(place, n, c.golden_command, "golden", c.golden_power_cycle, {}, c.golden_timeout_s)
        job["flash_command"] = ""
        (run / "job.json").write_text(json.dumps(job))
        self.ex._hold(place, run)
        try:
            self.ex.coordinator.acquire(place)
        except EngineUnavailable:
            return False
        self.ex._spawn(run)
        with self._lock:
            state = self._state(place)
            state.update(run=str(run), n=n)
            self._save(place, state)
        return True

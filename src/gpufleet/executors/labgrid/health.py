"""Board health, after LAVA's health checks: on a schedule (and for a board drained by a failed
power-on, flash or SSH), a golden check runs on each idle board: the place is acquired, the board
(optionally) power-cycled, and `golden_command` run over SSH (e.g. the expected JetPack release in
/etc/nv_tegra_release and `tegrastats` answering). A failing check drains the board with the
reason; a passing one resumes a board that board health drained (never an admin's drain).

The checks are the same runner as jobs (runner.py), in <home>/labgrid/health/<place>-<n>/; the
executor's `nodes()` starts and reads them, so they need no thread of their own.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from gpufleet.executors.base import EngineUnavailable

HEALTH_PREFIX = "board health: "  # drains board health may lift again


class GoldenChecks:
    def __init__(self, executor, clock: Callable[[], float] = time.time):
        self.ex = executor
        self.config = executor.config
        self.dir = executor.dir / "health"
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.clock = clock

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
        """Place -> run directory of the checks under way."""
        out = {}
        for f in self.dir.glob("*.json"):
            run = self._state(f.stem).get("run")
            if run:
                out[f.stem] = Path(run)
        return out

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
            if drained and not drained.startswith(HEALTH_PREFIX):
                continue  # an admin's drain: left alone
            if p.acquired or self.clock() - state.get("last_at", 0) < self.config.golden_every_s:
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
        state.update(run=None, last_at=self.clock(), ok=ok, reason=status.get("reason", ""))
        history = state.setdefault("history", [])  # flakiness per board: the last 50 verdicts
        history.append([state["last_at"], ok])
        del history[:-50]
        self._save(place, state)
        if not ok:
            self.ex._set_drain(place, f"{HEALTH_PREFIX}golden check failed: {status.get('reason', '')}")
        elif drains.get(place, "").startswith(HEALTH_PREFIX):
            self.ex._set_drain(place, None)
            drains.pop(place, None)
        return True

    def _start(self, place: str, state: dict) -> bool:
        n = int(state.get("n", 0)) + 1
        run = self.dir / f"{place}-{n}"
        run.mkdir(parents=True, exist_ok=True, mode=0o700)
        c = self.config
        job = {
            "job_id": f"health-{place}", "attempt": n, "place": place,
            "command": ["sh", "-c", c.golden_command], "env": {"GPUFLEET_HEALTH_CHECK": "golden"},
            "time_limit_s": c.golden_timeout_s, "coordinator": c.coordinator, "identity": c.identity,
            "ssh_key": c.ssh_key, "ssh_timeout_s": c.ssh_timeout_s, "power_cycle": c.golden_power_cycle,
            "power_off_after": False, "serial": c.serial, "flash_command": "", "board": {},
        }
        (run / "job.json").write_text(json.dumps(job))
        self.ex._hold(place, run)
        try:
            self.ex.coordinator.acquire(place)
        except EngineUnavailable:
            return False
        self.ex._spawn(run)
        state.update(run=str(run), n=n)
        self._save(place, state)
        return True

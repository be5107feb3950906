"""Reading what the shims left on disk, and judging a whole job (gang) from its ranks.

Only files and /proc are read here: no subprocess calls, so `poll` stays cheap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from gpufleet.executors.base import Phase
from gpufleet.executors.local.files import JobPaths, RankPaths, alive, read_json

COLLATERAL = frozenset({"gang", "lost", "abort"})  # stops we made because another rank went bad


class RankState(str, Enum):
    UNLAUNCHED = "unlaunched"  # no marker: launch never reached this rank
    STARTING = "starting"  # spawned, the command is not running yet
    RUNNING = "running"
    ENDED = "ended"  # exit.json written
    LOST = "lost"  # the shim is gone without a result, or the launch was interrupted


@dataclass(slots=True)
class RankView:
    rank: int
    state: RankState
    result: dict[str, Any] = field(default_factory=dict)  # exit.json
    pids: dict[str, Any] = field(default_factory=dict)  # pid.json
    reason: str = ""

    @property
    def active(self) -> bool:
        return self.state in (RankState.STARTING, RankState.RUNNING)

    @property
    def exit_code(self) -> int | None:
        return self.result.get("exit_code")

    @property
    def collateral(self) -> bool:
        return self.result.get("stopped_by") in COLLATERAL

    @property
    def bad(self) -> bool:
        """This rank dooms the gang: lost, timed out, cancelled, or failed on its own."""
        if self.state is RankState.LOST:
            return True
        if self.state is not RankState.ENDED:
            return False
        r = self.result
        return bool(r.get("timed_out") or r.get("cancelled") or (self.exit_code and not self.collateral))


def view_rank(paths: RankPaths, rank: int, launch_timeout_s: float) -> RankView:
    """One rank as the files and /proc show it now."""
    result = read_json(paths.exit)
    if result is not None:
        return RankView(rank, RankState.ENDED, result)
    pids = read_json(paths.pid)
    if pids is not None:
        if alive(pids.get("shim_pid"), pids.get("shim_start")):
            return RankView(rank, RankState.RUNNING, pids=pids)
        return _gone(paths, rank, pids, f"rank {rank}: its supervisor (pid {pids.get('shim_pid')}) "
                     "vanished without a result")
    if not paths.marker.exists():
        return RankView(rank, RankState.UNLAUNCHED)
    shim = read_json(paths.shim)
    if shim is not None:
        if alive(shim.get("pid"), shim.get("start")):
            return RankView(rank, RankState.STARTING)
        return _gone(paths, rank, {}, f"rank {rank}: its supervisor died before starting the "
                     f"command{_tail(paths)}")
    try:
        age = time.time() - paths.marker.stat().st_mtime
    except FileNotFoundError:
        return RankView(rank, RankState.UNLAUNCHED)
    if age > launch_timeout_s:
        return RankView(rank, RankState.LOST, reason=f"rank {rank}: launch interrupted")
    return RankView(rank, RankState.STARTING)


def _gone(paths: RankPaths, rank: int, pids: dict[str, Any], reason: str) -> RankView:
    result = read_json(paths.exit)  # it may have finished between our two reads
    if result is not None:
        return RankView(rank, RankState.ENDED, result)
    return RankView(rank, RankState.LOST, pids=pids, reason=reason)


def _tail(paths: RankPaths) -> str:
    try:
        lines = paths.shim_log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return f": {lines[-1][:200]}" if lines else ""


@dataclass(frozen=True, slots=True)
class Verdict:
    phase: Phase
    exit_code: int | None = None
    reason: str = ""
    at: float | None = None


def judge(views: list[RankView], launch_failed: str | None, time_limit_s: int | None) -> Verdict:
    """The job's phase from its ranks. Ended only once no rank is active (GPUs are free)."""
    if any(v.active for v in views):
        all_starting = all(v.state is not RankState.RUNNING for v in views)
        return Verdict(Phase.STARTING if all_starting else Phase.RUNNING)
    ended = [v for v in views if v.state is RankState.ENDED]
    at = max((v.result.get("ended_at") or 0.0 for v in ended), default=0.0) or None
    if launch_failed is not None:
        return Verdict(Phase.FAILED, None, f"launch failed: {launch_failed}", at)
    timed = [v for v in ended if v.result.get("timed_out")]
    if timed:
        limit = f" ({time_limit_s}s)" if time_limit_s else ""
        return Verdict(Phase.TIMEOUT, timed[0].exit_code, f"time limit{limit} reached", at)
    cancelled = [v for v in ended if v.result.get("cancelled")]
    if cancelled:
        return Verdict(Phase.CANCELLED, cancelled[0].exit_code, "cancelled", at)
    lost = [v for v in views if v.state is RankState.LOST]
    if lost:
        return Verdict(Phase.LOST, None, lost[0].reason, at)
    return _exit_verdict(ended, at)


def _exit_verdict(ended: list[RankView], at: float | None) -> Verdict:
    failed = [v for v in ended if v.exit_code != 0]
    if not failed:
        return Verdict(Phase.SUCCEEDED, 0, "", at)
    own = [v for v in failed if not v.collateral] or failed
    first = min(own, key=lambda v: v.result.get("ended_at") or 0.0)
    return Verdict(Phase.FAILED, first.exit_code, describe_exit(first), at)


def describe_exit(v: RankView) -> str:
    if v.result.get("error"):
        return f"rank {v.rank}: {v.result['error']}"
    code = v.exit_code
    if code is not None and code > 128:
        return f"rank {v.rank} exited with {code} (killed by signal {code - 128})"
    return f"rank {v.rank} exited with {code}"


def view_job(paths: JobPaths, ranks: int, launch_timeout_s: float) -> list[RankView]:
    return [view_rank(paths.rank(r), r, launch_timeout_s) for r in range(ranks)]

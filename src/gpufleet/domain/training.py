"""Resilient training runs: what a job says about restarts, hangs and elastic size.

`--restart never | on-node-fault | on-failure[:N]` (spec `restart`): when a run of the job ends
for a reason that is not its own success, is it run again as a new attempt?

- `on-node-fault` (the default): only when the run was lost to the infrastructure — a node went
  down, failed its health checks, lost a rank, or the job's heartbeat stopped (a hang) — not when
  the command exited non-zero. This is what gangs want: a NCCL error after a node loss is a fault,
  a bug in train.py is not.
- `on-failure[:N]`: also when the command exited non-zero (N: at most N such restarts, faults
  and failures together; without N, at most DEFAULT_MAX_FAILURES).
- `never`: a fault ends the job FAILED.

Preemption is not a failure: whether a preempted job goes back to the queue is `requeue`.
`--heartbeat 10m` (spec `heartbeat`): the run must touch $GPUFLEET_HEARTBEAT_FILE (or write output)
at least that often, or it is treated as hung and restarted. `--nodes 6:8` (spec `nodes` as MIN:MAX):
an elastic gang runs on up to MAX nodes and may (re)start on as few as MIN when no more are free.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gpufleet.domain.errors import ValidationError
from gpufleet.domain.units import MAX_INT, parse_duration

RESTART_MODES = ("never", "on-node-fault", "on-failure")
DEFAULT_MAX_FAILURES = 10  # on-failure without :N; Kubernetes' backoffLimit default is 6, torchrun's 3
MIN_HEARTBEAT_S = 5
_RESTART = re.compile(r"(never|on-node-fault|on-failure)(?::(\d+))?")
_NODES = re.compile(r"\s*(\d+)\s*(?::\s*(\d+)\s*)?")


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    mode: str = "on-node-fault"
    max: int | None = None  # restarts after faults/failures; None: unbounded (faults) or the default

    def allows(self, fault: bool, failures: int) -> bool:
        """May a run that ended so (fault: lost to the infrastructure; else a non-zero exit) be
        restarted, given the job already had `failures` such restarts?"""
        if self.mode == "never" or (not fault and self.mode != "on-failure"):
            return False
        limit = self.max if self.max is not None else (DEFAULT_MAX_FAILURES if self.mode == "on-failure" else None)
        return limit is None or failures < limit

    def __str__(self) -> str:
        return self.mode if self.max is None else f"{self.mode}:{self.max}"


DEFAULT_RESTART = RestartPolicy()


def parse_restart(value: Any) -> str | None:
    """`never`, `on-node-fault`, `on-failure` or `on-failure:3` -> the canonical string (None: default)."""
    if value is None or value == "":
        return None
    m = _RESTART.fullmatch(str(value).strip())
    if not m:
        raise ValidationError("restart", f"expected never, on-node-fault or on-failure[:N], got {value!r}")
    if m.group(2) is not None and not 0 <= int(m.group(2)) <= MAX_INT:
        raise ValidationError("restart", f"N must be between 0 and {MAX_INT}")
    if m.group(1) == "never" and m.group(2) is not None:
        raise ValidationError("restart", "never takes no :N")
    return str(RestartPolicy(m.group(1), int(m.group(2)) if m.group(2) is not None else None))


def restart_policy(text: str | None, requeue: bool = True) -> RestartPolicy:
    """The stored canonical string -> the policy. Unset: on-node-fault, or never for a job that
    asked for no requeue (what --no-requeue always meant for a job on a node that went down)."""
    if not text:
        return DEFAULT_RESTART if requeue else RestartPolicy("never")
    mode, _, n = text.partition(":")
    return RestartPolicy(mode, int(n) if n else None)


def parse_heartbeat(value: Any) -> int | None:
    """`10m`, `90s`, 600 -> seconds (None: no heartbeat)."""
    seconds = parse_duration(value, "heartbeat")
    if seconds is not None and seconds < MIN_HEARTBEAT_S:
        raise ValidationError("heartbeat", f"must be at least {MIN_HEARTBEAT_S}s, got {seconds}s")
    return seconds


def parse_nodes(value: Any) -> tuple[int, int | None]:
    """`8` -> (8, None); `6:8` -> (8, 6): the most nodes and, for an elastic gang, the fewest."""
    if isinstance(value, bool):
        raise ValidationError("nodes", f"must be an integer or MIN:MAX, got {value!r}")
    if isinstance(value, int):
        return _node_count(value), None
    m = _NODES.fullmatch(str(value))
    if not m:
        raise ValidationError("nodes", f"must be an integer or MIN:MAX like 6:8, got {value!r}")
    if m.group(2) is None:
        return _node_count(int(m.group(1))), None
    low, high = _node_count(int(m.group(1))), _node_count(int(m.group(2)))
    if low > high:
        raise ValidationError("nodes", f"MIN:MAX with MIN <= MAX, got {low}:{high}")
    return high, (low if low < high else None)


def _node_count(n: int) -> int:
    if n < 1:
        raise ValidationError("nodes", f"must be >= 1, got {n}")
    if n > MAX_INT:
        raise ValidationError("nodes", f"must be <= {MAX_INT}, got {n}")
    return n

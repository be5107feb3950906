"""Burn-in: after the runbook, run a real workload on the node before it takes jobs again.

`SchedulerBurnIn` submits a job through gpufleet pinned to the node (constraint
`gpufleet.io/node=<node>`, tenant `ops`) and waits for its outcome; the scheduler must allow
jobs with that constraint on a DRAINED node (see docs/health.md). `CommandBurnIn` runs a command
directly (single-host labs, or `dcgmi diag -r 3` on the server's own node).

```yaml
burn_in: {command: ["dcgmi", "diag", "-r", "3"], gpus: all, time_limit: 1h, tenant: ops, timeout: 6h}
```
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from gpufleet.domain import JobSpec, JobState, Node, ValidationError, parse_duration
from gpufleet.health.remediation import StepResult
from gpufleet.health.script import first_line, run_command

NODE_CONSTRAINT = "gpufleet.io/node"
DEFAULT_COMMAND = ("nvidia-smi",)


@dataclass(frozen=True, slots=True)
class BurnInSpec:
    command: tuple[str, ...] = DEFAULT_COMMAND
    gpus: int | None = None  # None: all GPUs of the node
    time_limit_s: int = 3600
    tenant: str = "ops"
    priority: int = 1_000_000
    timeout_s: float = 6 * 3600.0  # how long to wait for queueing (running jobs) plus the run

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> BurnInSpec:
        command = cfg.get("command") or DEFAULT_COMMAND
        if isinstance(command, str):
            raise ValidationError("health.remediation.burn_in.command", "a list of arguments, not a string")
        gpus = cfg.get("gpus", "all")
        return cls(
            command=tuple(str(c) for c in command),
            gpus=None if gpus in (None, "all") else int(gpus),
            time_limit_s=parse_duration(cfg.get("time_limit", 3600), "burn_in.time_limit") or 3600,
            tenant=str(cfg.get("tenant", "ops")),
            timeout_s=float(parse_duration(cfg.get("timeout", 6 * 3600), "burn_in.timeout") or 6 * 3600),
        )


def burn_in_job_spec(node: Node, spec: BurnInSpec) -> JobSpec:
    """The job a burn-in submits: every (or `spec.gpus`) GPU of `node`, pinned to it."""
    gpus = len(node.gpus) if spec.gpus is None else min(spec.gpus, len(node.gpus))
    return JobSpec(
        command=spec.command, gpus=gpus, nodes=1, time_limit_s=spec.time_limit_s,
        tenant=spec.tenant, priority=spec.priority, name=f"burn-in-{node.name}",
        constraints={NODE_CONSTRAINT: node.name}, requeue=False,
    )


@dataclass
class SchedulerBurnIn:
    submit: Callable[[JobSpec], int]  # returns the job id
    state_of: Callable[[int], tuple[JobState, str]]  # (state, reason) of that job
    node_of: Callable[[str], Node]
    spec: BurnInSpec = field(default_factory=BurnInSpec)
    cancel: Callable[[int], None] | None = None
    poll_s: float = 5.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def __call__(self, node: str) -> StepResult:
        job_spec = burn_in_job_spec(self.node_of(node), self.spec)
        job_id = self.submit(job_spec)
        deadline = self.clock() + self.spec.timeout_s
        while True:
            state, reason = self.state_of(job_id)
            if state.terminal:
                ok = state is JobState.SUCCEEDED
                return StepResult(ok, f"burn-in job {job_id} {state.value}" + (f": {reason}" if reason else ""),
                                  {"job_id": job_id, "state": state.value})
            if self.clock() >= deadline:
                if self.cancel is not None:
                    self.cancel(job_id)
                return StepResult(False, f"burn-in job {job_id} still {state.value} after "
                                         f"{self.spec.timeout_s:g}s", {"job_id": job_id, "state": state.value})
            self.sleep(self.poll_s)


@dataclass
class CommandBurnIn:
    """Run the burn-in command from the server, `{node}` in any argument replaced by the node name
    (e.g. `srun -w {node} ...`, `ssh {node} dcgmi diag -r 3`), GPUFLEET_NODE set; exit 0 passes.
    ssh hands its arguments to a remote shell and reads `-o...` as options, so a node name that is
    not a plain host name (`[A-Za-z0-9_.-]`, not starting with `-`) fails the step unrun."""

    command: tuple[str, ...]
    timeout_s: float = 3600.0

    def __call__(self, node: str) -> StepResult:
        if re.fullmatch(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*", node, re.ASCII) is None:
            return StepResult(False, f"node {node!r} is not a plain host name: burn-in not run")
        argv = [a.replace("{node}", node) for a in self.command]
        try:
            done = run_command(argv, self.timeout_s, {"GPUFLEET_NODE": node})
        except OSError as e:
            return StepResult(False, f"cannot run {self.command[0]}: {e.strerror or e}")
        line = first_line(done.stdout, done.stderr)
        if done.rc is None:
            return StepResult(False, f"burn-in timed out after {self.timeout_s:g}s", {"rc": None})
        return StepResult(done.rc == 0, f"burn-in exit {done.rc}" + (f": {line}" if line else ""), {"rc": done.rc})

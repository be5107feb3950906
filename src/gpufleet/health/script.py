"""Script checks with Slurm HealthCheckProgram / NHC conventions, and `dcgmi diag -r N`.

A script check is any executable: exit 0 = healthy, anything else = unhealthy (codes listed in
`warn_codes` = warning), the first line of stdout (else stderr) is the reason. It gets
GPUFLEET_NODE and GPUFLEET_CHECK in its environment, and is killed (with its process group) after
`timeout_s`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from gpufleet.health.types import CheckContext, CheckResult, Status


@dataclass(frozen=True, slots=True)
class Completed:
    rc: int | None  # None: timed out
    stdout: str
    stderr: str


def run_command(argv: list[str], timeout_s: float, env: Mapping[str, str]) -> Completed:
    """Run argv in its own process group; on timeout kill the whole group."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **env}, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
        return Completed(proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        return Completed(None, out or "", err or "")


def first_line(*texts: str) -> str:
    for t in texts:
        for line in (t or "").splitlines():
            if line.strip():
                return line.strip()[:500]
    return ""


@dataclass
class ScriptCheck:
    name: str
    argv: list[str]
    timeout_s: float = 60.0
    requeue_on_fail: bool = False
    warn_codes: frozenset[int] = frozenset()
    env: Mapping[str, str] = field(default_factory=dict)

    def run(self, ctx: CheckContext) -> CheckResult:
        env = {**self.env, "GPUFLEET_NODE": ctx.node.name, "GPUFLEET_CHECK": self.name}
        try:
            done = run_command(list(self.argv), self.timeout_s, env)
        except OSError as e:
            return CheckResult.fail(f"cannot run {self.argv[0]}: {e.strerror or e}", argv=list(self.argv))
        reason = first_line(done.stdout, done.stderr)
        facts = {"argv": list(self.argv), "rc": done.rc}
        if done.rc is None:
            return CheckResult(Status.FAIL, f"timed out after {self.timeout_s:g}s" + (f": {reason}" if reason else ""),
                               facts)
        if done.rc == 0:
            return CheckResult(Status.OK, reason or "ok", facts)
        status = Status.WARN if done.rc in self.warn_codes else Status.FAIL
        return CheckResult(status, reason or f"exit code {done.rc}", facts)


@dataclass
class DcgmDiagCheck:
    """`dcgmi diag -r LEVEL -j`: any test with status Fail fails, Warn warns."""

    name: str = "dcgm"
    level: int = 1
    timeout_s: float = 600.0
    binary: str = "dcgmi"
    requeue_on_fail: bool = False

    def run(self, ctx: CheckContext) -> CheckResult:
        argv = [self.binary, "diag", "-r", str(self.level), "-j"]
        try:
            done = run_command(argv, self.timeout_s, {"GPUFLEET_NODE": ctx.node.name})
        except OSError as e:
            return CheckResult.fail(f"cannot run {self.binary}: {e.strerror or e}")
        if done.rc is None:
            return CheckResult.fail(f"dcgmi diag -r {self.level} timed out after {self.timeout_s:g}s")
        try:
            report = json.loads(done.stdout)
        except ValueError:
            reason = first_line(done.stdout, done.stderr) or f"exit code {done.rc}"
            status = Status.OK if done.rc == 0 else Status.FAIL
            return CheckResult(status, f"dcgmi diag -r {self.level}: {reason}", {"rc": done.rc})
        return self._verdict(report, done.rc)

    def _verdict(self, report: Any, rc: int) -> CheckResult:
        tests = list(walk_dcgm(report))
        failed = [f"{t}: {d}" if d else t for t, s, d in tests if s == "fail"]
        warned = [f"{t}: {d}" if d else t for t, s, d in tests if s == "warn"]
        facts = {"rc": rc, "level": self.level,
                 "tests": {t: s for t, s, _ in tests}, "failed": failed, "warned": warned}
        if failed:
            return CheckResult(Status.FAIL, f"dcgmi diag -r {self.level} failed: " + "; ".join(failed), facts)
        if rc != 0:
            return CheckResult(Status.FAIL, f"dcgmi diag -r {self.level} exited {rc}", facts)
        if warned:
            return CheckResult(Status.WARN, f"dcgmi diag -r {self.level} warnings: " + "; ".join(warned), facts)
        return CheckResult(Status.OK, f"dcgmi diag -r {self.level}: {len(tests)} results pass", facts)


def walk_dcgm(obj: Any, test: str = "") -> Iterator[tuple[str, str, str]]:
    """(test name, pass|fail|warn|skip, detail) for every result in a DCGM 3 or 4 JSON report."""
    if isinstance(obj, list):
        for item in obj:
            yield from walk_dcgm(item, test)
        return
    if not isinstance(obj, dict):
        return
    name = str(obj.get("name") or obj.get("test_name") or test)
    status = obj.get("status")
    if isinstance(status, str) and "results" not in obj:
        where = obj.get("gpu_ids", obj.get("entity_id", ""))
        label = f"{name} (GPU {where})" if where not in ("", None) else name
        yield label, status.strip().lower(), _detail(obj)
        return
    for key, value in obj.items():
        if isinstance(value, (dict, list)):
            yield from walk_dcgm(value, name)


def _detail(obj: dict) -> str:
    for key in ("warnings", "warning", "info", "error"):
        value = obj.get(key)
        if isinstance(value, list):
            value = "; ".join(v.get("message", str(v)) if isinstance(v, dict) else str(v) for v in value)
        if value:
            return str(value)[:300]
    return ""

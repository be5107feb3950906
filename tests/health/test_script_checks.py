"""Script checks (real small executables), dcgmi (a real executable that prints DCGM JSON), disk, memory."""

from __future__ import annotations

import json
import os
import stat
import time
from collections import namedtuple
from pathlib import Path

import pytest

from gpufleet.domain import Node
from gpufleet.health.config import parse_health
from gpufleet.health.script import DcgmDiagCheck, ScriptCheck
from gpufleet.health.system_checks import DiskCheck, MemoryCheck
from gpufleet.health.types import CheckContext, Status

NODE = Node(name="node-a", mem_mb=64 * 1024)


def ctx() -> CheckContext:
    return CheckContext(node=NODE, now=time.time())


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_exit_zero_is_healthy_with_first_line_as_message(tmp_path):
    path = script(tmp_path, "ok.sh", 'echo "all fine on $GPUFLEET_NODE"\necho second line\n')
    r = ScriptCheck("site", [path]).run(ctx())
    assert r.status is Status.OK
    assert r.message == "all fine on node-a"
    assert r.facts["rc"] == 0


def test_nonzero_exit_fails_with_reason(tmp_path):
    path = script(tmp_path, "bad.sh", 'echo "IB port mlx5_0 down"\nexit 1\n')
    r = ScriptCheck("ib", [path]).run(ctx())
    assert r.status is Status.FAIL and r.message == "IB port mlx5_0 down"


def test_warn_codes_and_stderr_fallback(tmp_path):
    path = script(tmp_path, "warn.sh", 'echo "fan 2 slow" >&2\nexit 3\n')
    r = ScriptCheck("fans", [path], warn_codes=frozenset({3})).run(ctx())
    assert r.status is Status.WARN and r.message == "fan 2 slow"
    silent = script(tmp_path, "silent.sh", "exit 7\n")
    assert ScriptCheck("s", [silent]).run(ctx()).message == "exit code 7"


def test_timeout_kills_the_process_group(tmp_path):
    marker = tmp_path / "child-survived"
    path = script(tmp_path, "hang.sh", f'echo "checking"\n(sleep 3; touch {marker}) &\nsleep 30\n')
    t0 = time.monotonic()
    r = ScriptCheck("hang", [path], timeout_s=0.5).run(ctx())
    assert time.monotonic() - t0 < 5
    assert r.status is Status.FAIL and r.message == "timed out after 0.5s: checking"
    time.sleep(3.5)
    assert not marker.exists()  # the background child was killed with its group


def test_missing_executable_fails(tmp_path):
    r = ScriptCheck("gone", [str(tmp_path / "nope")]).run(ctx())
    assert r.status is Status.FAIL and "cannot run" in r.message


DCGM_PASS = {"DCGM GPU Diagnostic": {"test_categories": [
    {"category": "Deployment", "tests": [
        {"name": "Denylist", "results": [{"status": "Pass"}]},
        {"name": "NVML Library", "results": [{"status": "Pass"}]}]},
    {"category": "Integration", "tests": [
        {"name": "PCIe", "results": [{"gpu_ids": "0", "status": "Skip"}]}]}]}}
DCGM_FAIL = {"DCGM Diagnostic": {"test_categories": [
    {"category": "Hardware", "tests": [
        {"name": "memory", "results": [
            {"entity_group": "GPU", "entity_id": 1, "status": "Fail",
             "warnings": [{"message": "DBE detected on GPU 1"}]},
            {"entity_group": "GPU", "entity_id": 0, "status": "Pass"}]}]}]}}


def fake_dcgmi(tmp_path: Path, report: dict | None, rc: int, text: str = "") -> str:
    data = tmp_path / "report.json"
    data.write_text(json.dumps(report) if report is not None else text)
    args = tmp_path / "args"
    return script(tmp_path, "dcgmi", f'echo "$@" > {args}\ncat {data}\nexit {rc}\n')


def test_dcgm_pass(tmp_path):
    binary = fake_dcgmi(tmp_path, DCGM_PASS, 0)
    r = DcgmDiagCheck(level=2, binary=binary).run(ctx())
    assert r.status is Status.OK, r
    assert (tmp_path / "args").read_text().strip() == "diag -r 2 -j"
    assert r.facts["tests"]["Denylist"] == "pass"


def test_dcgm_fail_names_the_test_and_gpu(tmp_path):
    binary = fake_dcgmi(tmp_path, DCGM_FAIL, 226)
    r = DcgmDiagCheck(binary=binary).run(ctx())
    assert r.status is Status.FAIL
    assert r.message == "dcgmi diag -r 1 failed: memory (GPU 1): DBE detected on GPU 1"


def test_dcgm_non_json_output(tmp_path):
    binary = fake_dcgmi(tmp_path, None, 1, text="Error: unable to connect to host engine\n")
    r = DcgmDiagCheck(binary=binary).run(ctx())
    assert r.status is Status.FAIL and "unable to connect to host engine" in r.message


def test_dcgm_enabled_only_when_on_path(tmp_path):
    assert not [c for c in parse_health({}, which=lambda b: None).checks if c.name == "dcgm"]
    binary = fake_dcgmi(tmp_path, DCGM_PASS, 0)
    checks = parse_health({"dcgm": {"binary": binary, "level": 3}}, which=lambda b: b).checks
    dcgm = [c for c in checks if c.name == "dcgm"][0]
    assert dcgm.level == 3 and dcgm.run(ctx()).status is Status.OK


Usage = namedtuple("Usage", "total used free percent")
Mem = namedtuple("Mem", "total available")


def test_disk_check_on_real_path_and_thresholds(tmp_path):
    real = DiskCheck(paths=(str(tmp_path),)).run(ctx())
    assert real.facts["paths"][str(tmp_path)]["total_gb"] > 0
    impossible = DiskCheck(paths=(str(tmp_path),), fail_free_pct=100.1).run(ctx())
    assert impossible.status is Status.FAIL
    gib = 1024**3
    low = DiskCheck(paths=("/data",), usage=lambda p: Usage(100 * gib, 92 * gib, 8 * gib, 92.0)).run(ctx())
    assert low.status is Status.WARN and low.message == "/data: 8.0 GiB free (8.0%)"
    gone = DiskCheck(paths=(str(tmp_path / "missing"),)).run(ctx())
    assert gone.status is Status.FAIL


def test_memory_check(tmp_path):
    assert MemoryCheck().run(ctx()).facts["total_mb"] > 0
    mib = 1024 * 1024
    starving = MemoryCheck(probe=lambda: Mem(64 * 1024 * mib, 1 * 1024 * mib)).run(ctx())
    assert starving.status is Status.FAIL and starving.message == "only 1.6% memory available"
    dimm = MemoryCheck(compare_inventory=True, probe=lambda: Mem(48 * 1024 * mib, 40 * 1024 * mib))
    r = dimm.run(ctx())
    assert r.status is Status.FAIL and r.message == "49152 MiB total, inventory says 65536 MiB"


def test_config_builds_checks_and_rejects_typos(tmp_path):
    path = script(tmp_path, "nhc", "exit 0\n")
    s = parse_health({"interval": "2m", "checks": {"thermal": {"on_fail": "requeue", "max_temp_c": 80},
                                                   "persistence": {"enabled": False}},
                      "scripts": [{"path": path, "timeout": "5s"}]}, which=lambda b: None)
    names = [c.name for c in s.checks]
    assert s.interval_s == 120 and "persistence" not in names and names[-1] == "nhc"
    thermal = [c for c in s.checks if c.name == "thermal"][0]
    assert thermal.requeue_on_fail is True and thermal.max_temp_c == 80
    with pytest.raises(Exception, match="health.checks.thermal.max_temp"):
        parse_health({"checks": {"thermal": {"max_temp": 80}}})
    with pytest.raises(Exception, match="health.nvml"):
        parse_health({"nvml": "maybe"})
    off = [c.name for c in parse_health({"nvml": "off"}, which=lambda b: None).checks]
    assert off == ["disk", "memory"]
    assert os.access(path, os.X_OK)

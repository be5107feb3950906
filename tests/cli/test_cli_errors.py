"""The CLI's contract for bad input: exit 2, one line naming the field, no traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent / "gpufleet"


def run(*args, **env):
    e = {**os.environ, "GPUFLEET_URL": "http://127.0.0.1:9", "GPUFLEET_TOKEN": "x", **env}
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, env=e, timeout=60)


@pytest.mark.parametrize("args,field", [
    (["submit", "--gpus", "0", "--", "true"], "gpus"),
    (["submit", "--time-limit", "whenever", "--", "true"], "time_limit"),
    (["submit", "--mem", "lots", "--", "true"], "mem"),
    (["submit", "--env", "NOEQUALS", "--", "true"], "env"),
    (["submit"], "command"),
    (["submit", "--gpus", "x", "--", "true"], "--gpus"),
    (["jobs", "--bogus"], "--bogus"),
])
def test_bad_input_exits_2_without_reaching_the_server(args, field):
    r = run(*args)
    assert r.returncode == 2, r.stderr
    assert field in r.stderr and "Traceback" not in r.stderr


def test_unreachable_server_is_a_clear_error():
    r = run("jobs")
    assert r.returncode == 1
    assert "cannot reach gpufleet" in r.stderr and "Traceback" not in r.stderr


def test_bad_job_file(tmp_path):
    f = tmp_path / "job.yaml"
    f.write_text("gpus: [1\n")
    r = run("submit", str(f))
    assert r.returncode == 2 and "file" in r.stderr

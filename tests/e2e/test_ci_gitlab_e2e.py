"""A three-stage GitLab CI job played through `gpufleet ci gitlab ...` the way gitlab-runner's
custom executor calls its programs (docs.gitlab.com/runner/executors/custom): config_exec, then
prepare_exec, then run_exec <script> <stage> once per sub-stage, then cleanup_exec, each a fresh
process with the job's variables as CUSTOM_ENV_*, BUILD_FAILURE_EXIT_CODE / SYSTEM_FAILURE_EXIT_CODE
and (for run) BUILD_EXIT_CODE_FILE in its environment, stopped with SIGTERM on cancel or timeout.
Against a real `gpufleet serve` on the local engine. No gitlab-runner binary is used (none is
available from our package registries)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import BIN

pytestmark = pytest.mark.e2e

BUILD_FAILURE, SYSTEM_FAILURE = 41, 42  # the runner chooses them; not the defaults, on purpose


class Runner:
    """Plays gitlab-runner: the programs, their arguments and environment, a temp dir of scripts."""

    def __init__(self, server, tmp: Path, ci_job_id: str, variables: dict[str, str]):
        self.server, self.tmp = server, tmp
        self.builds = tmp / "builds"
        self.scripts = tmp / f"scripts-{ci_job_id}"
        self.scripts.mkdir()
        self.variables = {"CI_JOB_ID": ci_job_id, "CI_PROJECT_PATH": "lab/kernels", "CI_PIPELINE_ID": "7",
                          "CI_COMMIT_SHA": "0123abcd", "CI_PROJECT_PATH_SLUG": "lab-kernels",
                          "CI_SERVER_HOST": "gitlab.example.com", **variables}
        self.log = b""  # the CI job log: every program's stdout and stderr, in order

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in self.server.env.items() if not k.startswith("CUSTOM_ENV_")}
        env.update({f"CUSTOM_ENV_{k}": v for k, v in self.variables.items()})
        env.update(BUILD_FAILURE_EXIT_CODE=str(BUILD_FAILURE), SYSTEM_FAILURE_EXIT_CODE=str(SYSTEM_FAILURE),
                   **extra)
        return env

    def argv(self, program: str, *args: str) -> list[str]:
        return [str(BIN), "ci", "gitlab", "--builds-dir", str(self.builds), "--report-every", "1",
                "--heartbeat-timeout", "20", program, *args]

    def call(self, program: str, *args: str, timeout: float = 90, **extra: str) -> int:
        r = subprocess.run(self.argv(program, *args), env=self.env(**extra), capture_output=True,
                           timeout=timeout)
        self.log += r.stdout + r.stderr
        return r.returncode

    def start(self, program: str, *args: str, **extra: str) -> subprocess.Popen:
        return subprocess.Popen(self.argv(program, *args), env=self.env(**extra), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)

    def script(self, stage: str, body: str) -> Path:
        """A script as the runner writes it: bash, exporting the job's variables itself."""
        path = self.scripts / f"script-{stage}"
        exports = "".join(f"export {k}={json.dumps(v)}\n" for k, v in self.variables.items())
        path.write_text(f"#!/usr/bin/env bash\nset -eo pipefail\n{exports}{body}\n")
        return path

    def run(self, stage: str, body: str) -> tuple[int, str]:
        """run_exec <script> <stage>: (exit code, the real code written to BUILD_EXIT_CODE_FILE)."""
        code_file = self.scripts / f"exit-code-{stage}"
        rc = self.call("run", str(self.script(stage, body)), stage, BUILD_EXIT_CODE_FILE=str(code_file))
        return rc, code_file.read_text().strip() if code_file.exists() else ""

    def allocation(self) -> int:
        return json.loads((self.builds / ".gpufleet" / self.variables["CI_JOB_ID"] / "state.json").read_text())["job_id"]


def gpus_in_use(server, node: str) -> int:
    return next(n["gpus_allocated"] for n in server.cli_json("nodes") if n["name"] == node)


def test_a_three_stage_ci_job_waits_runs_on_its_gpus_and_reports_real_exit_codes(server, tmp_path):
    # the lab's only orin GPU is busy: the allocation must wait, saying why
    blocker = server.submit("--gpu-model", "orin", "--gpus", "1", "--", "sleep", "600")
    server.wait_state(blocker, {"RUNNING"})
    ci = Runner(server, tmp_path, "1001", {"GPUFLEET_GPU_MODEL": "orin", "GPUFLEET_GPUS": "1",
                                           "GPUFLEET_TIME_LIMIT": "10m", "GPUFLEET_TOKEN_UNUSED": "x"})
    config = subprocess.run(ci.argv("config"), env=ci.env(), capture_output=True, text=True, timeout=60)
    assert config.returncode == 0 and json.loads(config.stdout)["builds_dir"] == str(ci.builds)

    prep = ci.start("prepare")
    deadline = time.monotonic() + 30
    while b"pending" not in ci.log and time.monotonic() < deadline:
        ci.log += os.read(prep.stdout.fileno(), 4096)  # the reason reaches the CI log while it waits
    assert b"pending: " in ci.log, ci.log
    time.sleep(1.5)
    server.cli("cancel", str(blocker))
    out, _ = prep.communicate(timeout=60)
    ci.log += out
    assert prep.returncode == 0, ci.log
    job_id = ci.allocation()
    assert server.cli_json("show", str(job_id))["nodes"] == ["orin1"]
    assert ci.log.count(b"pending: ") >= 2, ci.log  # repeated every --report-every seconds
    assert b"running on orin1" in ci.log

    # stage 1 and 2 succeed, with the allocation's GPU; the output appears in the CI log
    assert ci.run("get_sources", 'echo "sources for $CI_PROJECT_PATH"') == (0, "")
    rc = ci.run("step_script", 'echo "gpus=$CUDA_VISIBLE_DEVICES node=$GPUFLEET_NODE job=$GPUFLEET_JOB_ID"')
    assert rc == (0, "")
    assert f"gpus=0 node=orin1 job={job_id}".encode() in ci.log, ci.log
    # stage 3 fails with 7: the runner gets BUILD_FAILURE_EXIT_CODE, and 7 in BUILD_EXIT_CODE_FILE
    assert ci.run("after_script", "echo failing; exit 7") == (BUILD_FAILURE, "7")
    assert ci.log.index(b"pending: ") < ci.log.index(b"sources for lab/kernels") < ci.log.index(b"failing")
    assert server.cli_json("show", str(job_id))["state"] == "RUNNING"  # held across stages

    assert ci.call("cleanup") == 0
    assert server.wait_state(job_id, {"SUCCEEDED"})["exit_code"] == 0
    assert gpus_in_use(server, "orin1") == 0
    assert not (ci.builds / ".gpufleet" / "1001").exists()
    assert ci.call("cleanup") == 0  # again: no state file, nothing to do
    request = server.cli_json("show", str(job_id))["request"]
    assert request["env"] == {"GPUFLEET_CI_PROJECT": "lab/kernels", "GPUFLEET_CI_PIPELINE": "7",
                              "GPUFLEET_CI_JOB": "1001", "GPUFLEET_CI_COMMIT": "0123abcd"}  # no other CI variable


def test_sigterm_during_run_stops_the_script_and_cleanup_releases_the_gpus(server, tmp_path):
    ci = Runner(server, tmp_path, "1002", {"GPUFLEET_GPU_MODEL": "rtx4090", "GPUFLEET_GPUS": "2"})
    assert ci.call("prepare") == 0, ci.log
    job_id = ci.allocation()
    node = server.cli_json("show", str(job_id))["nodes"][0]
    assert gpus_in_use(server, node) == 2
    marker = tmp_path / "still-running"
    run = ci.start("run", str(ci.script("step_script", f'echo started; sleep 300; touch {marker}')),
                   "step_script", BUILD_EXIT_CODE_FILE=str(tmp_path / "code"))
    seen = b""
    while b"started" not in seen:
        seen += os.read(run.stdout.fileno(), 4096)
    run.send_signal(signal.SIGTERM)  # the CI job was cancelled (or timed out)
    run.communicate(timeout=30)
    assert run.returncode == BUILD_FAILURE
    assert ci.call("cleanup") == 0, ci.log
    assert server.wait_state(job_id, {"SUCCEEDED", "CANCELLED"})
    assert gpus_in_use(server, node) == 0
    assert not marker.exists()


def test_sigterm_while_pending_then_cleanup_cancels_the_allocation(server, tmp_path):
    blocker = server.submit("--gpu-model", "orin", "--gpus", "1", "--", "sleep", "600")
    server.wait_state(blocker, {"RUNNING"})
    ci = Runner(server, tmp_path, "1003", {"GPUFLEET_GPU_MODEL": "orin", "GPUFLEET_CONSTRAINT": "board-rev=B01"})
    prep = ci.start("prepare")
    deadline = time.monotonic() + 30
    while b"pending" not in ci.log and time.monotonic() < deadline:
        ci.log += os.read(prep.stdout.fileno(), 4096)
    prep.send_signal(signal.SIGTERM)  # prepare_exec_timeout, or a cancel
    out, _ = prep.communicate(timeout=30)
    assert prep.returncode == SYSTEM_FAILURE, ci.log + out
    job_id = ci.allocation()
    assert ci.call("cleanup") == 0, ci.log
    assert server.cli_json("show", str(job_id))["state"] == "CANCELLED"
    assert server.cli_json("show", str(blocker))["state"] == "RUNNING"


def test_bad_variables_and_missing_allocation(server, tmp_path):
    ci = Runner(server, tmp_path, "1004", {"GPUFLEET_GPUS": "many"})
    assert ci.call("prepare") == BUILD_FAILURE
    assert b"error: GPUFLEET_GPUS: must be an integer" in ci.log, ci.log
    assert b"Traceback" not in ci.log
    impossible = Runner(server, tmp_path, "1005", {"GPUFLEET_GPUS": "8", "GPUFLEET_CONSTRAINT": "driver=999.99"})
    assert impossible.call("prepare") == BUILD_FAILURE
    assert b"error: GPUFLEET_CONSTRAINT: driver=999.99 matches no node" in impossible.log, impossible.log
    assert server.cli_json("jobs", "--all") == []  # nothing stored
    rc, _ = ci.run("step_script", "echo hi")  # run without prepare: a system failure
    assert rc == SYSTEM_FAILURE and b"no gpufleet allocation" in ci.log
    assert ci.call("cleanup") == 0



@pytest.mark.slurm
def test_a_ci_job_on_slurm_runs_its_stages_inside_the_slurm_allocation(slurm_server, tmp_path):
    ci = Runner(slurm_server, tmp_path, "2001", {"GPUFLEET_GPU_MODEL": "l4", "GPUFLEET_GPUS": "1",
                                                 "GPUFLEET_TIME_LIMIT": "10m"})
    assert ci.call("prepare", timeout=180) == 0, ci.log
    job_id = ci.allocation()
    job = slurm_server.cli_json("show", str(job_id))
    assert job["nodes"] == ["gpu04"] and job["handle"], job  # the only l4 node; a Slurm job id
    rc = ci.run("step_script", 'echo "gpus=$CUDA_VISIBLE_DEVICES node=$GPUFLEET_NODE slurm=$SLURM_JOB_ID"')
    assert rc == (0, ""), ci.log
    slurm_id = job["handle"].split(":")[-1]
    assert f"node=gpu04 slurm={slurm_id}".encode() in ci.log, ci.log  # inside the allocation
    assert ci.run("after_script", "echo failing; exit 7") == (BUILD_FAILURE, "7")
    assert ci.call("cleanup", timeout=180) == 0, ci.log
    assert slurm_server.wait_state(job_id, {"SUCCEEDED"}, timeout=120)["exit_code"] == 0
    squeue = subprocess.run(["squeue", "-h", "-j", slurm_id, "-o", "%T"], capture_output=True, text=True)
    assert squeue.stdout.strip() in ("", "COMPLETED", "COMPLETING"), squeue.stdout

"""The batch script and submit options, without Slurm: the script is run by bash with the variables
Slurm would set (and a stand-in `srun` that starts the per-node tasks in turn)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from gpufleet.domain import Allocation, Job, JobSpec, JobState
from gpufleet.executors.base import master_port_for
from gpufleet.executors.slurm.script import (
    Identity, SubmitRequest, account_name, build_script, constraint_of, gres_of, job_name, rank_log, time_minutes,
)


def make_job(job_id=42, nodes=("gpu02", "gpu01"), gpus=(0, 1), **kw) -> Job:
    spec = JobSpec(command=("sh", "-c", "env > $OUT_DIR/env.$NODE_RANK; echo done"), gpus=len(gpus),
                   nodes=len(nodes), tenant="Vision Team", name="train run", env={"USER_VAR": "x y"}, **kw)
    return Job(job_id, spec, state=JobState.RUNNING, submitted_at=1700000000.5, restarts=1,
               allocation=tuple(Allocation(n, gpus) for n in nodes))


def test_identity_round_trip_and_names():
    job = make_job()
    ident = Identity.of_job("gf", job)
    assert ident.comment() == "gf:42:1:1700000000500:gpu02=0,1;gpu01=0,1"
    assert Identity.parse(ident.comment()) == ident
    assert Identity.parse("some user comment") is None
    assert Identity.parse("") is None
    assert job_name(job) == "gf42-train_run"
    assert account_name("Vision Team") == "vision_team"
    assert time_minutes(1) == 1 and time_minutes(60) == 1 and time_minutes(61) == 2


def test_submit_options():
    job = make_job(gpu_model="a100", time_limit_s=90, cpus=4, mem_mb=2048, constraints={"rack": "r1", "nvlink": "true"})
    assert gres_of(job) == "gpu:a100:2"
    assert constraint_of(job) == "nvlink&rack:r1"
    req = SubmitRequest(script="#!/bin/bash\n", name="n", comment="c", account="a", nodes=2, gres="gpu:a100:2",
                        output="/l/o", cpus_per_task=4, mem_mb=2048, time_minutes=2, nodelist="gpu02,gpu01",
                        reservation="gpufleet_b3")
    args = req.sbatch_args()
    for want in ("--gres=gpu:a100:2", "--nodes=2", "--ntasks-per-node=1", "--nodelist=gpu02,gpu01", "--time=2",
                 "--account=a", "--job-name=n", "--comment=c", "--output=/l/o", "--error=/l/o", "--mem=2048M",
                 "--cpus-per-task=4", "--reservation=gpufleet_b3", "--parsable"):
        assert want in args
    assert not any(a.startswith("--constraint") or a.startswith("--chdir") for a in args)


FAKE_SRUN = """#!/bin/bash
# stand-in for srun: start the task on each node of the allocation, in Slurm's (sorted) order
shift 2  # --ntasks-per-node=1 --kill-on-bad-exit=1
rc=0
SLURMD_NODENAME=gpu01 SLURM_NODEID=0 SLURM_STEP_GPUS=4,5 CUDA_VISIBLE_DEVICES=4,5 "$@" || rc=$?
SLURMD_NODENAME=gpu02 SLURM_NODEID=1 SLURM_STEP_GPUS=0,1 CUDA_VISIBLE_DEVICES=0,1 "$@" || rc=$?
exit $rc
"""


def run_script(tmp_path: Path, script: str) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(FAKE_SRUN)
    (bin_dir / "srun").chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "OUT_DIR": str(tmp_path), "SLURMD_NODENAME": "gpu01",
           "SLURM_NODEID": "0", "SLURM_JOB_GPUS": "4,5", "CUDA_VISIBLE_DEVICES": "4,5",
           "SLURM_JOB_NODELIST": "gpu[01-02]"}
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=20)


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_two_node_script_gives_each_rank_its_env_in_gpufleet_rank_order(tmp_path):
    job = make_job()  # gpufleet put rank 0 on gpu02, rank 1 on gpu01
    script = build_script(job, {"gpu02": "10.0.0.2", "gpu01": "10.0.0.1"}, str(tmp_path), placed=True)
    proc = run_script(tmp_path, script)
    assert proc.returncode == 0, proc.stderr
    r0, r1 = read_env(tmp_path / "env.0"), read_env(tmp_path / "env.1")
    assert (r0["GPUFLEET_NODE"], r1["GPUFLEET_NODE"]) == ("gpu02", "gpu01")
    for rank, env in enumerate((r0, r1)):
        assert env["NODE_RANK"] == env["GPUFLEET_NODE_RANK"] == str(rank)
        assert env["WORLD_SIZE"] == "2" and env["MASTER_ADDR"] == "10.0.0.2"
        assert env["MASTER_PORT"] == str(master_port_for(42))
        assert env["GPUFLEET_JOB_ID"] == "42" and env["GPUFLEET_TENANT"] == "Vision Team"
        assert env["USER_VAR"] == "x y" and env["GPUFLEET_NODELIST"] == "gpu02,gpu01"
    # the GPU ids are the ones Slurm allocated on each node
    assert r0["CUDA_VISIBLE_DEVICES"] == r0["NVIDIA_VISIBLE_DEVICES"] == r0["GPUFLEET_GPUS"] == "0,1"
    assert r1["CUDA_VISIBLE_DEVICES"] == "4,5"
    # rank 0 writes to the batch output (stdout here), rank 1 to its own file
    assert proc.stdout.strip() == "done"
    assert Path(rank_log(str(tmp_path), job, 1)).read_text().strip() == "done"


def test_exit_code_of_the_command_is_the_script_exit_code(tmp_path):
    job = make_job(nodes=("gpu01",))
    job.spec = JobSpec(command=("sh", "-c", "exit 7"), gpus=2)
    proc = run_script(tmp_path, build_script(job, {}, str(tmp_path), placed=True))
    assert proc.returncode == 7

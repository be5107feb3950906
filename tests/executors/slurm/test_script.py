"""The batch script and submit options, without Slurm: the script is run by bash with the variables
Slurm would set (and a stand-in `srun` that starts the per-node tasks in turn)."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gpufleet.domain import Allocation, Job, JobSpec, JobState
from gpufleet.domain.perf import parse_perf
from gpufleet.executors.base import Ability, master_port_for
from gpufleet.executors.slurm.script import (
    Identity, PerfSteps, SubmitRequest, account_name, build_script, constraint_of, gres_of, job_dir, job_name,
    checkpoint_dir, rank_log, time_minutes,
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
                 "--cpus-per-task=4", "--reservation=gpufleet_b3", "--parsable", "--no-requeue"):
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


# ------------------------------------------------------------------------------ hostile input

HOSTILE_ARGS = (
    "a\n#SBATCH --qos=high", "\n#SBATCH --exclusive\n#SBATCH --partition=admin", "x'; touch $OUT_DIR/pwned1; '",
    '"; touch $OUT_DIR/pwned2; "', "$(touch $OUT_DIR/pwned3)", "`touch $OUT_DIR/pwned4`", "line\u2028sep\u2029para",
    "nel\u0085x", "cr\rlf\r\n", "", " two  spaces ", "\\", "*", "-c", "#SBATCH --mem=1", "ünïcødé ☃",
)
DUMP_ARGV = ("python3", "-c", "import json, os, sys; json.dump({'argv': sys.argv[1:], 'env': dict(os.environ)}, "
             "open(os.path.join(os.environ['OUT_DIR'], 'dump.' + os.environ['NODE_RANK']), 'w'))")


def hostile_job(nodes=("gpu01",)) -> Job:
    job = make_job(nodes=nodes)
    job.spec = JobSpec(command=DUMP_ARGV + HOSTILE_ARGS, gpus=2, nodes=len(nodes), name="x\n#SBATCH --qos=high",
                       env={"EVIL": "v\n#SBATCH --exclusive\n$(touch $OUT_DIR/pwned5)'\"`id`", "PLAIN": "p",
                            "gpufleet_plan": "clobber", "BAD KEY\n#SBATCH --qos=x": "v"})
    return job


def assert_script_is_fixed_text_plus_payloads(script: str) -> None:
    """Every line is either the fixed text or `name='<base64>'`: nothing of the job is script text."""
    assert script.isascii()
    lines = script.split("\n")
    assert not any(line.lstrip().startswith("#SBATCH") for line in lines)
    for line in lines:
        if line.startswith("gpufleet_") and "='" in line and "(" not in line:
            assert re.fullmatch(r"gpufleet_(argv|env|plan|job|ckpt)='[A-Za-z0-9+/=]*'", line), line
    for bad in ("pwned", "qos", "exclusive", "touch", "\u2028", "\r"):
        assert bad not in script


def test_hostile_command_and_env_never_become_script_text(tmp_path):
    script = build_script(hostile_job(), {}, str(tmp_path), placed=True)
    assert_script_is_fixed_text_plus_payloads(script)
    proc = run_script(tmp_path, script)
    assert proc.returncode == 0, proc.stderr
    dump = json.loads((tmp_path / "dump.0").read_text())
    assert dump["argv"] == list(HOSTILE_ARGS)  # verbatim, as argv
    assert dump["env"]["EVIL"] == hostile_job().spec.env["EVIL"] and dump["env"]["PLAIN"] == "p"
    assert "gpufleet_plan" not in dump["env"] and not any(k.startswith("BAD") for k in dump["env"])
    assert dump["env"]["NODE_RANK"] == "0" and dump["env"]["CUDA_VISIBLE_DEVICES"] == "4,5"
    assert not list(tmp_path.glob("pwned*"))


def test_hostile_argv_reaches_every_rank_of_a_multi_node_job(tmp_path):
    job = hostile_job(nodes=("gpu02", "gpu01"))
    script = build_script(job, {"gpu02": "10.0.0.2"}, str(tmp_path), placed=True)
    assert_script_is_fixed_text_plus_payloads(script)
    proc = run_script(tmp_path, script)
    assert proc.returncode == 0, proc.stderr
    for rank, node in enumerate(("gpu02", "gpu01")):
        dump = json.loads((tmp_path / f"dump.{rank}").read_text())
        assert dump["argv"] == list(HOSTILE_ARGS)
        assert dump["env"]["GPUFLEET_NODE"] == node and dump["env"]["MASTER_ADDR"] == "10.0.0.2"
    assert not list(tmp_path.glob("pwned*"))


def test_user_env_cannot_override_what_gpufleet_sets_on_the_node(tmp_path):
    job = make_job(nodes=("gpu01",))
    job.spec = JobSpec(command=DUMP_ARGV, gpus=2, env={"NODE_RANK": "7", "CUDA_VISIBLE_DEVICES": "9",
                                                       "MASTER_ADDR": "evil", "IFS": "/"})
    proc = run_script(tmp_path, build_script(job, {}, str(tmp_path), placed=True))
    assert proc.returncode == 0, proc.stderr
    env = json.loads((tmp_path / "dump.0").read_text())["env"]
    assert (env["NODE_RANK"], env["CUDA_VISIBLE_DEVICES"]) == ("0", "4,5") and env["MASTER_ADDR"] != "evil"


def test_nul_in_argument_or_env_is_refused_not_cut():
    job = make_job(nodes=("gpu01",))
    job.spec = JobSpec(command=("echo", "a\0b"), gpus=2)
    with pytest.raises(ValueError, match="command"):
        build_script(job, {}, "/l", placed=True)
    job.spec = JobSpec(command=("echo",), gpus=2, env={"K": "a\0b"})
    with pytest.raises(ValueError, match="env"):
        build_script(job, {}, "/l", placed=True)


def test_names_comment_and_constraints_written_outside_the_script_are_plain_words():
    job = hostile_job()
    assert job_name(job) == "gf42-x_SBATCH_--qos_high"
    assert account_name("a\n#SBATCH|b") == "a_sbatch_b"
    with pytest.raises(ValueError, match="comment"):
        Identity("gf|x\n", 1, 0, 0).comment()
    with pytest.raises(ValueError, match="comment"):
        Identity("gf", 1, 0, 0, {"n|1\n": (0,)}).comment()
    job.spec = JobSpec(command=("true",), constraints={"rack": "r1|rack:r2"})
    with pytest.raises(ValueError, match="constraints"):
        constraint_of(job)
    job.spec = JobSpec(command=("true",), constraints={"rack\n": "true"})
    with pytest.raises(ValueError, match="constraints"):
        constraint_of(job)


# ------------------------------------------------------------------ results dir and perf steps

GPUFLEET_BIN = str(Path(sys.executable).parent / "gpufleet")


def decoded(script: str, name: str) -> list[str]:
    line = next(x for x in script.split("\n") if x.startswith(f"{name}='"))
    return base64.b64decode(line.split("'")[1]).decode().split("\0")[:-1]


def one_node_job(command, perf=None, env=None) -> Job:
    job = make_job(nodes=("gpu01",))
    job.spec = JobSpec(command=command, gpus=2, perf=perf, env=env or {})
    return job


def test_every_rank_gets_its_own_results_dir_in_the_runs_folder(tmp_path):
    job = make_job()
    job.spec = JobSpec(command=("sh", "-c", 'echo "{\\"rank\\": $NODE_RANK}" > "$GPUFLEET_RESULTS_DIR/r.jsonl"'),
                       gpus=2, nodes=2)
    script = build_script(job, {}, str(tmp_path), placed=True)
    assert decoded(script, "gpufleet_job") == [job_dir(str(tmp_path), job)]  # no perf steps
    proc = run_script(tmp_path, script)
    assert proc.returncode == 0, proc.stderr
    folder = Path(job_dir(str(tmp_path), job))
    assert folder.name == "gf42.1.d"
    for rank, node in ((0, "gpu02"), (1, "gpu01")):
        d = folder / f"rank-{rank}"
        assert json.loads((d / "results" / "r.jsonl").read_text()) == {"rank": rank}
        assert (d / "node").read_text().strip() == node
        assert (d / "results").stat().st_mode & 0o777 == 0o700
        assert not (d / "perf-prolog.rc").exists()


def test_every_rank_gets_run_dir_heartbeat_file_restart_count_and_the_jobs_one_checkpoint_dir(tmp_path):
    job = make_job()  # restarts=1: attempt 2
    job.spec = JobSpec(command=DUMP_ARGV, gpus=2, nodes=2, env={"GPUFLEET_CHECKPOINT_DIR": "/evil"})
    ck = checkpoint_dir(str(tmp_path / "ck"), "gf", job)
    assert ck == f"{tmp_path}/ck/gf-42-1700000000500"  # job id and submit time: never another job's
    (tmp_path / "ck").mkdir(mode=0o1777)
    proc = run_script(tmp_path, build_script(job, {}, str(tmp_path), placed=True, checkpoint=ck))
    assert proc.returncode == 0, proc.stderr
    folder = Path(job_dir(str(tmp_path), job))
    for rank in (0, 1):
        env = json.loads((tmp_path / f"dump.{rank}").read_text())["env"]
        run = folder / f"rank-{rank}" / "run"
        assert env["GPUFLEET_RUN_DIR"] == str(run) and run.stat().st_mode & 0o777 == 0o700
        assert env["GPUFLEET_HEARTBEAT_FILE"] == str(run / "heartbeat")
        assert env["GPUFLEET_CHECKPOINT_DIR"] == ck  # the same for every rank, not the user's
        assert (env["GPUFLEET_RESTART_COUNT"], env["GPUFLEET_ATTEMPT"]) == ("1", "2")
        assert not any(k.startswith("gpufleet_") for k in env)
    assert Path(ck).stat().st_mode & 0o777 == 0o700 and Path(ck).stat().st_uid == os.geteuid()


@pytest.mark.parametrize("planted", ["link", "file"])
def test_a_checkpoint_dir_planted_in_the_shared_folder_is_refused(tmp_path, planted):
    job = one_node_job(("sh", "-c", "touch $OUT_DIR/ran"))
    ck = tmp_path / "ck" / "gf-42-1"
    ck.parent.mkdir()
    (tmp_path / "elsewhere").mkdir()
    if planted == "link":
        ck.symlink_to(tmp_path / "elsewhere")
    else:
        ck.write_text("")
    proc = run_script(tmp_path, build_script(job, {}, str(tmp_path), placed=True, checkpoint=str(ck)))
    assert proc.returncode == 75 and "checkpoint folder" in proc.stderr
    assert not (tmp_path / "ran").exists()


def test_without_a_checkpoint_dir_the_job_gets_none(tmp_path):
    job = one_node_job(DUMP_ARGV)
    proc = run_script(tmp_path, build_script(job, {}, str(tmp_path), placed=True))
    assert proc.returncode == 0, proc.stderr
    assert "GPUFLEET_CHECKPOINT_DIR" not in json.loads((tmp_path / "dump.0").read_text())["env"]


def test_perf_steps_are_payload_and_the_policy_becomes_prolog_options(tmp_path):
    job = one_node_job(("true",), perf=parse_perf({"clocks": "max", "max_temp_c": 70, "sample_s": 2}))
    steps = PerfSteps.of_job(job, "/opt/venv/bin/gpufleet", "/etc/fake.json")
    script = build_script(job, {}, str(tmp_path), placed=True, perf=steps)
    assert decoded(script, "gpufleet_job") == [job_dir(str(tmp_path), job), "/opt/venv/bin/gpufleet", "2",
                                               "/etc/fake.json", "--clocks", "max", "--max-temp", "70"]
    assert "/opt/venv" not in script and "--clocks" not in script  # never script text
    assert PerfSteps.of_job(one_node_job(("true",)), "/x") is None


def run_perf(tmp_path, command, faults=(), run_faults=(), env=None):
    fake = tmp_path / "fake-nvml.json"
    fake.write_text(json.dumps({"gpus": 2, "model": "a100", "faults": list(faults), "run_faults": list(run_faults)}))
    job = one_node_job(command, perf=parse_perf({"sample_s": 0.2}), env=env)
    script = build_script(job, {}, str(tmp_path), placed=True, perf=PerfSteps.of_job(job, GPUFLEET_BIN, str(fake)))
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, env={
        "PATH": os.environ["PATH"], "OUT_DIR": str(tmp_path), "SLURMD_NODENAME": "gpu01", "SLURM_NODEID": "0",
        "SLURM_JOB_GPUS": "0,1", "SLURM_JOB_NODELIST": "gpu01"})
    return job, proc, Path(job_dir(str(tmp_path), job)) / "rank-0"


def test_clean_perf_run_runs_prolog_sampler_command_epilog(tmp_path):
    job, proc, d = run_perf(tmp_path, ("sh", "-c", "sleep 2; touch $OUT_DIR/ran; exit 3"),
                            env={"PYTHONHOME": "/nonexistent-poison"})  # breaks python if the steps saw it
    assert proc.returncode == 3, proc.stderr  # the command's own exit code
    assert (tmp_path / "ran").exists()
    assert (d / "perf-prolog.rc").read_text().strip() == "0"
    verdict = json.loads((d / "perf.json").read_text())
    assert verdict["perf_valid"] is True and verdict["reason"] == ""
    # prolog-time state + at least one background sample + the last (the sampler is a Python start:
    # slow on a loaded machine, hence 2 s of command at sample_s 0.2)
    assert verdict["conditions"]["samples"] >= 3
    assert len(json.loads((d / "perf-state.json").read_text())["samples"]) == verdict["conditions"]["samples"]


def test_perf_prolog_refusal_exits_75_without_running_the_command(tmp_path):
    job, proc, d = run_perf(tmp_path, ("sh", "-c", "touch $OUT_DIR/ran"),
                            faults=[{"fault": "stray_process", "gpu": 1, "pid": 999}])
    assert proc.returncode == 75 and "perf prolog refused this node (gpu01)" in proc.stderr
    assert not (tmp_path / "ran").exists() and not (d / "perf.json").exists()
    assert (d / "perf-prolog.rc").read_text().strip() == "1"
    prolog = json.loads((d / "perf-prolog.json").read_text())
    assert prolog["ok"] is False and "pid 999" in json.dumps(prolog)


def test_throttling_during_the_run_makes_the_epilog_invalid(tmp_path):
    job, proc, d = run_perf(tmp_path, ("sleep", "0.3"), run_faults=[{"fault": "throttle", "gpu": 0,
                                                                     "reason": "hw_slowdown"}])
    assert proc.returncode == 0, proc.stderr
    verdict = json.loads((d / "perf.json").read_text())
    assert verdict["perf_valid"] is False and "throttle: GPU 0: hw_slowdown" in verdict["reason"]


def test_executor_reads_results_and_perf_verdicts_without_following_links(tmp_path):
    from gpufleet.executors.slurm import SlurmConfig, SlurmExecutor
    from tests.executors.slurm.test_executor_unit import StubAdmin, StubApi

    job, proc, d = run_perf(tmp_path, ("sh", "-c", 'echo \'{"benchmark": "b", "metric": "m", "value": 1}\' '
                                                   '> "$GPUFLEET_RESULTS_DIR/r.jsonl"'))
    assert proc.returncode == 0, proc.stderr
    ex = SlurmExecutor(SlurmConfig(log_dir=str(tmp_path)), api=StubApi(), admin=StubAdmin())
    assert {Ability.RESULTS, Ability.PERF_IN_JOB} <= ex.abilities
    files, notes = ex.results(job, job.attempt)
    assert [(f.rank, f.name) for f in files] == [(0, "r.jsonl")] and b'"value": 1' in files[0].data
    verdicts, notes = ex.perf_verdicts(job, job.attempt)
    assert len(verdicts) == 1 and notes == []
    v = verdicts[0]
    assert v["node"] == "gpu01" and v["stage"] == "epilog" and v["ok"] is True and v["samples"]
    assert [c["name"] for c in v["prolog"]][:1] == ["stray_processes"]
    # a job that swaps its files for links gets nothing read through them
    secret = tmp_path / "secret.json"
    secret.write_text('{"perf_valid": true}')
    (d / "perf.json").unlink()
    (d / "perf.json").symlink_to(secret)
    (d / "results" / "r.jsonl").unlink()
    (d / "results" / "r.jsonl").symlink_to(secret)
    files, notes = ex.results(job, job.attempt)
    assert files == [] and "symbolic link" in notes[0]
    verdicts, notes = ex.perf_verdicts(job, job.attempt)
    assert verdicts[0]["ok"] is False and "no verdict" in verdicts[0]["reason"] and "perf.json" in notes[0]


def test_executor_reads_a_prolog_refusal(tmp_path):
    from gpufleet.executors.slurm import SlurmConfig, SlurmExecutor
    from tests.executors.slurm.test_executor_unit import StubAdmin, StubApi

    job, proc, d = run_perf(tmp_path, ("true",), faults=[{"fault": "persistence_off", "gpu": 0}])
    assert proc.returncode == 75
    ex = SlurmExecutor(SlurmConfig(log_dir=str(tmp_path)), api=StubApi(), admin=StubAdmin())
    [v], notes = ex.perf_verdicts(job, job.attempt)
    assert (v["node"], v["stage"], v["ok"]) == ("gpu01", "prolog", False) and notes == []
    assert [c["name"] for c in v["prolog"] if not c["ok"]] == ["persistence"]


def test_a_node_name_the_job_wrote_is_not_trusted_when_slurm_placed_it(tmp_path):
    from gpufleet.executors.slurm import SlurmConfig, SlurmExecutor
    from tests.executors.slurm.test_executor_unit import StubAdmin, StubApi

    job, proc, d = run_perf(tmp_path, ("sh", "-c", "echo gpu09 > $GPUFLEET_RESULTS_DIR/../node"),
                            faults=[{"fault": "stray_process", "gpu": 0, "node": "gpu02"}])  # not this node
    assert proc.returncode == 0, proc.stderr  # the fault named another node: the prolog passed
    ex = SlurmExecutor(SlurmConfig(log_dir=str(tmp_path), slurm_place=True), api=StubApi(), admin=StubAdmin())
    verdicts, notes = ex.perf_verdicts(job, job.attempt)
    assert verdicts == [] and "'gpu09' is not one of the Slurm job's nodes" in notes[0]
    placed = SlurmExecutor(SlurmConfig(log_dir=str(tmp_path)), api=StubApi(), admin=StubAdmin())
    assert [v["node"] for v in placed.perf_verdicts(job, job.attempt)[0]] == ["gpu01"]  # gpufleet's placement


def test_perf_job_is_submitted_exclusive(tmp_path):
    req = SubmitRequest(script="", name="n", comment="c", account="a", nodes=1, gres=None, output="/o", exclusive=True)
    assert "--exclusive" in req.sbatch_args()
    assert "--exclusive" not in SubmitRequest(script="", name="n", comment="c", account="a", nodes=1, gres=None,
                                              output="/o").sbatch_args()


def test_every_rank_of_a_multi_node_perf_job_runs_its_own_steps(tmp_path):
    from gpufleet.executors.slurm import SlurmConfig, SlurmExecutor
    from tests.executors.slurm.test_executor_unit import StubAdmin, StubApi

    fake = tmp_path / "fake-nvml.json"
    fake.write_text(json.dumps({"gpus": 2, "run_faults": [{"fault": "throttle", "gpu": 1, "reason": "hw_slowdown",
                                                           "node": "gpu01"}]}))
    job = make_job(nodes=("gpu02", "gpu01"))
    job.spec = JobSpec(command=("sh", "-c", "echo rank $NODE_RANK"), gpus=2, nodes=2, perf=parse_perf({"sample_s": 1}))
    script = build_script(job, {}, str(tmp_path), placed=True, perf=PerfSteps.of_job(job, GPUFLEET_BIN, str(fake)))
    proc = run_script(tmp_path, script)
    assert proc.returncode == 0, proc.stderr
    ex = SlurmExecutor(SlurmConfig(log_dir=str(tmp_path)), api=StubApi(), admin=StubAdmin())
    verdicts, notes = ex.perf_verdicts(job, job.attempt)
    assert [(v["rank"], v["node"], v["ok"]) for v in verdicts] == [(0, "gpu02", True), (1, "gpu01", False)], notes
    assert "throttle: GPU 1: hw_slowdown" in verdicts[1]["reason"]

"""A job's image on Slurm: the pyxis rendering (srun --container-image/--container-mounts; no pyxis
here, so it is checked as rendered argv), the podman wrapper (run for real by the cluster tests),
and the runtime choice from `srun --help`."""

from __future__ import annotations

import base64
import re

import pytest

from gpufleet.domain import Allocation, Job, JobSpec, JobState
from gpufleet.executors.base import Ability
from gpufleet.executors.slurm import SlurmConfig, SlurmExecutor
from gpufleet.executors.slurm.container import (
    PODMAN_WRAPPER, PYXIS_WRAPPER, SlurmContainers, container_command, container_reason, enroot_uri, has_pyxis,
    podman_argv, pyxis_argv,
)
from gpufleet.executors.slurm.script import build_script
from tests.executors.slurm.test_executor_unit import StubAdmin, StubApi

SRUN_HELP_PYXIS = """Usage: srun [OPTIONS(0)... [executable(0) [args(0)...]]]
      --container-image=[USER@][REGISTRY#]IMAGE[:TAG]|PATH
                              [pyxis] the image to use for the container
      --container-mounts=SRC:DST[:FLAGS][,SRC:DST...]
"""
SRUN_HELP_PLAIN = "Usage: srun ...\n      --container             Path to OCI container bundle\n"


def job(**spec) -> Job:
    spec.setdefault("image", "nvcr.io/nvidia/pytorch:24.05-py3")
    s = JobSpec(command=("python", "train.py", "--x", "$(rm -rf /)"), tenant="vision", **spec)
    return Job(7, s, state=JobState.RUNNING, allocation=(Allocation("gpu01", (0,)),), restarts=2)


def test_pyxis_runs_each_rank_as_a_step_in_the_image_with_its_mounts_and_workdir():
    a = pyxis_argv(job(mounts=("/datasets:/data:ro", "/scratch:/scratch"), workdir="/home/alice/w"))
    assert a[:4] == ["bash", "-c", PYXIS_WRAPPER, "gpufleet-pyxis"]
    opts, cmd = a[4:a.index("--")], a[a.index("--") + 1:]
    assert opts == ["--container-image=nvcr.io#nvidia/pytorch:24.05-py3",
                    "--container-mounts=/datasets:/data:ro,/scratch:/scratch",
                    "--container-workdir=/home/alice/w"]
    assert cmd == ["python", "train.py", "--x", "$(rm -rf /)"]  # argv, never shell text
    assert "srun --overlap --nodes=1 --ntasks=1" in PYXIS_WRAPPER and "$SLURMD_NODENAME" in PYXIS_WRAPPER


def test_enroot_spells_the_registry_with_a_hash():
    assert enroot_uri("nvcr.io/nvidia/pytorch:24.05-py3") == "nvcr.io#nvidia/pytorch:24.05-py3"
    assert enroot_uri("localhost:5000/x/y:1") == "localhost:5000#x/y:1"
    assert enroot_uri("ubuntu:22.04") == "ubuntu:22.04"
    assert enroot_uri("library/ubuntu") == "library/ubuntu"


def test_podman_inside_the_allocation_gets_pull_policy_authfile_and_mounts_as_argv():
    cfg = SlurmContainers.of({"podman": "/usr/bin/podman", "authfiles": {"vision": "/etc/gf/vision.json"}})
    a = podman_argv(job(pull="never", mounts=("/datasets:/data:ro",)), cfg)
    assert a[:5] == ["bash", "-c", PODMAN_WRAPPER, "gpufleet-podman", "/usr/bin/podman"]
    i = a.index("--")
    assert set(a[5:i]) == {"--pull=never", "--label=io.gpufleet.job=7", "--label=io.gpufleet.run=2",
                           "--authfile=/etc/gf/vision.json", "--volume=/datasets:/data:ro"}
    assert a[i + 1:] == ["nvcr.io/nvidia/pytorch:24.05-py3", "python", "train.py", "--x", "$(rm -rf /)"]
    other = job()
    other.spec = JobSpec(command=("x",), image="busybox", tenant="speech")
    assert not any(x.startswith("--authfile") for x in podman_argv(other, cfg))
    for needed in ("--init", "--network=host", "--ipc=host", "nvidia.com/gpu=", "/dev/nvidia", "--env \"$gf_k\"",
                   "CUDA_VISIBLE_DEVICES", "stop --time", "rm --force"):
        assert needed in PODMAN_WRAPPER, needed


def test_a_job_without_image_runs_its_command_and_the_script_carries_the_container_argv():
    bare = job(image=None)
    assert container_command(bare, "podman", SlurmContainers()) == bare.spec.command
    wrapped = container_command(job(), "pyxis", SlurmContainers())
    script = build_script(job(), {}, "/logs", placed=True, command=wrapped)
    payload = re.search(r"^gpufleet_argv='([^']*)'$", script, re.M).group(1)
    assert base64.b64decode(payload).split(b"\0")[:-1] == [w.encode() for w in wrapped]
    assert "train.py" not in script  # user text only inside the base64 payload


@pytest.mark.parametrize("help_text,runtime", [(SRUN_HELP_PYXIS, "pyxis"), (SRUN_HELP_PLAIN, "podman")])
def test_the_runtime_is_pyxis_when_srun_offers_container_image(help_text, runtime):
    assert has_pyxis(help_text) is (runtime == "pyxis")
    ex = SlurmExecutor(SlurmConfig(log_dir="/tmp"), api=StubApi(), admin=StubAdmin())
    calls = []
    ex._run = lambda *args, **kw: calls.append(args) or help_text  # type: ignore[assignment]
    assert ex.container_runtime() == runtime and ex.container_runtime() == runtime
    assert calls == [("srun", "--help")]  # asked once
    assert Ability.IMAGES in ex.abilities
    fixed = SlurmExecutor(SlurmConfig(log_dir="/tmp", container_runtime="podman"), api=StubApi(), admin=StubAdmin())
    assert fixed.container_runtime() == "podman"
    with pytest.raises(ValueError):
        SlurmExecutor(SlurmConfig(log_dir="/tmp", container_runtime="docker"), api=StubApi(), admin=StubAdmin())


def test_launch_submits_the_wrapped_command_for_an_image_job():
    api = StubApi()
    ex = SlurmExecutor(SlurmConfig(log_dir="/tmp", container_runtime="pyxis", create_accounts=False), api=api,
                       admin=StubAdmin())
    j = job()
    j.submitted_at = 1.0
    ex._addresses["gpu01"] = "10.0.0.1"
    ex.launch(j)
    payload = re.search(r"^gpufleet_argv='([^']*)'$", api.submitted[0].script, re.M).group(1)
    argv = base64.b64decode(payload).split(b"\0")[:-1]
    assert argv[3] == b"gpufleet-pyxis" and b"--container-image=nvcr.io#nvidia/pytorch:24.05-py3" in argv


def test_a_container_that_could_not_start_gives_the_runtimes_reason():
    log = b"Trying to pull registry.invalid/x:1...\nError: initializing source docker://registry.invalid/x:1: no such host\n"
    assert container_reason(log, 125) == "container: initializing source docker://registry.invalid/x:1: no such host"
    pyxis = b"slurmstepd: error: pyxis: failed to import docker image\n"
    assert container_reason(pyxis, 125) == "container: failed to import docker image"
    assert container_reason(log, 1) is None  # the command itself failed: its exit code says so
    assert container_reason(b"all fine\n", 125) is None


R = "/l/gf7.2.d/rank-0"
JOB_DIRS = {"GPUFLEET_RESULTS_DIR": f"{R}/results", "GPUFLEET_RUN_DIR": f"{R}/run",
            "GPUFLEET_CHECKPOINT_DIR": "/ck/gf-7-1"}


@pytest.mark.parametrize("mounts,dirs,want", [
    ((), ("GPUFLEET_RESULTS_DIR",), f"--container-mounts={R}/results:{R}/results"),
    (("/datasets:/data:ro",), ("GPUFLEET_RESULTS_DIR",),
     f"--container-mounts=/datasets:/data:ro,{R}/results:{R}/results"),
    (("/datasets:/data:ro",), tuple(JOB_DIRS),
     f"--container-mounts=/datasets:/data:ro,{R}/results:{R}/results,{R}/run:{R}/run,/ck/gf-7-1:/ck/gf-7-1"),
])
def test_pyxis_binds_the_jobs_dirs_beside_the_jobs_own_mounts(tmp_path, mounts, dirs, want):
    import subprocess

    srun = tmp_path / "srun"
    srun.write_text('#!/bin/bash\nprintf "%s\\n" "$@"\n')
    srun.chmod(0o755)
    argv = pyxis_argv(job(mounts=mounts))
    out = subprocess.run(argv, capture_output=True, text=True, timeout=10, env={
        "PATH": f"{tmp_path}:/usr/bin:/bin", "SLURMD_NODENAME": "gpu01",
        **{k: JOB_DIRS[k] for k in dirs}}).stdout.splitlines()
    assert [a for a in out if a.startswith("--container-mounts")] == [want]
    assert out[-4:] == ["python", "train.py", "--x", "$(rm -rf /)"]


def test_podman_binds_results_run_and_checkpoint_dirs_at_their_own_paths(tmp_path):
    import subprocess

    podman = tmp_path / "podman"
    podman.write_text('#!/bin/bash\n[ "$1" = run ] && printf "%s\\n" "$@"\nexit 0\n')
    podman.chmod(0o755)
    out = subprocess.run(podman_argv(job(), SlurmContainers(podman=str(podman))), capture_output=True, text=True,
                         timeout=10, env={"PATH": "/usr/bin:/bin", **JOB_DIRS}).stdout.splitlines()
    volumes = [out[i + 1] for i, a in enumerate(out) if a == "--volume"]
    assert [v for v in volumes if v.startswith(("/l/", "/ck/"))] == [f"{d}:{d}" for d in JOB_DIRS.values()]

"""The `podman run` the local shim supervises for a job's image: GPUs (CDI or device nodes), the
account, env file, mounts, pull policy, per-tenant registry auth. Pure rendering (no GPU here)."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from gpufleet.domain import Allocation, Job, JobSpec, JobState, ValidationError
from gpufleet.executors.accounts import Account
from gpufleet.executors.local.container import (
    ContainerConfig, container_env, control_file, env_file, gpu_args, has_nvidia_cdi, name_of, render,
    ulimit_args,
)

ALICE = Account("alice", 1001, 1001, (27, 1001, 3000), "/home/alice", "/bin/bash")


def job(gpus=(2, 5), **spec) -> Job:
    spec.setdefault("image", "nvcr.io/nvidia/pytorch:24.05-py3")
    s = JobSpec(command=("python", "train.py", "--lr", "$(x)"), gpus=len(gpus), tenant="vision", **spec)
    return Job(42, s, state=JobState.RUNNING, allocation=(Allocation("dgx1", tuple(gpus)),), restarts=1)


def argv(j: Job, cfg: ContainerConfig | None = None, **kw) -> list[str]:
    kw.setdefault("account", ALICE)
    kw.setdefault("cdi", True)
    return render(cfg or ContainerConfig(), j, 0, name="gpufleet-x-42-2-0", workdir="/home/alice/w",
                  results_dir="/run/gf/results", env_path="/run/gf/container.env", **kw)


def test_cdi_gives_exactly_the_jobs_gpus_by_host_index():
    a = argv(job())
    assert [x for x in a if x.startswith("--device")] == ["--device=nvidia.com/gpu=2", "--device=nvidia.com/gpu=5"]


def test_without_cdi_the_device_nodes_of_its_gpus_the_control_nodes_and_driver_files():
    present = {"/dev/nvidia2", "/dev/nvidia5", "/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm"}
    out = gpu_args((2, 5), cdi=False, exists=present.__contains__,
                   driver_files=["/usr/lib/x86_64-linux-gnu/libcuda.so.1"])
    assert out == ["--device=/dev/nvidia2", "--device=/dev/nvidia5", "--device=/dev/nvidiactl",
                   "--device=/dev/nvidia-uvm",
                   "--volume=/usr/lib/x86_64-linux-gnu/libcuda.so.1:/usr/lib/x86_64-linux-gnu/libcuda.so.1:ro"]
    assert "--device=/dev/nvidia0" not in out  # another job's GPU
    assert gpu_args((2,), cdi=False, exists=lambda p: False) == []  # fake GPUs: environment only
    assert gpu_args((), cdi=True) == []


def test_an_nvidia_cdi_spec_is_found_in_the_cdi_dirs(tmp_path):
    assert not has_nvidia_cdi([str(tmp_path), str(tmp_path / "missing")])
    (tmp_path / "other.yaml").write_text("cdiVersion: 0.5.0\nkind: vendor.com/fpga\n")
    assert not has_nvidia_cdi([str(tmp_path)])
    (tmp_path / "nvidia.yaml").write_text("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices: []\n")
    assert has_nvidia_cdi([str(tmp_path)])


def test_the_container_runs_as_the_account_without_privileges_on_the_host_network():
    a = argv(job())
    assert a[:3] == ["podman", "run", "--rm"] and "--name=gpufleet-x-42-2-0" in a
    assert "--user=1001:1001" in a and "--group-add=27" in a and "--group-add=3000" in a
    assert "--group-add=1001" not in a
    assert {"--cap-drop=all", "--security-opt=no-new-privileges", "--network=host", "--ipc=host", "--init",
            "--env-file=/run/gf/container.env"} <= set(a)
    assert "--userns=keep-id" not in a
    assert "--userns=keep-id" in argv(job(), account=None, rootless=True)  # a non-root server
    assert not any(x.startswith("--user") for x in argv(job(), account=None))  # a root server as itself


def test_workdir_results_and_mounts_are_bound_and_the_command_is_argv_after_the_image():
    a = argv(job(mounts=("/datasets/imagenet:/data:ro", "/scratch:/scratch")))
    assert "--volume=/home/alice/w:/home/alice/w:rw" in a and "--workdir=/home/alice/w" in a
    assert "--volume=/run/gf/results:/run/gf/results:rw" in a
    assert "--volume=/datasets/imagenet:/data:ro" in a and "--volume=/scratch:/scratch:rw" in a
    i = a.index("--")
    assert a[i + 1:] == ["nvcr.io/nvidia/pytorch:24.05-py3", "python", "train.py", "--lr", "$(x)"]
    assert not any("train.py" in x for x in a[:i])  # nothing of the command among the options
    with pytest.raises(ValidationError) as e:
        render(ContainerConfig(), job(), 0, name="n", workdir="/a:b", results_dir="/r", env_path="/e",
               account=None, cdi=False)
    assert e.value.field == "workdir"


def test_pull_policy_and_a_tenants_authfile_from_the_server_config():
    cfg = ContainerConfig.of({"podman": "/usr/bin/podman", "authfiles": {"vision": "/etc/gpufleet/vision-auth.json"}})
    a = argv(job(pull="always"), cfg)
    assert a[0] == "/usr/bin/podman" and "--pull=always" in a
    assert "--authfile=/etc/gpufleet/vision-auth.json" in a
    assert "--pull=missing" in argv(job())
    other = job()
    other.spec = JobSpec(command=("x",), image="busybox", tenant="speech")
    assert not any(x.startswith("--authfile") for x in argv(other, cfg))
    with pytest.raises(ValueError):
        ContainerConfig.of({"authfiles": ["not", "a", "mapping"]})


def test_container_env_renumbers_cuda_devices_and_leaves_path_home_to_the_image():
    env = {"PATH": "/usr/bin", "HOME": "/home/alice", "SHELL": "/bin/bash", "USER": "alice",
           "CUDA_VISIBLE_DEVICES": "2,5", "NVIDIA_VISIBLE_DEVICES": "2,5", "GPUFLEET_GPUS": "2,5", "X": "1"}
    out = container_env(env, {"X": "1"}, (2, 5))
    assert out["CUDA_VISIBLE_DEVICES"] == "0,1" and out["GPUFLEET_GPUS"] == "2,5" and out["NVIDIA_VISIBLE_DEVICES"] == "2,5"
    assert "PATH" not in out and "HOME" not in out and "SHELL" not in out and out["USER"] == "alice"
    assert container_env(env, {"PATH": "/opt/bin"}, (2, 5))["PATH"] == "/usr/bin"  # set by the spec: kept
    assert env_file({"A": "1 2", "B": "$HOME"}) == b"A=1 2\nB=$HOME\n"


def test_control_file_names_the_sources_the_user_must_reach():
    j = job(mounts=("/datasets:/data:ro", "/scratch:/s"), workdir="/home/alice/w")
    items = dict(x.split("=", 1) for x in control_file(ContainerConfig(), "n1", j).decode().split("\0") if x)
    assert items == {"podman": "podman", "name": "n1", "ro": "/datasets", "rw": "/scratch\n/home/alice/w"}


def test_names_are_unique_per_server_and_rank(tmp_path):
    a, b = name_of(tmp_path / "a", 7, 1, 0), name_of(tmp_path / "b", 7, 1, 0)
    assert a != b and a.startswith("gpufleet-") and a.endswith("-7-1-0")
    assert name_of(tmp_path / "a", 7, 2, 1).endswith("-7-2-1")


def test_ulimits_are_the_shims_own():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    out = ulimit_args()
    lim = lambda v: "-1" if v == resource.RLIM_INFINITY else str(v)  # noqa: E731
    assert out[0] == f"--ulimit=nofile={lim(soft)}:{lim(hard)}"
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    n_soft, n_hard = (int(x) for x in out[1].split("=", 2)[2].split(":"))
    assert n_soft <= pid_max and n_hard <= pid_max

"""A job's `image` on the local engine: the `podman run` command its shim supervises.

The shim runs `podman run --rm --name NAME ... IMAGE CMD` in the foreground as its child, exactly
where it would run a bare command, so supervision, time limits, cancel (TERM, grace, KILL), logs
(podman's stdout/stderr are the container's: output.log) and re-attachment after a server restart
are the shim's, unchanged. podman forwards TERM to the container (`--init` makes its pid 1 pass
it on); at KILL time and after a stop the shim also runs `podman rm -f NAME`, since the container
is conmon's child, not podman's (shim.py).

Who the container runs as. A root server runs podman as root (one image store per node, the
cache every job of every user shares; no per-user storage, subuid ranges or home needed) and the
container as the job's account: `--user UID:GID` and its supplementary groups, no capabilities
(`--cap-drop all`) and `no-new-privileges` (a setuid binary in an image gains nothing), so inside
it the job has the rights it has outside. The bind-mount sources a user names (`mounts`, a
`workdir`) are checked by the shim with the user's own rights before podman (root) mounts them.
A non-root server runs rootless podman as itself (`--userns keep-id`: its uid inside).

What the container gets, as a bare process does: exactly its GPUs (CDI `nvidia.com/gpu=<i>` when
an NVIDIA CDI spec exists, else the `/dev/nvidia<i>` nodes plus the control nodes and the host
driver's libraries read-only), the job's environment from an env file (not the command line,
which every user can read in /proc), the host network (NCCL across a gang), the host IPC
namespace (/dev/shm as large as outside), the same ulimits as the shim, its workdir and
$GPUFLEET_RESULTS_DIR at the same paths, and `mounts`. Inside, CUDA_VISIBLE_DEVICES counts from 0
(the container has only its GPUs, renumbered by CUDA as on Kubernetes); NVIDIA_VISIBLE_DEVICES
and GPUFLEET_GPUS keep the host indices. PATH, HOME and SHELL are the image's unless the job's
`env` sets them.
"""

from __future__ import annotations

import glob
import hashlib
import os
import resource
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from gpufleet.domain import Job, ValidationError
from gpufleet.domain.image import DEFAULT_PULL, parse_mount
from gpufleet.executors.accounts import Account

CONTAINER = "container"  # the rank directory's file that tells the shim it supervises podman
CONTAINER_ENV = "container.env"  # the job's environment, handed to podman with --env-file
CDI_DIRS = ("/etc/cdi", "/var/run/cdi")
NVIDIA_CONTROL = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")
DRIVER_LIBS = ("libcuda.so*", "libnvidia-ml.so*", "libnvidia-ptxjitcompiler.so*", "libnvidia-nvvm.so*")
LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib")
DRIVER_BINS = ("/usr/bin/nvidia-smi",)
IMAGE_DEFAULTS = ("PATH", "HOME", "SHELL")  # left to the image unless the spec's env sets them


@dataclass(frozen=True)
class ContainerConfig:
    """The `containers:` server setting (examples/server.yaml).

    `authfiles`: tenant -> registry auth file (podman's `auth.json`, e.g. made with `podman login
    --authfile FILE`), readable by the server only; a tenant's jobs pull with it. Credentials are
    never in a job spec."""

    podman: str = "podman"
    authfiles: Mapping[str, str] = field(default_factory=dict)
    cdi_dirs: Sequence[str] = CDI_DIRS
    dev_dir: str = "/dev"
    extra_args: Sequence[str] = ()  # appended before the image, for a site's own needs

    @classmethod
    def of(cls, options: Mapping[str, object] | None) -> ContainerConfig:
        o = dict(options or {})
        auth = o.get("authfiles") or {}
        if not isinstance(auth, Mapping):
            raise ValueError("containers.authfiles must map tenant names to auth files")
        return cls(podman=str(o.get("podman") or "podman"), authfiles={str(k): str(v) for k, v in auth.items()},
                   cdi_dirs=tuple(o.get("cdi_dirs") or CDI_DIRS),  # type: ignore[arg-type]
                   dev_dir=str(o.get("dev_dir") or "/dev"),
                   extra_args=tuple(str(a) for a in o.get("extra_args") or ()))  # type: ignore[union-attr]


def has_nvidia_cdi(cdi_dirs: Sequence[str]) -> bool:
    """Is there an NVIDIA CDI spec (`nvidia-ctk cdi generate`) podman can resolve nvidia.com/gpu from?"""
    for d in cdi_dirs:
        for path in sorted(glob.glob(os.path.join(d, "*.yaml")) + glob.glob(os.path.join(d, "*.json"))):
            try:
                text = Path(path).read_text(errors="replace")
            except OSError:
                continue
            if "nvidia.com/gpu" in text:
                return True
    return False


def gpu_args(gpus: Sequence[int], cdi: bool, dev_dir: str = "/dev",
             exists=os.path.exists, driver_files: Sequence[str] = ()) -> list[str]:
    """podman arguments that give the container exactly `gpus` (host indices)."""
    if not gpus:
        return []
    if cdi:
        return [f"--device=nvidia.com/gpu={i}" for i in gpus]
    out = [f"--device={dev_dir}/nvidia{i}" for i in gpus if exists(f"{dev_dir}/nvidia{i}")]
    if not out:  # no NVIDIA device here (fake GPUs of a test inventory): the environment only
        return []
    out += [f"--device={dev_dir}/{n}" for n in NVIDIA_CONTROL if exists(f"{dev_dir}/{n}")]
    out += [f"--volume={f}:{f}:ro" for f in driver_files]
    return out


def driver_files() -> list[str]:
    """The host driver's user-space files a container needs without CDI (libcuda, NVML, nvidia-smi)."""
    found: list[str] = []
    for d in LIB_DIRS:
        for pattern in DRIVER_LIBS:
            found += [p for p in sorted(glob.glob(os.path.join(d, pattern))) if os.path.isfile(p)]
    return found + [b for b in DRIVER_BINS if os.path.isfile(b)]


def name_of(run_dir: Path, job_id: int, attempt: int, rank: int) -> str:
    """The container's name: unique per server (its run directory) and rank of an attempt."""
    tag = hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:8]
    return f"gpufleet-{tag}-{job_id}-{attempt}-{rank}"


def ulimit_args() -> list[str]:
    """The shim's own limits (a bare job's), not podman's defaults: raising them needs
    CAP_SYS_RESOURCE, which many hosts (and containers) do not give root; nproc at most pid_max."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)
    try:
        pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        pid_max = 32768
    def cap(v: int) -> int:
        return pid_max if v == resource.RLIM_INFINITY or v > pid_max else v
    def lim(v: int) -> str:
        return "-1" if v == resource.RLIM_INFINITY else str(v)
    return [f"--ulimit=nofile={lim(nofile[0])}:{lim(nofile[1])}",
            f"--ulimit=nproc={cap(nproc[0])}:{cap(nproc[1])}"]


def container_env(env: Mapping[str, str], spec_env: Mapping[str, str], gpus: Sequence[int]) -> dict[str, str]:
    """The rank's environment as the container gets it (see the module docstring)."""
    out = {k: v for k, v in env.items() if k not in IMAGE_DEFAULTS or k in spec_env}
    if gpus:
        out["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(len(gpus)))
    return out


def env_file(env: Mapping[str, str]) -> bytes:
    """podman's --env-file format: one K=V a line (values hold no line breaks: spec rules)."""
    return "".join(f"{k}={v}\n" for k, v in env.items()).encode("utf-8", "surrogateescape")


def render(cfg: ContainerConfig, job: Job, rank: int, *, name: str, workdir: str, results_dir: str,
           env_path: str, account: Account | None, cdi: bool, drivers: Sequence[str] = (),
           ulimits: Sequence[str] = (), rootless: bool = False, job_dirs: Sequence[str] = ()) -> list[str]:
    """`podman run ...` for rank `rank` of `job`. `account`: a root server's job owner (the
    container runs as it); None: as the server (`rootless`: podman keeps the server's uid).
    `results_dir` and `job_dirs` ($GPUFLEET_RUN_DIR, $GPUFLEET_CHECKPOINT_DIR) are bound at their
    own paths, so the variables mean the same inside."""
    spec = job.spec
    if ":" in workdir or "," in workdir:
        raise ValidationError("workdir", f"{workdir!r}: a container's workdir cannot hold ':' or ','")
    argv = [cfg.podman, "run", "--rm", f"--name={name}", "--init", "--network=host", "--ipc=host",
            f"--pull={spec.pull or DEFAULT_PULL}", "--log-driver=none", f"--env-file={env_path}",
            f"--label=io.gpufleet.job={job.id}", f"--label=io.gpufleet.attempt={job.attempt}",
            f"--label=io.gpufleet.rank={rank}", "--cap-drop=all", "--security-opt=no-new-privileges",
            *ulimits]
    auth = cfg.authfiles.get(spec.tenant)
    if auth:
        argv.append(f"--authfile={auth}")
    if account is not None:
        argv.append(f"--user={account.uid}:{account.gid}")
        argv += [f"--group-add={g}" for g in account.groups if g != account.gid]
    elif rootless:
        argv.append("--userns=keep-id")
    argv += [f"--volume={workdir}:{workdir}:rw", f"--workdir={workdir}",
             f"--volume={results_dir}:{results_dir}:rw"]
    argv += [f"--volume={d}:{d}:rw" for d in job_dirs]
    argv += [f"--volume={m}" for m in _mounts(spec.mounts)]
    argv += gpu_args(job.allocation[rank].gpus, cdi, cfg.dev_dir, driver_files=drivers)
    argv += list(cfg.extra_args)
    argv += ["--", spec.image or "", *spec.command]
    return argv


def _mounts(mounts: Sequence[str]) -> list[str]:
    out = []
    for text in mounts:
        m = parse_mount(text)
        out.append(f"{m.source}:{m.target}:{'ro' if m.read_only else 'rw'}")
    return out


def control_file(cfg: ContainerConfig, name: str, job: Job) -> bytes:
    """The rank's `container` file for the shim: podman, the name, the sources to check as the user."""
    ro = [parse_mount(m).source for m in job.spec.mounts if parse_mount(m).read_only]
    rw = [parse_mount(m).source for m in job.spec.mounts if not parse_mount(m).read_only]
    if job.spec.workdir:
        rw.append(job.spec.workdir)
    items = {"podman": cfg.podman, "name": name, "ro": "\n".join(ro), "rw": "\n".join(rw)}
    return b"".join(f"{k}={v}".encode("utf-8", "surrogateescape") + b"\0" for k, v in items.items())


def prepare(cfg: ContainerConfig, job: Job, rank: int, rank_dir: Path, run_dir: Path, *, workdir: str,
            results_dir: str, env: Mapping[str, str], account: Account | None,
            write: Callable[[Path, bytes], None]) -> list[str]:
    """Write the rank's `container` and container.env files (with `write`, privately) and return
    the shim's COMMAND: the `podman run` of this rank."""
    name = name_of(run_dir, job.id, job.attempt, rank)
    env_path = rank_dir / CONTAINER_ENV
    write(env_path, env_file(container_env(env, job.spec.env, job.allocation[rank].gpus)))
    cdi = has_nvidia_cdi(cfg.cdi_dirs)
    job_dirs = [env[k] for k in ("GPUFLEET_RUN_DIR", "GPUFLEET_CHECKPOINT_DIR") if env.get(k)]
    argv = render(cfg, job, rank, name=name, workdir=workdir, results_dir=results_dir, env_path=str(env_path),
                  account=account, cdi=cdi, drivers=() if cdi else driver_files(), ulimits=ulimit_args(),
                  rootless=os.geteuid() != 0, job_dirs=job_dirs)
    write(rank_dir / CONTAINER, control_file(cfg, name, job))
    return argv


def podman_env(account: Account) -> dict[str, str]:
    """podman's own environment (the shim's child): nothing of the job's, nothing of the server's
    beyond who it is; a rootless podman finds its storage through HOME and XDG_RUNTIME_DIR."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": account.home, "LANG": "C.UTF-8"}
    if account.uid != 0:
        env["XDG_RUNTIME_DIR"] = f"/run/user/{account.uid}" if os.path.isdir(f"/run/user/{account.uid}") \
            else f"/tmp/podman-run-{account.uid}"
    return env


__all__ = ["CONTAINER", "CONTAINER_ENV", "ContainerConfig", "container_env", "control_file", "driver_files",
           "env_file", "gpu_args", "has_nvidia_cdi", "name_of", "podman_env", "prepare", "render", "ulimit_args"]

"""A job's `image` on Slurm: the argv the batch script execs for each rank instead of the bare command.

Two runtimes, chosen once per executor (`container_runtime: auto|pyxis|podman`, auto: pyxis when
`srun --help` lists `--container-image`, as on NVIDIA's own clusters, else podman):

* pyxis/enroot: each rank runs `srun --overlap --nodes=1 --ntasks=1 --nodelist=<its node>
  --container-image=REGISTRY#IMAGE --container-mounts=SRC:DST[:ro],... --container-workdir=DIR CMD`,
  a step of its own inside the allocation, in the image; Slurm's GRES confines its GPUs, the
  environment passes in as srun exports it. Enroot caches the image per node; the pull policy is
  enroot's (it imports the image when the step starts), registry credentials are enroot's
  (`~/.config/enroot/.credentials` of the job's account).
* podman inside the allocation (what the dev cluster of the tests runs): a fixed bash wrapper runs
  `podman run --rm --name gpufleet-slurm-<slurm job>-<node id>-<pid> --init --network=host
  --ipc=host ... IMAGE CMD` in the foreground as the job's account (rootful for root, rootless for
  a user: that account's own image store), with its GPUs (CDI `nvidia.com/gpu=<i>` when an NVIDIA
  CDI spec exists on the node, else `/dev/nvidia<i>` and the control nodes; `i` from Slurm's
  SLURM_STEP_GPUS/SLURM_JOB_GPUS), CUDA_VISIBLE_DEVICES renumbered from 0 inside, every exported
  variable passed by name (`--env NAME`: values never on a command line), the working directory
  bound at the same path, `mounts`, the pull policy, the tenant's authfile, and the shell's
  ulimits. Both runtimes bind $GPUFLEET_RESULTS_DIR, $GPUFLEET_RUN_DIR and
  $GPUFLEET_CHECKPOINT_DIR at their own paths, so results, heartbeats and checkpoints written in
  the image land where gpufleet (and the next attempt) look for them. A cancel or gpufleet's
  exact time limit (scancel: SIGTERM to the step) stops the container (`podman stop`), and
  `podman rm -f` on the way out leaves none behind.

Nothing a user wrote becomes shell text: the wrappers are fixed strings, the image, mounts and
command are argv after them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from gpufleet.domain import Job
from gpufleet.domain.image import DEFAULT_PULL, parse_mount

RUNTIMES = ("auto", "pyxis", "podman")


@dataclass(frozen=True)
class SlurmContainers:
    """The `containers:` server setting as the Slurm engine uses it."""

    podman: str = "podman"
    authfiles: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, options: Mapping[str, object] | None) -> SlurmContainers:
        o = dict(options or {})
        auth = o.get("authfiles") or {}
        if not isinstance(auth, Mapping):
            raise ValueError("containers.authfiles must map tenant names to auth files")
        return cls(str(o.get("podman") or "podman"), {str(k): str(v) for k, v in auth.items()})


def has_pyxis(srun_help: str) -> bool:
    return "--container-image" in srun_help


def enroot_uri(image: str) -> str:
    """pyxis/enroot spell a registry with `#`: nvcr.io/nvidia/pytorch:24.05 -> nvcr.io#nvidia/pytorch:24.05."""
    first, sep, rest = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return f"{first}#{rest}"
    return image


# pyxis: `$0 OPTS... -- CMD...`: a step of its own on this rank's node, in the image.
PYXIS_WRAPPER = r"""gf_opts=()
while [ "$#" -gt 0 ] && [ "$1" != -- ]; do gf_opts+=("$1"); shift; done
shift
gf_m=
for gf_d in "${GPUFLEET_RESULTS_DIR:-}" "${GPUFLEET_RUN_DIR:-}" "${GPUFLEET_CHECKPOINT_DIR:-}"; do
  if [ -n "$gf_d" ]; then gf_m="${gf_m:+$gf_m,}$gf_d:$gf_d"; fi
done
if [ -n "$gf_m" ]; then
  gf_found=
  for gf_i in "${!gf_opts[@]}"; do
    case "${gf_opts[gf_i]}" in --container-mounts=*) gf_opts[gf_i]="${gf_opts[gf_i]},$gf_m"; gf_found=1 ;; esac
  done
  if [ -z "$gf_found" ]; then gf_opts+=("--container-mounts=$gf_m"); fi
fi
exec srun --overlap --nodes=1 --ntasks=1 --nodelist="$SLURMD_NODENAME" "${gf_opts[@]}" "$@"
"""

# podman: `$0 PODMAN OPTS... -- IMAGE CMD...`
PODMAN_WRAPPER = r"""gf_podman=$1; shift
gf_opts=()
while [ "$#" -gt 0 ] && [ "$1" != -- ]; do gf_opts+=("$1"); shift; done
shift
gf_name="gpufleet-slurm-${SLURM_JOB_ID:-0}-${SLURM_NODEID:-0}-$$"
gf_dev=()
gf_cdi=$(grep -ls 'nvidia.com/gpu' /etc/cdi/*.yaml /etc/cdi/*.json /var/run/cdi/*.yaml /var/run/cdi/*.json 2>/dev/null | head -n 1)
if [ -n "${GPUFLEET_GPUS:-}" ]; then
  gf_cvd=; gf_i=0
  for gf_g in ${GPUFLEET_GPUS//,/ }; do
    if [ -n "$gf_cdi" ]; then gf_dev+=("--device=nvidia.com/gpu=$gf_g")
    elif [ -e "/dev/nvidia$gf_g" ]; then gf_dev+=("--device=/dev/nvidia$gf_g"); fi
    gf_cvd="${gf_cvd:+$gf_cvd,}$gf_i"; gf_i=$((gf_i + 1))
  done
  if [ -z "$gf_cdi" ] && [ "${#gf_dev[@]}" -gt 0 ]; then
    for gf_n in nvidiactl nvidia-uvm nvidia-uvm-tools nvidia-modeset; do
      if [ -e "/dev/$gf_n" ]; then gf_dev+=("--device=/dev/$gf_n"); fi
    done
  fi
  export CUDA_VISIBLE_DEVICES="$gf_cvd"
fi
gf_res=()
for gf_d in "${GPUFLEET_RESULTS_DIR:-}" "${GPUFLEET_RUN_DIR:-}" "${GPUFLEET_CHECKPOINT_DIR:-}"; do
  if [ -n "$gf_d" ]; then gf_res+=(--volume "$gf_d:$gf_d"); fi
done
gf_env=()
for gf_k in $(compgen -e); do
  case "$gf_k" in PATH|HOME|SHELL|PWD|OLDPWD|SHLVL|_|BASH_*|gf_*) ;; *) gf_env+=(--env "$gf_k") ;; esac
done
gf_max=$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo 32768)
gf_lim() { if [ "$1" = unlimited ] || [ "$1" -gt "$gf_max" ]; then echo "$gf_max"; else echo "$1"; fi; }
gf_nofile() { if [ "$1" = unlimited ]; then echo -1; else echo "$1"; fi; }
gf_ulim=(--ulimit "nofile=$(gf_nofile "$(ulimit -Sn)"):$(gf_nofile "$(ulimit -Hn)")"
         --ulimit "nproc=$(gf_lim "$(ulimit -Su)"):$(gf_lim "$(ulimit -Hu)")")
gf_stop() { "$gf_podman" stop --time 5 "$gf_name" >/dev/null 2>&1; }
trap gf_stop TERM INT HUP
trap '"$gf_podman" rm --force --time 0 --ignore "$gf_name" >/dev/null 2>&1' EXIT
"$gf_podman" run --rm --name "$gf_name" --init --network=host --ipc=host --log-driver=none \
  "${gf_ulim[@]}" "${gf_dev[@]}" "${gf_env[@]}" "${gf_res[@]}" --volume "$PWD:$PWD" --workdir "$PWD" \
  "${gf_opts[@]}" -- "$@" &
gf_pid=$!
wait "$gf_pid"; gf_rc=$?
while kill -0 "$gf_pid" 2>/dev/null; do wait "$gf_pid"; gf_rc=$?; done
exit "$gf_rc"
"""


def pyxis_argv(job: Job) -> list[str]:
    spec = job.spec
    opts = [f"--container-image={enroot_uri(spec.image or '')}"]
    if spec.mounts:
        parts = []
        for text in spec.mounts:
            m = parse_mount(text)
            parts.append(f"{m.source}:{m.target}" + (":ro" if m.read_only else ""))
        opts.append("--container-mounts=" + ",".join(parts))
    if spec.workdir:
        opts.append(f"--container-workdir={spec.workdir}")
    return ["bash", "-c", PYXIS_WRAPPER, "gpufleet-pyxis", *opts, "--", *spec.command]


def podman_argv(job: Job, cfg: SlurmContainers) -> list[str]:
    spec = job.spec
    opts = [f"--pull={spec.pull or DEFAULT_PULL}", f"--label=io.gpufleet.job={job.id}",
            f"--label=io.gpufleet.run={job.restarts}"]
    auth = cfg.authfiles.get(spec.tenant)
    if auth:
        opts.append(f"--authfile={auth}")
    for text in spec.mounts:
        m = parse_mount(text)
        opts.append(f"--volume={m.source}:{m.target}:{'ro' if m.read_only else 'rw'}")
    return ["bash", "-c", PODMAN_WRAPPER, "gpufleet-podman", cfg.podman, *opts, "--", spec.image or "",
            *spec.command]


def container_reason(log: bytes, code: int | None) -> str | None:
    """podman's (or pyxis') own reason when the container could not start: the last `Error:` /
    `pyxis:` line of the rank's output with exit 125-127 (e.g. an image that cannot be pulled)."""
    if code not in (125, 126, 127):
        return None
    for line in reversed(log[-8192:].decode(errors="replace").strip().splitlines()):
        line = line.strip()
        if line.startswith("Error: "):
            return "container: " + line[7:][:500]
        if line.startswith("pyxis: ") or line.startswith("slurmstepd: error: pyxis: "):
            return "container: " + line.split("pyxis: ", 1)[1][:500]
    return None


def container_command(job: Job, runtime: str, cfg: SlurmContainers) -> Sequence[str]:
    """What each rank execs: the bare command, or the container of `runtime` (pyxis|podman) around it."""
    if not job.spec.image:
        return job.spec.command
    return pyxis_argv(job) if runtime == "pyxis" else podman_argv(job, cfg)


__all__ = ["PODMAN_WRAPPER", "PYXIS_WRAPPER", "RUNTIMES", "SlurmContainers", "container_command", "container_reason",
           "enroot_uri",
           "has_pyxis", "podman_argv", "pyxis_argv"]

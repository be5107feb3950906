"""What gpufleet hands to Slurm for one job: the batch script, the submit options, the comment that
identifies the job, and where its output lands. Pure: no I/O."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from gpufleet.domain import Job
from gpufleet.executors.base import master_port_for, rank_env

# Rank variables that differ per task; everything else is the same on all ranks.
PER_RANK_KEYS = ("GPUFLEET_NODE", "NODE_RANK", "GPUFLEET_NODE_RANK")
GPU_KEYS = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "GPUFLEET_GPUS")


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a Slurm job is, written into its --comment: `<tag>:<job id>:<run>:<submitted ms>:<alloc>`.

    `run` is the job's restart count (a requeued job is a new Slurm job); `submitted ms` tells a job
    of this gpufleet database from one of an earlier database that reused the id. `alloc` is where
    gpufleet planned the ranks (`gpu01=0,1;gpu02=0,1`), used to keep GPU bookkeeping consistent."""

    tag: str
    job_id: int
    run: int
    stamp: int
    alloc: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, int, int, int]:
        return (self.tag, self.job_id, self.run, self.stamp)

    def comment(self) -> str:
        alloc = ";".join(f"{n}={','.join(map(str, g))}" for n, g in self.alloc.items())
        return f"{self.tag}:{self.job_id}:{self.run}:{self.stamp}:{alloc}"

    @classmethod
    def of_job(cls, tag: str, job: Job) -> Identity:
        alloc: dict[str, tuple[int, ...]] = {}
        for a in job.allocation:
            alloc[a.node] = alloc.get(a.node, ()) + tuple(a.gpus)
        return cls(tag, job.id, job.restarts, int(job.submitted_at * 1000), alloc)

    @classmethod
    def parse(cls, comment: str) -> Identity | None:
        parts = comment.split(":", 4)
        if len(parts) != 5 or not all(p.lstrip("-").isdigit() for p in parts[1:4]):
            return None
        alloc: dict[str, tuple[int, ...]] = {}
        for item in filter(None, parts[4].split(";")):
            node, _, gpus = item.partition("=")
            alloc[node] = tuple(int(g) for g in gpus.split(",") if g.isdigit())
        return cls(parts[0], int(parts[1]), int(parts[2]), int(parts[3]), alloc)


def account_name(tenant: str) -> str:
    """Slurm account for a tenant: lower case, only [a-z0-9_-] (Slurm lower-cases accounts anyway)."""
    name = re.sub(r"[^a-z0-9_-]+", "_", tenant.lower()).strip("_")
    return name or "default"


def job_name(job: Job) -> str:
    """`gf<id>-<name>`: readable in squeue, unique per gpufleet job, searchable with sacct --name."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", job.spec.display_name)[:48]
    return f"gf{job.id}-{name}"


def log_paths(log_dir: str, job: Job) -> tuple[str, str]:
    """(rank 0 / batch output incl. Slurm's own messages, pattern for rank r>0 with `{rank}`)."""
    base = f"{log_dir.rstrip('/')}/gf{job.id}.{job.restarts}"
    return f"{base}.out", f"{base}.rank{{rank}}.out"


def rank_log(log_dir: str, job: Job, rank: int) -> str:
    main, pattern = log_paths(log_dir, job)
    return main if rank == 0 else pattern.format(rank=rank)


def time_minutes(seconds: int) -> int:
    """Slurm limits are whole minutes: round up (gpufleet enforces the exact second itself)."""
    return max(1, -(-seconds // 60))


@dataclass(frozen=True, slots=True)
class SubmitRequest:
    """Everything a Slurm API needs to submit one job (CLI and REST build their call from it)."""

    script: str
    name: str
    comment: str
    account: str
    nodes: int
    gres: str | None
    output: str
    cpus_per_task: int | None = None
    mem_mb: int | None = None
    time_minutes: int | None = None
    nodelist: str | None = None
    partition: str | None = None
    reservation: str | None = None
    constraint: str | None = None
    workdir: str | None = None

    def sbatch_args(self) -> list[str]:
        args = [
            "--parsable", f"--job-name={self.name}", f"--comment={self.comment}", f"--account={self.account}",
            f"--nodes={self.nodes}", "--ntasks-per-node=1", f"--output={self.output}", f"--error={self.output}",
            "--open-mode=append", "--export=ALL",
        ]
        optional = {
            "--gres": self.gres, "--cpus-per-task": self.cpus_per_task, "--time": self.time_minutes,
            "--nodelist": self.nodelist, "--partition": self.partition, "--reservation": self.reservation,
            "--constraint": self.constraint, "--chdir": self.workdir,
        }
        args += [f"{k}={v}" for k, v in optional.items() if v is not None]
        if self.mem_mb is not None:
            args.append(f"--mem={self.mem_mb}M")
        return args


def gres_of(job: Job) -> str | None:
    spec = job.spec
    if spec.gpus <= 0:
        return None
    return f"gpu:{spec.gpu_model}:{spec.gpus}" if spec.gpu_model else f"gpu:{spec.gpus}"


def constraint_of(job: Job) -> str | None:
    """gpufleet constraints -> Slurm features (`rack=r1` -> `rack:r1`, `nvlink=true` -> `nvlink`).
    Hardware identity that Slurm has no feature for (kind, arch, gpu_model) is left out."""
    feats = []
    for key, value in sorted(job.spec.constraints.items()):
        if key in ("kind", "arch", "gpu_model", "gpu-model", "model"):
            continue
        feats.append(key if value == "true" else f"{key}:{value}")
    return "&".join(feats) or None


def build_script(job: Job, addresses: dict[str, str], log_dir: str, placed: bool) -> str:
    """The batch script. It runs on the first node of the allocation; a multi-node job starts one
    task per node with srun. Each task works out its rank (gpufleet's rank order when gpufleet placed
    the job, else SLURM_NODEID), exports the rank environment and keeps Slurm's own GPU ids
    (CUDA_VISIBLE_DEVICES as Slurm set it is what the devices are allocated under)."""
    port = master_port_for(job.id)
    ranks = len(job.allocation) or job.spec.nodes
    master = addresses.get(job.allocation[0].node, job.allocation[0].node) if placed and job.allocation else ""
    common = dict(job.spec.env)
    if job.allocation:
        common.update({k: v for k, v in rank_env(job, 0, master or "127.0.0.1", port).items()
                       if k not in PER_RANK_KEYS + GPU_KEYS})
    common.update({"GPUFLEET_JOB_ID": str(job.id), "GPUFLEET_JOB_NAME": job.spec.display_name,
                   "GPUFLEET_TENANT": job.spec.tenant, "MASTER_PORT": str(port), "GPUFLEET_MASTER_PORT": str(port),
                   "WORLD_SIZE": str(ranks), "GPUFLEET_WORLD_SIZE": str(ranks)})
    rank_case = ""
    if placed and job.allocation:
        rank_case = "".join(f"    {shlex.quote(a.node)}) r={i} ;;\n" for i, a in enumerate(job.allocation))
    prefix, _, suffix = log_paths(log_dir, job)[1].partition("{rank}")
    lines = [
        "#!/bin/bash",
        f"# gpufleet job {job.id} run {job.restarts}: {shlex.join(job.spec.command)}"[:2000],
        *(f"export {k}={shlex.quote(v)}" for k, v in common.items() if _valid_name(k)),
    ]
    if not master:
        lines += ['MASTER_ADDR=$(scontrol show node "$SLURMD_NODENAME" 2>/dev/null'
                  " | sed -n 's/.*NodeAddr=\\([^ ]*\\).*/\\1/p')",
                  'export MASTER_ADDR=${MASTER_ADDR:-$(hostname)} GPUFLEET_MASTER_ADDR=${MASTER_ADDR:-$(hostname)}']
    else:
        lines.append(f"export MASTER_ADDR={shlex.quote(master)} GPUFLEET_MASTER_ADDR={shlex.quote(master)}")
    if not placed or not job.allocation:
        lines.append('export GPUFLEET_NODELIST="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | paste -sd,)"')
    lines += [
        "gpufleet_rank() {",
        '  r=${SLURM_NODEID:-0}',
        '  case "$SLURMD_NODENAME" in',
        rank_case + "  esac",
        '  export NODE_RANK=$r GPUFLEET_NODE_RANK=$r GPUFLEET_NODE=$SLURMD_NODENAME',
        '  g=${SLURM_STEP_GPUS:-${SLURM_JOB_GPUS:-}}',
        '  export GPUFLEET_GPUS=$g CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-$g}',
        '  export NVIDIA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES',
        f'  if [ "$r" != 0 ]; then log={shlex.quote(prefix)}"$r"{shlex.quote(suffix)}; exec >>"$log" 2>&1; fi',
        '  exec "$@"',
        "}",
        "export -f gpufleet_rank",
    ]
    cmd = shlex.join(job.spec.command)
    if ranks > 1:
        lines.append(f"srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c 'gpufleet_rank \"$@\"' gpufleet {cmd}")
    else:
        lines.append(f"gpufleet_rank {cmd}")
    return "\n".join(lines) + "\n"


def _valid_name(key: str) -> bool:
    return re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) is not None

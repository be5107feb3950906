"""What gpufleet hands to Slurm for one job: the batch script, the submit options, the comment that
identifies the job, and where its output lands. Pure: no I/O.

Nothing a user wrote ever becomes script text. sbatch reads `#SBATCH` options from the script's
first lines and bash reads every line as code, so a command argument or env value holding a newline
(or a quote, `$(...)`, a backtick) must never be pasted into the script, quoted or not. Instead the
script is one fixed text (`_BODY`) preceded by five assignments of single-quoted base64 payloads
(argv, env, rank plan, the run's folder and perf steps, the job's checkpoint folder; each a list of
NUL-terminated strings) and one integer. Base64's alphabet has
no quote, newline, `$`, backtick or `#`, so a payload cannot end its quotes or start a line whatever
it holds; the fixed text decodes it (`base64 -d` into `mapfile -d ''`) and execs the argv as argv.
A separate file staged beside the script was the alternative: it needs a filesystem shared with the
compute nodes that slurmrestd submissions do not have, and a second thing to clean up. NUL, which no
argument or environment can hold, is refused (ValueError) rather than cut.

What still goes to Slurm outside the script is argv or JSON, never shell: the job name (reduced to
`[A-Za-z0-9_.-]`), the account (`[a-z0-9_-]`), the identity comment (integers and names checked
against `[A-Za-z0-9_.-]`, since `sacct -P` output is split on `|` and lines), constraints (checked
likewise, since `&|,*[]` are Slurm's constraint operators) and paths (--chdir, --output)."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from gpufleet.domain import Job
from gpufleet.executors.base import master_port_for, rank_env

# Rank variables that differ per task; everything else is the same on all ranks.
PER_RANK_KEYS = ("GPUFLEET_NODE", "NODE_RANK", "GPUFLEET_NODE_RANK")
GPU_KEYS = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "GPUFLEET_GPUS")
# Set by the script itself on the node (after the job's env, so they win).
SCRIPT_KEYS = ("MASTER_ADDR", "GPUFLEET_MASTER_ADDR", "GPUFLEET_NODELIST")


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
        for value in (self.tag, *self.alloc):
            safe_word("comment", value)
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


def job_dir(log_dir: str, job: Job) -> str:
    """This run's own folder beside its output: `rank-<r>/results/` ($GPUFLEET_RESULTS_DIR),
    `rank-<r>/run/` ($GPUFLEET_RUN_DIR, holding $GPUFLEET_HEARTBEAT_FILE), `rank-<r>/node`, and for
    a perf job `rank-<r>/perf-prolog.json`, `perf-prolog.rc`, `perf.json`."""
    return f"{log_dir.rstrip('/')}/gf{job.id}.{job.restarts}.d"


def checkpoint_dir(root: str, tag: str, job: Job) -> str:
    """$GPUFLEET_CHECKPOINT_DIR: one folder per gpufleet job under the shared `root`, the same for
    every attempt (so a restart resumes from it). Named by the installation tag, job id and submit
    time, like the identity: a job of another installation or of an earlier database that reused
    the id never finds this job's checkpoints."""
    return f"{root.rstrip('/')}/{safe_word('checkpoint_dir', tag)}-{int(job.id)}-{int(job.submitted_at * 1000)}"


@dataclass(frozen=True, slots=True)
class PerfSteps:
    """How the batch script runs the clean-room steps of a perf job on each node: `gpufleet` (the
    server's own entry point, same venv), the prolog's options from the job's policy, the sampling
    period, and a fake NVML spec file (tests/demos on GPU-less nodes; "" = real NVML)."""

    gpufleet: str
    prolog_args: tuple[str, ...] = ()
    sample_s: float = 5.0
    fake_nvml: str = ""

    @classmethod
    def of_job(cls, job: Job, gpufleet: str, fake_nvml: str = "") -> PerfSteps | None:
        policy = job.spec.perf
        if policy is None:
            return None
        args: list[str] = []
        if policy.clocks and policy.clocks != "as_is":
            args += ["--clocks", str(policy.clocks)]
        if policy.max_temp_c is not None:
            args += ["--max-temp", str(int(policy.max_temp_c))]
        return cls(gpufleet, tuple(args), float(policy.sample_s), fake_nvml)

    def payload(self, folder: str) -> list[str]:
        return [folder, self.gpufleet, f"{self.sample_s:g}", self.fake_nvml, *self.prolog_args]


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
    # The job's whole starting environment (HOME, USER, LOGNAME, SHELL, PATH, LANG of the account it
    # runs as): sbatch runs with exactly this environment and --export=ALL, slurmrestd gets it as the
    # job's `environment`. Nothing of the server's environment reaches the job.
    environment: Mapping[str, str] = field(default_factory=dict)
    uid: int | None = None  # a root server: run the job as this account (sbatch --uid/--gid)
    gid: int | None = None
    exclusive: bool = False  # a perf job: whole nodes, nothing else of Slurm's beside it

    def sbatch_args(self) -> list[str]:
        args = [
            "--parsable", f"--job-name={self.name}", f"--comment={self.comment}", f"--account={self.account}",
            f"--nodes={self.nodes}", "--ntasks-per-node=1", f"--output={self.output}", f"--error={self.output}",
            "--open-mode=append", "--export=ALL",  # ALL of sbatch's built environment (see `environment`)
            "--no-requeue",  # gpufleet restarts a run as a new attempt (a new Slurm job); Slurm never requeues
        ]
        if self.uid is not None:
            args += [f"--uid={int(self.uid)}", f"--gid={int(self.gid if self.gid is not None else self.uid)}"]
        if self.exclusive:
            args.append("--exclusive")
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
        safe_word("constraints", key)
        feats.append(key if value == "true" else f"{key}:{safe_word('constraints', value)}")
    return "&".join(feats) or None


# The fixed text of every batch script. Nothing of a job is formatted into it: the job's command,
# environment and rank plan arrive as the base64 payloads that build_script puts above it.
_BODY = r"""gpufleet_decode() { printf %s "$1" | base64 -d; }
mapfile -d '' -t gpufleet_p < <(gpufleet_decode "$gpufleet_plan")
gpufleet_master=${gpufleet_p[2]}
if [ -z "$gpufleet_master" ]; then
  gpufleet_master=$(scontrol show node "$SLURMD_NODENAME" 2>/dev/null | sed -n 's/.*NodeAddr=\([^ ]*\).*/\1/p')
  gpufleet_master=${gpufleet_master:-$(hostname)}
fi
gpufleet_nodelist=${gpufleet_p[3]}
if [ -z "$gpufleet_nodelist" ]; then
  gpufleet_nodelist="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | paste -sd,)"
fi
export gpufleet_argv gpufleet_env gpufleet_plan gpufleet_job gpufleet_ckpt gpufleet_master gpufleet_nodelist
gpufleet_rank() {
  local gpufleet_kv gpufleet_i gpufleet_r=${SLURM_NODEID:-0} gpufleet_node=$SLURMD_NODENAME gpufleet_g gpufleet_cvd
  local gpufleet_ck
  mapfile -d '' -t gpufleet_p < <(gpufleet_decode "$gpufleet_plan")
  for ((gpufleet_i = 4; gpufleet_i < ${#gpufleet_p[@]}; gpufleet_i++)); do
    if [ "${gpufleet_p[gpufleet_i]}" = "$gpufleet_node" ]; then gpufleet_r=$((gpufleet_i - 4)); break; fi
  done
  gpufleet_g=${SLURM_STEP_GPUS:-${SLURM_JOB_GPUS:-}}
  gpufleet_cvd=${CUDA_VISIBLE_DEVICES:-$gpufleet_g}
  if [ "$gpufleet_r" != 0 ]; then exec >>"${gpufleet_p[0]}$gpufleet_r${gpufleet_p[1]}" 2>&1; fi
  mapfile -d '' -t gpufleet_j < <(gpufleet_decode "$gpufleet_job")
  gpufleet_d="${gpufleet_j[0]}/rank-$gpufleet_r"
  mkdir -p -m 0700 "${gpufleet_j[0]}" "$gpufleet_d" "$gpufleet_d/results" "$gpufleet_d/run"
  printf '%s\n' "$gpufleet_node" >"$gpufleet_d/node"
  gpufleet_ck=$(gpufleet_decode "$gpufleet_ckpt" | tr -d '\0')
  if [ -n "$gpufleet_ck" ]; then
    mkdir -p -m 0700 "$gpufleet_ck" 2>/dev/null
    if [ -L "$gpufleet_ck" ] || [ ! -d "$gpufleet_ck" ] || [ ! -O "$gpufleet_ck" ]; then
      echo "gpufleet: checkpoint folder $gpufleet_ck is not a directory of this job's user: the command did not run" >&2
      exit 75
    fi
  fi
  if [ "${#gpufleet_j[@]}" -lt 3 ]; then gpufleet_run "$@"; fi
  gpufleet_perf "$@"
}
gpufleet_run() {
  while IFS= read -r -d '' gpufleet_kv; do export "$gpufleet_kv"; done < <(gpufleet_decode "$gpufleet_env")
  export MASTER_ADDR="$gpufleet_master" GPUFLEET_MASTER_ADDR="$gpufleet_master"
  export GPUFLEET_NODELIST="$gpufleet_nodelist" GPUFLEET_NODE="$gpufleet_node"
  export NODE_RANK=$gpufleet_r GPUFLEET_NODE_RANK=$gpufleet_r GPUFLEET_GPUS="$gpufleet_g"
  export CUDA_VISIBLE_DEVICES="$gpufleet_cvd" NVIDIA_VISIBLE_DEVICES="$gpufleet_cvd"
  export GPUFLEET_RESULTS_DIR="$gpufleet_d/results" GPUFLEET_RUN_DIR="$gpufleet_d/run"
  export GPUFLEET_HEARTBEAT_FILE="$gpufleet_d/run/heartbeat"
  if [ -n "$gpufleet_ck" ]; then export GPUFLEET_CHECKPOINT_DIR="$gpufleet_ck"; fi
  unset gpufleet_argv gpufleet_env gpufleet_plan gpufleet_master gpufleet_nodelist gpufleet_p gpufleet_ranks
  unset gpufleet_job gpufleet_j gpufleet_ckpt gpufleet_ck
  exec "$@"
}
gpufleet_perf() {
  local gpufleet_bin=${gpufleet_j[1]} gpufleet_every=${gpufleet_j[2]} gpufleet_st="$gpufleet_d/perf-state.json"
  local gpufleet_fake=() gpufleet_rc gpufleet_sampler
  if [ -n "${gpufleet_j[3]}" ]; then gpufleet_fake=(--fake-nvml "${gpufleet_j[3]}"); fi
  "$gpufleet_bin" perf prolog --state "$gpufleet_st" "${gpufleet_fake[@]}" "${gpufleet_j[@]:4}" \
    >"$gpufleet_d/perf-prolog.json"
  gpufleet_rc=$?
  printf '%s\n' "$gpufleet_rc" >"$gpufleet_d/perf-prolog.rc"
  if [ "$gpufleet_rc" = 1 ]; then
    echo "gpufleet: the perf prolog refused this node ($gpufleet_node): the command did not run" >&2
    exit 75
  fi
  if [ "$gpufleet_rc" != 0 ]; then gpufleet_run "$@"; fi
  "$gpufleet_bin" perf sample --every "$gpufleet_every" --state "$gpufleet_st" "${gpufleet_fake[@]}" \
    >/dev/null 2>&1 &
  gpufleet_sampler=$!
  (gpufleet_run "$@")
  gpufleet_rc=$?
  kill "$gpufleet_sampler" 2>/dev/null
  wait "$gpufleet_sampler" 2>/dev/null
  "$gpufleet_bin" perf epilog --state "$gpufleet_st" "${gpufleet_fake[@]}" >"$gpufleet_d/perf.json"
  exit "$gpufleet_rc"
}
export -f gpufleet_decode gpufleet_rank gpufleet_run gpufleet_perf
mapfile -d '' -t gpufleet_cmd < <(gpufleet_decode "$gpufleet_argv")
if [ "$gpufleet_ranks" -gt 1 ]; then
  srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c 'gpufleet_rank "$@"' gpufleet "${gpufleet_cmd[@]}"
else
  gpufleet_rank "${gpufleet_cmd[@]}"
fi
"""


def build_script(job: Job, addresses: dict[str, str], log_dir: str, placed: bool,
                 command: Sequence[str] | None = None, perf: PerfSteps | None = None,
                 checkpoint: str = "") -> str:
    """The batch script. It runs on the first node of the allocation; a multi-node job starts one
    task per node with srun. Each task works out its rank (gpufleet's rank order when gpufleet placed
    the job, else SLURM_NODEID), exports the job's env, then the rank environment, and keeps Slurm's
    own GPU ids (CUDA_VISIBLE_DEVICES as Slurm set it is what the devices are allocated under).

    `command`: what each rank execs instead of the job's command (its container: container.py).
    `perf`: a perf job's clean-room steps. Each rank then runs `gpufleet perf prolog` first (exit 1,
    refused: the command does not run, the script exits 75), `gpufleet perf sample` in the
    background during the command, `gpufleet perf epilog` after; the verdicts land in the rank's
    folder of `job_dir` for the server to read when the job ends. The steps run in the script's own
    environment, before the job's env is exported. Every rank gets $GPUFLEET_RESULTS_DIR and its own
    $GPUFLEET_RUN_DIR with $GPUFLEET_HEARTBEAT_FILE in it (`job_dir`/rank-<r>/).

    `checkpoint`: the job's $GPUFLEET_CHECKPOINT_DIR (`checkpoint_dir`, "" = none), made by each rank
    as the job's user (0700) when missing; one that is a link or another user's is refused (exit 75,
    the command does not run): its parent is shared by every user, like the log folder.

    Raises ValueError for what no process can be given: a NUL byte in an argument, env key or value."""
    port = master_port_for(job.id)
    ranks = len(job.allocation) or job.spec.nodes
    master = addresses.get(job.allocation[0].node, job.allocation[0].node) if placed and job.allocation else ""
    env = {k: v for k, v in job.spec.env.items() if _valid_name(k) and not k.startswith("gpufleet_")}
    if job.allocation:
        env.update({k: v for k, v in rank_env(job, 0, master or "127.0.0.1", port).items()
                    if k not in PER_RANK_KEYS + GPU_KEYS + SCRIPT_KEYS})
    env.update({"GPUFLEET_JOB_ID": str(job.id), "GPUFLEET_JOB_NAME": job.spec.display_name,
                "GPUFLEET_TENANT": job.spec.tenant, "MASTER_PORT": str(port), "GPUFLEET_MASTER_PORT": str(port),
                "WORLD_SIZE": str(ranks), "GPUFLEET_WORLD_SIZE": str(ranks),
                "GPUFLEET_ATTEMPT": str(job.attempt), "GPUFLEET_RESTART_COUNT": str(job.restarts)})
    prefix, _, suffix = log_paths(log_dir, job)[1].partition("{rank}")
    in_order = placed and bool(job.allocation)
    plan = [prefix, suffix, master, ",".join(job.node_names) if in_order else "",
            *(a.node for a in job.allocation if in_order)]
    lines = [
        "#!/bin/bash",
        f"# gpufleet job {int(job.id)} run {int(job.restarts)}: its command, env and rank plan are the base64",
        "# payloads below (NUL-terminated strings); the rest of this script is the same for every job.",
        f"gpufleet_argv={_payload('command', job.spec.command if command is None else command)}",
        f"gpufleet_env={_payload('env', [f'{k}={v}' for k, v in env.items()])}",
        f"gpufleet_plan={_payload('plan', plan)}",
        f"gpufleet_job={_payload('job', perf.payload(job_dir(log_dir, job)) if perf else [job_dir(log_dir, job)])}",
        f"gpufleet_ckpt={_payload('checkpoint', [checkpoint])}",
        f"gpufleet_ranks={int(ranks)}",
    ]
    return "\n".join(lines) + "\n" + _BODY


def _payload(what: str, items: Iterable[str]) -> str:
    """`'<base64 of the items, each NUL-terminated>'`: only [A-Za-z0-9+/=] between two single quotes,
    so no byte of any item can end the quote, start a line, or be read by sbatch as an option."""
    data = bytearray()
    for i, item in enumerate(items):
        raw = item.encode("utf-8", "surrogateescape")
        if b"\0" in raw:
            raise ValueError(f"{what}: item {i} contains a NUL byte, which no process argument or environment holds")
        data += raw + b"\0"
    return "'" + base64.b64encode(bytes(data)).decode("ascii") + "'"


def safe_word(what: str, value: str) -> str:
    """`value` if it is a plain word ([A-Za-z0-9_.-], ASCII), else ValueError naming `what`."""
    if re.fullmatch(r"[A-Za-z0-9_.-]+", value, re.ASCII) is None:
        raise ValueError(f"{what}: {value!r} is not a plain word (letters, digits, '_', '.', '-')")
    return value


def _valid_name(key: str) -> bool:
    return re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key, re.ASCII) is not None

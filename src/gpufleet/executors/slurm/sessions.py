"""Interactive sessions on Slurm: `srun --jobid=ID --overlap [--pty]` into the job's allocation.

The engine-native path (docs/sessions.md): a step that shares the job's resources (`--overlap`),
on its first node, with the GPUs Slurm gives the step (CUDA_VISIBLE_DEVICES from its gres). srun
runs here on a pty the server holds (`setsid -c` makes it srun's controlling terminal, so a
resize reaches srun as SIGWINCH and srun passes it on), as the job's account when a root server
submits jobs as their owners (sbatch --uid: the same account), with the environment a job gets
(executors/accounts.job_env) plus the client's SLURM_CONF. A job with an `image` is refused here
for now (the step would run outside its container).
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import TYPE_CHECKING, Sequence

from gpufleet.domain import Job, JobState, ValidationError
from gpufleet.executors.accounts import job_env
from gpufleet.executors.local.sessions import PtyProcess, plain_pty, set_winsize
from gpufleet.executors.slurm.client import CLIENT_KEYS

START_WAIT_S = 60.0

if TYPE_CHECKING:
    from gpufleet.executors.slurm.executor import SlurmExecutor


def srun_argv(ex: SlurmExecutor, job: Job, argv: Sequence[str], shell: str, tty_mode: bool, workdir: str) -> list[str]:
    srun = os.path.join(ex.config.bin_dir, "srun") if ex.config.bin_dir else "srun"
    return ["setsid", "-w", "-c", srun, f"--jobid={job.handle}", "--overlap", *(["--pty"] if tty_mode else []),
            "--nodes=1", "--ntasks=1", "--quiet", f"--chdir={workdir}", *(list(argv) or [shell])]


def _wait_started(ex: SlurmExecutor, job: Job, timeout_s: float = START_WAIT_S) -> None:
    """gpufleet's RUNNING is its placement; Slurm may still hold the job a moment (prolog,
    scheduling pass), and srun into a pending job fails: wait until Slurm runs it."""
    squeue = os.path.join(ex.config.bin_dir, "squeue") if ex.config.bin_dir else "squeue"
    deadline = time.monotonic() + timeout_s
    state = ""
    while time.monotonic() < deadline:
        r = subprocess.run([squeue, "-h", "-j", job.handle, "-o", "%T"], capture_output=True, text=True,
                           timeout=30, env={**os.environ, **ex.config.env})
        state = r.stdout.strip()
        if state in ("RUNNING", ""):  # "": already gone; srun will say so
            return
        time.sleep(0.3)
    raise ValidationError("job", f"job {job.id} is still {state} in Slurm after {timeout_s:g}s; try again")


def open_session(ex: SlurmExecutor, job: Job, argv: Sequence[str], *, rows: int = 24, cols: int = 80,
                 term: str = "xterm-256color", tty_mode: bool = True, rank: int = 0) -> PtyProcess:
    if job.state is not JobState.RUNNING:
        raise ValidationError("job", f"job {job.id} is {job.state.value}, not RUNNING")
    if not (job.handle and job.handle.isdigit()):
        raise ValidationError("job", f"job {job.id} is not running in Slurm yet")
    if job.spec.image:
        raise ValidationError("image", "sessions in a container job are not available on the slurm engine yet")
    if rank != 0:
        raise ValidationError("rank", "sessions open on the job's first node")
    _wait_started(ex, job)
    account, as_owner = ex._runs_as(job)
    env = job_env(account, job.spec.env, {"GPUFLEET_JOB_ID": str(job.id)})
    env.update({k: os.environ[k] for k in CLIENT_KEYS if k in os.environ})
    env.update(ex.config.env)
    env["TERM"] = term or "xterm-256color"
    env.pop("SLURM_JWT", None)
    workdir = job.spec.workdir or account.home or "/"
    drop = as_owner and os.geteuid() == 0 and account.uid != 0
    master, slave = os.openpty()
    try:
        set_winsize(slave, rows, cols)
        if not tty_mode:
            plain_pty(slave)
        proc = subprocess.Popen(
            srun_argv(ex, job, argv, env.get("SHELL") or "/bin/sh", tty_mode, workdir),
            stdin=slave, stdout=slave, stderr=slave, close_fds=True, cwd="/", env=env,
            user=account.uid if drop else None, group=account.gid if drop else None,
            extra_groups=list(account.groups) if drop else None,  # not a group leader: setsid does not fork
        )
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    os.set_blocking(master, False)
    return PtyProcess(proc, master)


__all__ = ["open_session", "srun_argv"]

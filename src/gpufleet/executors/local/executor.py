"""LocalExecutor: every rank of a job runs under a detached shim on this host.

Several "virtual nodes" of the inventory all execute here; a rank sees exactly its GPUs through
CUDA_VISIBLE_DEVICES/NVIDIA_VISIBLE_DEVICES. Everything the executor knows lives in files under
`run_dir` (see files.py), one directory per attempt of a job (`job.attempt`), so a new LocalExecutor
on the same run_dir (a restarted server) sees the jobs of the old one: that is re-attachment, and
`poll` is all it takes. A requeued job is launched as a new attempt, in a fresh directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, Sequence

from gpufleet.domain import Job, ValidationError
from gpufleet.executors.base import (
    Ability,
    ArtifactFile,
    ExecutorBase,
    HEARTBEAT_FILE,
    LogChunk,
    Observation,
    Phase,
    ResultFile,
    attempt_view,
    master_port_for,
    newest_mtime,
    newest_write_below,
    rank_env,
)
from gpufleet.executors.logfile import UnsafeLog, read_chunk, refusal
from gpufleet.executors.local.results import RESULTS, make_results_dir, read_results
from gpufleet.executors.local.container import CONTAINER, ContainerConfig, name_of, podman_env, prepare
from gpufleet.executors.artifact_files import MAX_FILES as MAX_ARTIFACTS, find_artifacts
from gpufleet.executors.accounts import (
    DEFAULT_PATH, RUN_AS, Account, Accounts, job_env, this_account,
)
from gpufleet.executors.local.files import (
    JobPaths,
    RankPaths,
    create_exclusive,
    kill_group,
    proc_start,
    read_json,
    signal_process,
    write_json,
)
from gpufleet.executors.local.sessions import PtyProcess, open_session
from gpufleet.executors.local.status import RankState, RankView, judge, view_job

SHIM = Path(__file__).with_name("shim.py")
RUN = "run"  # rank-<r>/run/: $GPUFLEET_RUN_DIR, the job's own (its heartbeat file lives there)
LOG_CHUNK = 1 << 20


class LaunchError(RuntimeError):
    """A rank could not be spawned; the ranks already started were stopped."""


class LocalExecutor(ExecutorBase):
    name = "local"
    abilities = frozenset({Ability.LOGS, Ability.ADOPT, Ability.HOST_PATHS, Ability.RUN_AS_OWNER,
                           Ability.RESULTS, Ability.IMAGES, Ability.ARTIFACTS,
                           Ability.SESSIONS, Ability.HEARTBEAT})
    # not CONCURRENT_LAUNCH: launch is thread-safe (self._lock, O_EXCL markers) but serial under that
    # lock, and a spawn takes milliseconds: parallel calls would only add thread hops
    launch_timeout_s = 5.0  # a marker without a shim for this long: the launcher died mid-launch

    def __init__(
        self,
        run_dir: Path,
        addresses: dict[str, str] | None = None,
        grace_s: float = 5.0,
        python: str = sys.executable,
        accounts: Accounts | None = None,
        lang: str | None = None,
        containers: ContainerConfig | None = None,
    ):
        self.run_dir = Path(run_dir)
        self.addresses = dict(addresses or {})
        self.grace_s = grace_s
        self.python = python
        self.accounts = accounts  # None: jobs run as this process, HOME etc. of its account
        self.lang = lang
        self.containers = containers or ContainerConfig()  # a job's `image` runs in podman (container.py)
        self._lock = threading.Lock()
        self._children: dict[tuple[int, int], subprocess.Popen[bytes]] = {}  # reaped in poll
        (self.run_dir / "jobs").mkdir(parents=True, exist_ok=True)

    def job_dir(self, job_id: int, attempt: int = 1) -> Path:
        """The directory of attempt `attempt` of a job (rank-<r>/ inside)."""
        return self.paths(job_id, attempt).root

    def paths(self, job_id: int, attempt: int) -> JobPaths:
        return JobPaths.of(self.run_dir, job_id, attempt)

    # launch ------------------------------------------------------------------------------------
    def launch(self, job: Job) -> str:
        """Spawn one shim per rank of attempt `job.attempt`, each at most once ever (O_EXCL marker
        in the attempt's directory); all or nothing."""
        if not job.allocation:
            raise ValidationError("allocation", f"job {job.id} has no allocation")
        if not job.spec.command:
            raise ValidationError("command", "empty command")
        paths = self.paths(job.id, job.attempt)
        with self._lock:
            paths.root.mkdir(parents=True, exist_ok=True)
            if paths.launch_failed.exists():
                raise LaunchError(f"an earlier launch failed: {paths.launch_failed.read_text()}")
            if not paths.meta.exists():
                write_json(paths.meta, _describe(job))
            for r in range(len(job.allocation)):
                try:
                    self._spawn_rank(job, r, paths.rank(r))
                except Exception as e:
                    self._abort(job, paths, f"rank {r} could not be started: {e}")
                    raise LaunchError(f"rank {r} could not be started: {e}") from e
        return str(paths.root)

    def _spawn_rank(self, job: Job, r: int, rp: RankPaths) -> None:
        rp.dir.mkdir(mode=0o700, exist_ok=True)
        try:
            os.close(os.open(rp.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            return  # spawned before (maybe by a previous server): never twice
        try:
            account, drop = self._account(job)  # no account (root server): FAILED with why
            workdir = job.spec.workdir or str(_own_workdir(rp, account if drop else None))
            owner = (account.uid, account.gid) if drop else (None, None)
            make_results_dir(rp.dir, *owner)
            _own_dir(rp.dir / RUN, *owner)
            _own_dir(self.checkpoint_dir(job.id), *owner)
            env, command, cwd = self._rank_env(job, r, account), list(job.spec.command), workdir
            if job.spec.image:  # the shim supervises `podman run` instead (container.py)
                command = prepare(self.containers, job, r, rp.dir, self.run_dir, workdir=workdir,
                                  results_dir=env["GPUFLEET_RESULTS_DIR"], env=env,
                                  account=account if drop else None, write=_write_private)
                env, cwd = podman_env(this_account()), str(rp.dir)
            _write_private(rp.env, _env_file(env))
            if drop:
                first = not job.spec.workdir or bool(job.spec.image)
                _write_private(rp.dir / RUN_AS, account.run_as_text(cwd_first=first))
            argv = [
                self.python, "-I", "-S", str(SHIM), str(rp.dir), str(job.spec.time_limit_s or 0),
                str(self.grace_s), cwd, "--", *command,
            ]
            with open(rp.shim_log, "ab") as log:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    cwd=rp.dir, start_new_session=True, close_fds=True, env={"PATH": DEFAULT_PATH},
                )
        except BaseException:
            rp.marker.unlink(missing_ok=True)  # nothing was spawned for this rank
            raise
        self._children[(job.id, r)] = proc
        write_json(rp.shim, {"pid": proc.pid, "start": proc_start(proc.pid), "spawned_at": time.time()})

    def _account(self, job: Job) -> tuple[Account, bool]:
        """(the account `job` runs as, whether the shim must drop to it)."""
        if self.accounts is None:
            return this_account(), False
        return self.accounts.resolve(job.user), self.accounts.run_as_owner

    def _rank_env(self, job: Job, r: int, account: Account | None = None) -> dict[str, str]:
        """The rank's whole environment, built (see account.job_env): nothing of the server's."""
        master = self.addresses.get(job.allocation[0].node, "127.0.0.1")
        ranks = rank_env(job, r, master_addr=master, master_port=master_port_for(job.id))
        rank_dir = self.paths(job.id, job.attempt).rank(r).dir
        ranks["GPUFLEET_RESULTS_DIR"] = str(rank_dir / RESULTS)
        ranks["GPUFLEET_RUN_DIR"] = str(rank_dir / RUN)
        ranks["GPUFLEET_HEARTBEAT_FILE"] = str(rank_dir / RUN / HEARTBEAT_FILE)
        ranks["GPUFLEET_CHECKPOINT_DIR"] = str(self.checkpoint_dir(job.id))
        return job_env(account or this_account(), job.spec.env, ranks, self.lang)

    def checkpoint_dir(self, job_id: int) -> Path:
        """$GPUFLEET_CHECKPOINT_DIR: one per job, beside its attempts, so it survives restarts."""
        return self.run_dir / "jobs" / str(job_id) / "checkpoint"

    def last_sign_of_life(self, job: Job) -> float | None:
        """The newest touch of any rank's heartbeat file or output log (lstat: no link followed)."""
        paths = self.paths(job.id, job.attempt)
        ranks = [paths.rank(r) for r in range(len(job.allocation))]
        return newest_mtime(f for rp in ranks for f in (rp.dir / RUN / HEARTBEAT_FILE, rp.output))

    def last_checkpoint(self, job: Job) -> float | None:
        return newest_write_below(self.checkpoint_dir(job.id))

    def _abort(self, job: Job, paths: JobPaths, why: str) -> None:
        create_exclusive(paths.launch_failed, why)
        for r in paths.existing_ranks():
            _stop_rank(paths.rank(r), "abort")

    # poll --------------------------------------------------------------------------------------
    def poll(self, jobs: Sequence[Job]) -> list[Observation]:
        self._reap()
        out = []
        for job in jobs:
            obs = self._poll_one(job)
            if obs is not None:
                out.append(obs)
        return out

    def _poll_one(self, job: Job) -> Observation | None:
        paths = self.paths(job.id, job.attempt)
        ranks = len(job.allocation) or len(paths.existing_ranks())
        views = view_job(paths, ranks, self.launch_timeout_s)
        failed = _read_text(paths.launch_failed)
        unlaunched = [v for v in views if v.state is RankState.UNLAUNCHED]
        if (unlaunched or not views) and failed is None:
            if job.handle is None:
                return None  # not launched yet: the control loop launches it
            for v in unlaunched:
                v.state, v.reason = RankState.LOST, f"rank {v.rank}: no trace in {paths.root}"
            if not views:
                return Observation(job.id, Phase.LOST, reason=f"no trace in {paths.root}")
        self._enforce_gang(paths, views)
        verdict = judge(views, failed, job.spec.time_limit_s)
        return Observation(job.id, verdict.phase, verdict.exit_code, verdict.reason, str(paths.root),
                           verdict.at)

    def _enforce_gang(self, paths: JobPaths, views: list[RankView]) -> None:
        """A gang fails as a whole: one bad rank stops the others; orphans of lost ranks die."""
        if not any(v.bad for v in views):
            return
        for v in views:
            if v.state is RankState.LOST:
                if paths.rank(v.rank).dir.is_dir():
                    create_exclusive(paths.rank(v.rank).stop, "lost")  # a late shim must not run it
                kill_group(v.pids.get("child_pgid"), v.pids.get("child_start"))
                self._remove_container(paths, v.rank)
            elif v.active:
                _stop_rank(paths.rank(v.rank), "gang")

    def _remove_container(self, paths: JobPaths, r: int) -> None:
        """A lost rank's container (its shim died: nobody else will stop it)."""
        if not (paths.rank(r).dir / CONTAINER).exists():
            return
        meta = read_json(paths.meta) or {}
        name = name_of(self.run_dir, int(meta.get("id", 0)), int(meta.get("attempt", 1)), r)
        subprocess.run([self.containers.podman, "rm", "--force", "--time", "0", "--ignore", name],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=False, timeout=30)

    def _reap(self) -> None:
        with self._lock:
            for key, proc in list(self._children.items()):
                if proc.poll() is not None:
                    del self._children[key]

    # cancel ------------------------------------------------------------------------------------
    def cancel(self, job: Job) -> None:
        """Ask every rank's shim of the current attempt to stop (TERM, grace, KILL happen there).
        Does not wait."""
        paths = self.paths(job.id, job.attempt)
        with self._lock:
            ranks = range(len(job.allocation)) if job.allocation else paths.existing_ranks()
            for r in ranks:
                rp = paths.rank(r)
                rp.dir.mkdir(parents=True, exist_ok=True)  # a stop before the launch wins too
                _stop_rank(rp, "cancel")

    # logs --------------------------------------------------------------------------------------
    def logs(self, job: Job, offset: int = 0, rank: int = 0, attempt: int | None = None) -> LogChunk:
        view, over = attempt_view(job, attempt)
        n = len(view.allocation) or None
        if rank < 0 or (n is not None and rank >= n):
            raise ValidationError("rank", f"job {job.id} has no rank {rank}")
        paths = self.paths(job.id, view.attempt)
        ended = over or view.state.terminal or all(
            paths.rank(r).exit.exists() for r in (range(n) if n else paths.existing_ranks()))
        where = (*paths.parts(self.run_dir), f"rank-{rank}", "output.log")
        try:  # level by level, no link followed: a job cannot have another file served as its log
            data, size = read_chunk(self.run_dir, where, offset, LOG_CHUNK)
        except FileNotFoundError:
            return LogChunk(b"", offset, ended, note="" if ended else "no output yet")
        except UnsafeLog:
            return LogChunk(b"", offset, True, note=refusal(f"the output of rank {rank}"))
        return LogChunk(data, offset + len(data), ended and offset + len(data) >= size)

    # results ---------------------------------------------------------------------------------
    def results(self, job: Job, attempt: int) -> tuple[list[ResultFile], list[str]]:
        """The files every rank of run `attempt` left in its results directory, and notes."""
        paths = self.paths(job.id, attempt)
        files: list[ResultFile] = []
        notes: list[str] = []
        for r in paths.existing_ranks():
            f, n = read_results(self.run_dir, (*paths.parts(self.run_dir), f"rank-{r}"), r)
            files += f
            notes += n
        return files, notes

    def artifacts(self, job: Job, attempt: int, globs: Sequence[str], notes: list[str]) -> Iterator[ArtifactFile]:
        """Files matching `globs` in each rank's workdir of run `attempt`: the job's own `work/`
        per rank, or the workdir it named (shared by its ranks here: collected once, as rank 0)."""
        paths = self.paths(job.id, attempt)
        budget = [MAX_ARTIFACTS]
        if job.spec.workdir:
            yield from find_artifacts(Path(os.path.realpath(job.spec.workdir)), globs, 0, notes, budget)
            return
        for r in paths.existing_ranks():
            work = paths.rank(r).dir / "work"
            if work.is_dir() and not work.is_symlink():
                yield from find_artifacts(work, globs, r, notes, budget)

    # sessions ----------------------------------------------------------------------------------
    def open_session(self, job: Job, argv: Sequence[str], *, rows: int = 24, cols: int = 80,
                     term: str = "xterm-256color", tty_mode: bool = True, rank: int = 0) -> PtyProcess:
        """One more process on a pty in rank `rank` of running `job` (sessions.py)."""
        return open_session(self.run_dir, self.python, SHIM, job, argv, rows=rows, cols=cols, term=term,
                            tty_mode=tty_mode, rank=rank)

    def close(self) -> None:
        self._reap()


def _stop_rank(rp: RankPaths, reason: str) -> None:
    """Record why (first writer wins), then signal the shim; it reads the reason.

    A shim without pid.json is still starting: it is not signalled (a TERM could kill it before
    its handlers are in place); it checks `stop` before spawning and again after writing pid.json.
    """
    create_exclusive(rp.stop, reason)
    pids = read_json(rp.pid)
    if pids is not None:
        signal_process(pids.get("shim_pid"), pids.get("shim_start"), signal.SIGTERM)


def _own_dir(d: Path, uid: int | None, gid: int | None) -> None:
    """A directory the job writes into: 0700, its account's when it runs as one."""
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    if uid is not None and gid is not None:
        os.lchown(d, uid, gid)


def _own_workdir(rp: RankPaths, account: Account | None) -> Path:
    """The default workdir, `work/` in the rank directory: the job's own (0700, chowned to its
    account when it runs as one). The shim enters it before dropping privileges, so the job
    needs no way through the server's private directories to reach it."""
    work = rp.dir / "work"
    work.mkdir(mode=0o700, exist_ok=True)
    if account is not None:
        os.lchown(work, account.uid, account.gid)
    return work


def _write_private(path: Path, data: bytes) -> None:
    """Atomically write `data`, readable by this process's user only (0600)."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _env_file(env: dict[str, str]) -> bytes:
    return b"".join(f"{k}={v}".encode("utf-8", "surrogateescape") + b"\0" for k, v in env.items())


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def _describe(job: Job) -> dict[str, object]:
    return {
        "id": job.id, "command": list(job.spec.command), "tenant": job.spec.tenant,
        "allocation": [{"node": a.node, "gpus": list(a.gpus)} for a in job.allocation],
        "time_limit_s": job.spec.time_limit_s, "launched_at": time.time(),
        "attempt": job.attempt, "restart_count": job.restarts,
    }


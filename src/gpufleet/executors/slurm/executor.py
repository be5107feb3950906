"""The Slurm executor: gpufleet decides (tenants, quotas, fair share, gang, topology, bookings),
Slurm runs. One gpufleet job = one Slurm batch job with one task per node.

Identity: every Slurm job gpufleet submits carries `--comment <tag>:<job id>:<run>:<stamp>:<alloc>`
and `--job-name gf<id>-<name>`. `launch` looks the identity up before submitting (jobs this process
submitted, then a `squeue --json` snapshot taken after this executor was created, then sacct for
jobs older than slurmctld's MinJobAge), so a crash between submit and recording the handle, or a
gpufleet restart, never submits twice.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from gpufleet.domain import Booking, Job, Node
from gpufleet.executors.accounts import Account, Accounts, job_env, lookup, this_account
from gpufleet.executors.artifact_files import MAX_FILES as MAX_ARTIFACTS, find_artifacts
from gpufleet.executors.base import (
    HEARTBEAT_FILE, Ability, ArtifactFile, ExecutorBase, LogChunk, Observation, Phase, ResultFile,
    attempt_view, newest_mtime, newest_write_below,
)
from gpufleet.executors.local.results import read_results
from gpufleet.executors.logfile import UnsafeLog, read_chunk, refusal
from gpufleet.executors.slurm.client import Admin, CliApi, JobApi, RestApi, Runner, SlurmError, SlurmUnavailable
from gpufleet.executors.slurm.config import SlurmConfig
from gpufleet.executors.slurm.container import (
    RUNTIMES, SlurmContainers, container_command, container_reason, has_pyxis,
)
from gpufleet.executors.slurm.folders import home_or, private_folder, shared_folder
from gpufleet.executors.slurm.parse import SlurmJob, job_from_json, phase_of
from gpufleet.executors.slurm.snapshot import JobsSnapshot, nodes_of
from gpufleet.executors.slurm.topology import TopologyCache
from gpufleet.executors.slurm.watch import EndWatch
from gpufleet.executors.slurm.script import (
    Identity, PerfSteps, SubmitRequest, account_name, build_script, checkpoint_dir, constraint_of, gres_of, job_dir,
    job_name, rank_log, time_minutes,
)

log = logging.getLogger(__name__)
TIMEOUT_MARK = "gpufleet:timeout"
NODES_SNAPSHOT_MAX_AGE_S = 0.5
ACCOUNT_ERRORS = ("Invalid account", "invalid account")
GONE_ERRORS = ("already completed", "Invalid job id", "Job/step already completing", "does not exist")
PERF_FILE_MAX = 8 << 20  # bytes of one rank's perf verdict or state file read back


class SlurmExecutor(ExecutorBase):
    """Who jobs run as: with `accounts` of a root server, the sbatch path submits each job as its
    owner's Unix account (`--uid/--gid`); a job of a user without one fails at launch. The REST path
    cannot (slurmrestd runs every job as the user it authenticates, `rest_user`, never root), so a
    REST executor does not declare RUN_AS_OWNER. Without `accounts`, jobs run as this process."""

    name = "slurm"
    abilities = frozenset({Ability.NODES, Ability.DRAIN, Ability.LOGS, Ability.BOOKINGS, Ability.ADOPT,
                           Ability.RUN_AS_OWNER, Ability.IMAGES, Ability.ARTIFACTS, Ability.RESULTS,
                           Ability.PERF_IN_JOB, Ability.SESSIONS, Ability.HEARTBEAT,
                           Ability.CONCURRENT_LAUNCH, Ability.WATCH})

    def __init__(self, config: SlurmConfig | None = None, *, api: JobApi | None = None, admin: Admin | None = None,
                 clock: Callable[[], float] = time.time, accounts: Accounts | None = None,
                 containers: SlurmContainers | None = None):
        self.config = cfg = config or SlurmConfig()
        if cfg.container_runtime not in RUNTIMES:
            raise ValueError(f"slurm container_runtime must be one of {', '.join(RUNTIMES)}")
        self.containers = containers or SlurmContainers()
        self._runtime: str | None = None if cfg.container_runtime == "auto" else cfg.container_runtime
        if cfg.api == "rest":
            self.abilities = SlurmExecutor.abilities - {Ability.RUN_AS_OWNER}
            self.runs_jobs_as = cfg.rest_user or "the slurmrestd user"
        self.accounts = accounts.for_engine(self.abilities, self.runs_jobs_as) if accounts is not None else None
        run = Runner(cfg.bin_dir, dict(cfg.env), cfg.command_timeout_s)
        self.admin = admin or Admin(run)
        self._run = run
        if api is not None:
            self.api = api
        elif cfg.api == "rest":
            if not cfg.rest_url:
                raise ValueError("slurm api 'rest' needs rest_url")
            self.api = RestApi(cfg.rest_url, cfg.rest_version, cfg.rest_user, cfg.rest_token_file,
                               cfg.command_timeout_s, run)
        else:
            self.api = CliApi(run)
        self.clock = clock
        self.user = (cfg.rest_user if cfg.api == "rest" else None) or cfg.submit_user or getpass.getuser()
        self._lock = threading.RLock()
        self._snap: JobsSnapshot | None = None  # only snapshots taken by this instance
        self._submitted: dict[tuple, int] = {}
        self._accounts: set[tuple[str, str]] = set()  # (Slurm account, user) associations known to exist
        self._addresses: dict[str, str] = {}
        self._limited: set[int] = set()
        self._min_job_age: int | None = None
        self.topology: TopologyCache | None = None  # Slurm's switches / blocks as node labels (topology.py)
        if cfg.topology:
            self.topology = TopologyCache(lambda: self.admin.topology(), clock, cfg.topology_refresh_s)
        self.ends = EndWatch(lambda: self.api.live_ids(), cfg.watch_interval_s)  # Ability.WATCH
        shared_folder(cfg.log_dir)
        self.checkpoint_root = cfg.checkpoint_dir or os.path.join(cfg.log_dir, ".checkpoints")
        shared_folder(self.checkpoint_root)

    # ------------------------------------------------------------------------------ snapshots

    def _refresh(self) -> JobsSnapshot:
        jobs = [job_from_json(d) for d in self.api.jobs()]
        snap = JobsSnapshot(jobs, self.config.tag, self.clock())
        with self._lock:
            self._snap = snap
        return snap

    def _snapshot(self) -> JobsSnapshot:
        with self._lock:
            snap = self._snap
        return snap if snap is not None else self._refresh()

    def _find(self, job: Job, snap: JobsSnapshot) -> SlurmJob | None:
        """The Slurm job of this run of `job`: by handle when it carries our identity, else by identity."""
        key = Identity.of_job(self.config.tag, job).key
        if job.handle and job.handle.isdigit():
            sj = snap.by_id.get(int(job.handle))
            if sj is not None and snap.idents.get(sj.job_id, Identity("", 0, 0, 0)).key == key:
                return sj
        return snap.by_key.get(key)

    # --------------------------------------------------------------------------------- launch

    def launch(self, job: Job) -> str | None:
        ident = Identity.of_job(self.config.tag, job)
        existing = self._existing(job, ident)
        if existing is not None:
            self.ends.add(existing)
            return str(existing)
        req = self._request(job, ident)
        job_id = self._submit(req)
        with self._lock:
            self._submitted[ident.key] = job_id
        self.ends.add(job_id)
        log.info("slurm: submitted gpufleet job %s run %s as Slurm job %s", job.id, job.restarts, job_id)
        return str(job_id)

    def _existing(self, job: Job, ident: Identity) -> int | None:
        with self._lock:
            mine = self._submitted.get(ident.key)
        if mine is not None:
            return mine
        found = self._find(job, self._snapshot())
        if found is not None:
            return found.job_id
        if self.clock() - job.submitted_at > self._job_age_horizon():
            return self._existing_in_accounting(job, ident)
        return None

    def _job_age_horizon(self) -> float:
        """Jobs submitted longer ago than this may have been purged from slurmctld (MinJobAge)."""
        if self._min_job_age is None:
            self._min_job_age = self.admin.min_job_age()
        return max(0, self._min_job_age - 30)

    def _existing_in_accounting(self, job: Job, ident: Identity) -> int | None:
        for sj in self.admin.sacct(name=job_name(job), since=job.submitted_at - 60):
            other = Identity.parse(sj.comment)
            if other is not None and other.key == ident.key:
                return sj.job_id
            if not sj.comment and (sj.submit_time or 0) >= job.submitted_at - 1:
                return sj.job_id  # cluster without AccountingStoreFlags=job_comment: name + time
        return None

    def _request(self, job: Job, ident: Identity) -> SubmitRequest:
        cfg = self.config
        placed = bool(job.allocation) and not cfg.slurm_place
        if placed and job.allocation[0].node not in self._addresses:
            self._learn_addresses()
        spec = job.spec
        account, as_owner = self._runs_as(job)
        log_dir = self._log_dir(job, account if as_owner else None)
        main_log = rank_log(log_dir, job, 0)
        return SubmitRequest(
            script=build_script(job, dict(self._addresses), log_dir, placed,
                                command=container_command(job, self.container_runtime(), self.containers)
                                if spec.image else None,
                                perf=PerfSteps.of_job(job, self.gpufleet_bin(), cfg.perf_fake_nvml),
                                checkpoint=checkpoint_dir(self.checkpoint_root, cfg.tag, job)),
            name=job_name(job),
            comment=ident.comment(),
            account=self._account(job.tenant, account.name if as_owner else self.user),
            nodes=len(job.allocation) if placed else spec.nodes,  # an elastic gang: as many as placed
            gres=gres_of(job),
            output=main_log,
            cpus_per_task=spec.cpus,
            mem_mb=spec.mem_mb,
            time_minutes=time_minutes(spec.time_limit_s) if spec.time_limit_s else None,
            nodelist=",".join(dict.fromkeys(job.node_names)) if placed else None,
            partition=cfg.partition,
            reservation=f"{cfg.reservation_prefix}{spec.booking}" if spec.booking is not None else None,
            constraint=None if placed else constraint_of(job),
            workdir=spec.workdir or (home_or(account.home, log_dir) if as_owner else None),
            environment=job_env(account, {}, {}),
            uid=account.uid if as_owner else None,
            gid=account.gid if as_owner else None,
            exclusive=spec.perf is not None,
        )

    def open_session(self, job: Job, argv: Sequence[str], **options: Any) -> Any:
        """`srun --jobid --overlap --pty` into the allocation (sessions.py)."""
        from gpufleet.executors.slurm.sessions import open_session

        return open_session(self, job, argv, **options)

    def gpufleet_bin(self) -> str:
        """The `gpufleet` the batch script runs the perf steps with: configured, else this server's
        own (the venv of sys.executable), which the nodes must see at the same path."""
        return self.config.gpufleet_bin or os.path.join(os.path.dirname(sys.executable), "gpufleet")

    def container_runtime(self) -> str:
        """pyxis or podman (container.py); `auto` asks `srun --help` once."""
        if self._runtime is None:
            try:
                self._runtime = "pyxis" if has_pyxis(self._run("srun", "--help", check=False)) else "podman"
            except SlurmUnavailable:
                return "podman"
        return self._runtime

    def _runs_as(self, job: Job) -> tuple[Account, bool]:
        """(the account `job` runs as, whether sbatch must submit it as that account). Raises
        ValidationError("user") for an owner without an account: launch fails the job with why."""
        if self.accounts is not None and self.accounts.run_as_owner:
            return self.accounts.resolve(job.user), True
        who = self.runs_jobs_as if self.config.api == "rest" else None
        found = lookup(who) if who else None
        if found is not None:
            return found, False
        return (self.accounts.server if self.accounts is not None else this_account()), False

    def _log_dir(self, job: Job, owner: Account | None = None) -> str:
        """Where `job`'s output goes: jobs run as their owners write into `log_dir/<account>/`, that
        account's own 0700 folder (made here when `owner` is given), so no other tenant can read
        it or plant a file at its predictable name; otherwise `log_dir` itself."""
        if self.accounts is None or not self.accounts.run_as_owner:
            return self.config.log_dir
        folder = os.path.join(self.config.log_dir, self.accounts.account_name(job.user))
        if owner is not None:
            private_folder(folder, owner)
        return folder

    def _account(self, tenant: str, user: str | None = None) -> str:
        """The tenant's Slurm account, with an association for `user` (default: the submitting user)."""
        account, user = account_name(tenant), user or self.user
        if self.config.create_accounts and (account, user) not in self._accounts:
            self.admin.ensure_account(account, user, self.config.account_parent)
            self._accounts.add((account, user))
        return account

    def _submit(self, req: SubmitRequest) -> int:
        """sbatch, retried while slurmctld has not yet heard of a just-created account."""
        deadline = self.clock() + 10
        while True:
            try:
                return self.api.submit(req)
            except SlurmError as e:
                if not any(m in str(e) for m in ACCOUNT_ERRORS) or self.clock() > deadline:
                    raise
                if self.config.create_accounts:
                    user = self._user_of(req)
                    self._accounts.discard((req.account, user))
                    self.admin.ensure_account(req.account, user, self.config.account_parent)
                    self._accounts.add((req.account, user))
                time.sleep(0.2)

    def _user_of(self, req: SubmitRequest) -> str:
        """The Slurm user `req` is submitted as."""
        if req.uid is None:
            return self.user
        return req.environment.get("USER") or self.user

    # ----------------------------------------------------------------------------------- poll

    def poll(self, jobs: Sequence[Job]) -> list[Observation]:
        if not jobs:
            return []
        try:
            snap = self._refresh()
        except SlurmUnavailable as e:
            log.warning("slurm: poll skipped, Slurm unavailable: %s", e)
            return []
        out: list[Observation] = []
        missing: list[Job] = []
        for job in jobs:
            sj = self._find(job, snap)
            if sj is not None:
                out.append(self._observe(job, sj))
            elif job.handle and job.handle.isdigit():
                missing.append(job)
        if missing:
            out.extend(self._observe_from_accounting(missing))
        self.ends.seen(out)
        return out

    def watch(self, on_event: Callable[[], None]) -> None:
        """`on_event()` when one of our jobs left Slurm's queue (watch.py; watch_interval_s)."""
        self.ends.listen(on_event)

    def _observe(self, job: Job, sj: SlurmJob) -> Observation:
        phase, code, reason = phase_of(sj, TIMEOUT_MARK)
        if phase is Phase.RUNNING and sj.state == "RUNNING":
            self._enforce_time_limit(job, sj)
        at = sj.end_time if phase.ended else sj.start_time if phase is Phase.RUNNING else None
        if phase is Phase.FAILED and job.spec.image:  # an image that could not be had: say why
            reason = container_reason(self.logs(job, 0, 0).data, code) or reason
        return Observation(job.id, phase, code, reason, handle=str(sj.job_id), at=at)

    def _enforce_time_limit(self, job: Job, sj: SlurmJob) -> None:
        limit = job.spec.time_limit_s
        if not (self.config.exact_time_limit and limit and sj.start_time):
            return
        if self.clock() - sj.start_time < limit or sj.job_id in self._limited:
            return
        self._limited.add(sj.job_id)
        try:
            self.admin.mark_job(sj.job_id, TIMEOUT_MARK)
            self.api.cancel(sj.job_id)
            log.info("slurm: job %s (Slurm %s) reached its %ss limit, cancelled", job.id, sj.job_id, limit)
        except SlurmError as e:
            self._limited.discard(sj.job_id)
            log.warning("slurm: could not enforce the time limit of Slurm job %s: %s", sj.job_id, e)

    def _observe_from_accounting(self, jobs: list[Job]) -> list[Observation]:
        try:
            found = {sj.job_id: sj for sj in self.admin.sacct(job_ids=[int(j.handle or 0) for j in jobs])}
        except SlurmError as e:
            log.warning("slurm: sacct failed: %s", e)
            return []
        out = []
        for job in jobs:
            sj = found.get(int(job.handle or 0))
            ident = Identity.parse(sj.comment) if sj is not None else None
            if sj is not None and (ident is None or ident.key == Identity.of_job(self.config.tag, job).key):
                out.append(self._observe(job, sj))
            else:
                out.append(Observation(job.id, Phase.LOST, None, f"Slurm has no record of job {job.handle}",
                                       handle=job.handle))
        return out

    # --------------------------------------------------------------------------------- cancel

    def cancel(self, job: Job) -> None:
        try:
            sj = self._find(job, self._refresh())
        except SlurmUnavailable:
            sj = None
        if sj is not None and phase_of(sj)[0].ended:
            return  # already over: nothing to stop
        ids = {sj.job_id} if sj is not None else set()
        with self._lock:
            mine = self._submitted.get(Identity.of_job(self.config.tag, job).key)
        if mine is not None:
            ids.add(mine)
        if not ids and job.handle and job.handle.isdigit():
            ids.add(int(job.handle))
        for job_id in ids:
            try:
                self.api.cancel(job_id)
            except SlurmError as e:
                if not any(m in str(e) for m in GONE_ERRORS):
                    raise

    # ----------------------------------------------------------------------------------- logs

    def logs(self, job: Job, offset: int = 0, rank: int = 0, attempt: int | None = None) -> LogChunk:
        """Rank `rank`'s output file of attempt `attempt` (each run is its own Slurm job and file),
        opened with no link followed: the log folder is writable by the jobs."""
        view, over = attempt_view(job, attempt)
        path = rank_log(self._log_dir(view), view, rank)
        ended = over or job.state.terminal or self._ended(view)
        folder, name = os.path.split(path)
        try:
            data, size = read_chunk(folder or ".", (name,), offset, self.config.log_chunk_bytes)
        except FileNotFoundError:
            return LogChunk(b"", offset, ended, note="" if ended else f"no output yet ({path})")
        except UnsafeLog:
            return LogChunk(b"", offset, True, note=refusal(path))
        end = offset + len(data)
        return LogChunk(data, end, ended and end >= size)

    def artifacts(self, job: Job, attempt: int, globs: Sequence[str], notes: list[str]) -> Iterator[ArtifactFile]:
        """From the workdir the job named, which must be on a filesystem this server shares with
        the nodes (like log_dir): every rank sees the same directory, so it is collected once (as
        rank 0). A job without a workdir runs where Slurm puts it: nothing is collected."""
        if not job.spec.workdir:
            notes.append("a Slurm job's artifacts are collected from the workdir it names (-C), "
                         "on a filesystem the server shares with the nodes")
            return
        yield from find_artifacts(Path(os.path.realpath(job.spec.workdir)), globs, 0, notes, [MAX_ARTIFACTS])

    # -------------------------------------------------------------------- results and perf

    def _ranks(self, job: Job, attempt: int) -> tuple[Job, str, str, range]:
        """(the run's view, its log folder, the name of its folder there, its ranks)."""
        view, _ = attempt_view(job, attempt)
        log_dir = self._log_dir(view)
        folder = os.path.basename(job_dir(log_dir, view))
        return view, log_dir, folder, range(max(len(view.allocation), view.spec.nodes, 1))

    def results(self, job: Job, attempt: int) -> tuple[list[ResultFile], list[str]]:
        """What each rank left in its $GPUFLEET_RESULTS_DIR (`job_dir`/rank-<r>/results/, on the
        shared log folder), read with no link followed: the job's user wrote that folder."""
        _, log_dir, folder, ranks = self._ranks(job, attempt)
        files: list[ResultFile] = []
        notes: list[str] = []
        for r in ranks:
            f, n = read_results(Path(log_dir), (folder, f"rank-{r}"), r)
            files += f
            notes += n
        return files, notes

    def perf_verdicts(self, job: Job, attempt: int) -> tuple[list[dict], list[str]]:
        """What the clean-room steps of run `attempt` wrote per rank (script.py `gpufleet_perf`),
        one dict per rank that ran them: {rank, node, stage: "prolog"|"epilog"|"unchecked", ok,
        reason, prolog, epilog, conditions, samples, started_at, ended_at}; and notes on what was
        missing or unreadable. The files are the job's own (its user can write them): no link is
        followed and every value is type-checked where it is used (control/perf.py)."""
        view, log_dir, folder, ranks = self._ranks(job, attempt)
        out: list[dict] = []
        notes: list[str] = []
        for r in ranks:
            def read(name: str) -> bytes | None:
                try:
                    data, size = read_chunk(log_dir, (folder, f"rank-{r}", name), 0, PERF_FILE_MAX)
                except FileNotFoundError:
                    return None
                except (UnsafeLog, OSError) as e:
                    notes.append(f"rank {r}: {name}: not read ({e})")
                    return None
                if size > PERF_FILE_MAX:
                    notes.append(f"rank {r}: {name} is over {PERF_FILE_MAX >> 20} MiB: not read")
                    return None
                return data

            rc = read("perf-prolog.rc")
            if rc is None:
                notes.append(f"rank {r}: no perf prolog ran (the job ended before it, or was not a perf run)")
                continue
            node = self._node_of_rank(view, r, (read("node") or b"").decode("utf-8", "replace").strip(), notes)
            if not node:
                continue
            verdict: dict = {"rank": r, "node": node}
            code = rc.decode("ascii", "replace").strip()
            if code == "1":
                verdict.update(stage="prolog", ok=False, prolog=_json_object(read("perf-prolog.json"), notes, r).get("prolog"))
            elif code != "0":
                verdict.update(stage="unchecked", ok=None,
                               reason=f"not checked: gpufleet perf prolog could not run on {node} (exit {code})")
            else:
                epilog = _json_object(read("perf.json"), notes, r)
                if not epilog:
                    verdict.update(stage="epilog", ok=False, reason="epilog: no verdict (the run was stopped "
                                   "before the epilog, or it failed)")
                else:
                    verdict.update(stage="epilog", **epilog)
                    verdict["ok"] = epilog.get("perf_valid")
                verdict.setdefault("prolog", _json_object(read("perf-prolog.json"), notes, r).get("prolog"))
                verdict["samples"] = _json_object(read("perf-state.json"), notes, r).get("samples")
            out.append(verdict)
        return out, notes

    def last_sign_of_life(self, job: Job) -> float | None:
        """The newest touch of any rank's $GPUFLEET_HEARTBEAT_FILE (`job_dir`/rank-<r>/run/heartbeat)
        or output file of the running attempt. Both lie in the log folder, which the compute nodes
        and this server share (a shared filesystem: NFS, Lustre, ...; on the dev cluster one host),
        so a stat here sees what the ranks wrote there (lstat: the job's folder, no link followed)."""
        view, log_dir, folder, ranks = self._ranks(job, job.attempt)
        files = [os.path.join(log_dir, folder, f"rank-{r}", "run", HEARTBEAT_FILE) for r in ranks]
        return newest_mtime(files + [rank_log(log_dir, view, r) for r in ranks])

    def last_checkpoint(self, job: Job) -> float | None:
        """The newest write under the job's $GPUFLEET_CHECKPOINT_DIR (the shared filesystem again)."""
        return newest_write_below(checkpoint_dir(self.checkpoint_root, self.config.tag, job))

    def _node_of_rank(self, view: Job, rank: int, claimed: str, notes: list[str]) -> str:
        """Rank `rank`'s node: where gpufleet placed it, or (Slurm placed the job) the name the
        rank wrote, only when it is one of the Slurm job's nodes: the job could write any name
        there, and a refusal drains the node named."""
        if view.allocation and not self.config.slurm_place and rank < len(view.allocation):
            return view.allocation[rank].node
        sj = self._find(view, self._snapshot())
        if sj is not None and claimed in sj.nodes:
            return claimed
        notes.append(f"rank {rank}: node {claimed[:64]!r} is not one of the Slurm job's nodes: perf verdict not used")
        return ""

    def _ended(self, job: Job) -> bool:
        """Whether Slurm says this run ended (a fresh look at most every 0.25 s)."""
        snap = self._snapshot()
        sj = self._find(job, snap)
        if (sj is None or not phase_of(sj)[0].ended) and self.clock() - snap.taken > 0.25:
            try:
                sj = self._find(job, self._refresh())
            except SlurmUnavailable:
                return False
        return sj is not None and phase_of(sj)[0].ended

    # ---------------------------------------------------------------------------------- nodes

    def nodes(self) -> list[Node]:
        """Slurm's nodes (sinfo), with the GPUs foreign jobs hold and the network topology's labels."""
        raw = self.api.nodes()
        now = self.clock()
        with self._lock:
            snap = self._snap
        if snap is None or now - snap.taken > NODES_SNAPSHOT_MAX_AGE_S:  # reuse this cycle's poll
            snap = self._refresh()
        names = [d["name"] for d in raw if d.get("name")]
        topology = self.topology.labels(names) if self.topology is not None else {}
        nodes = nodes_of(raw, snap, topology, now)
        with self._lock:
            self._addresses.update({n.name: n.address for n in nodes})
        return nodes

    def _learn_addresses(self) -> None:
        try:
            self.nodes()
        except SlurmError as e:
            log.warning("slurm: cannot read node addresses: %s", e)

    def drain(self, node: str, reason: str) -> None:
        self.admin.update_node(node, "drain", reason or "drained by gpufleet")

    def resume(self, node: str) -> None:
        try:
            self.admin.update_node(node, "resume")
        except SlurmError as e:
            if "Invalid node state" not in str(e):
                raise

    # ------------------------------------------------------------------------------- bookings

    def reservation_name(self, booking: Booking) -> str:
        return f"{self.config.reservation_prefix}{booking.id}"

    def book(self, booking: Booking) -> None:
        now = self.clock()
        if booking.end <= now:
            return
        fields = {
            "starttime": "now" if booking.start <= now else _slurm_time(booking.start),
            "endtime": _slurm_time(booking.end),
            "nodes": ",".join(booking.nodes),
            "accounts": self._account(booking.tenant),
            "flags": "ignore_jobs",
        }
        self.admin.create_reservation(self.reservation_name(booking), fields)

    def unbook(self, booking: Booking) -> None:
        self.admin.delete_reservation(self.reservation_name(booking))

    def close(self) -> None:
        self.ends.close()
        closer = getattr(self.api, "close", None)
        if closer is not None:
            closer()


def _json_object(data: bytes | None, notes: list[str], rank: int) -> dict:
    if not data:
        return {}
    try:
        value = json.loads(data)
    except ValueError as e:
        notes.append(f"rank {rank}: a perf file is not JSON: {e}")
        return {}
    return value if isinstance(value, dict) else {}


def _slurm_time(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%dT%H:%M:%S")

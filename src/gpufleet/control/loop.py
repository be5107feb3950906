"""The control loop: load -> decide -> apply, one cycle at a time.

Every cycle:
  1. observe   ask the executor about RUNNING jobs, apply what it saw (ends, losses)
  2. act       carry out decisions written earlier: signal jobs marked cancel/preempt/requeue,
               launch RUNNING jobs that have no engine handle yet (crash between decide and launch);
               restart jobs whose --heartbeat stopped (a hang)
  3. nodes     refresh the inventory from the engine (when it owns it); requeue jobs on DOWN nodes
  4. schedule  freeze a snapshot, call the pure scheduler
  5. record    write placements (PENDING -> RUNNING, durable) and preemption decisions, then launch
No database transaction is held across an executor call. Launches run up to `launch_concurrency`
at once on an engine that declares Ability.CONCURRENT_LAUNCH (each outcome is recorded by this
thread as it comes back); the cycle ends once every launch it started has answered.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from gpufleet.domain import Job, JobState, Node, NodeState, format_duration, transition
from gpufleet.executors.base import FOREIGN_GPUS_LABEL, Ability, EngineUnavailable, Executor
from gpufleet.control.apply import HEARTBEAT_STOPPED, apply_observation, interruption_cause
from gpufleet.control.gating import gate
from gpufleet.store import groups as groups_repo
from gpufleet.scheduler import Decisions, Scheduler, SchedulerConfig, Snapshot
from gpufleet.observability.logs import loop_context, loop_logger
from gpufleet.store import Store
from gpufleet.store.mapping import copy_job

log = loop_logger("control")
Clock = Callable[[], float]
USAGE_SAVE_S = 10.0
REASON_REFRESH_S = 60.0  # a reason that moved only in its numbers is rewritten this often at most
_DIGITS = re.compile(r"\d+(?:\.\d+)?")


@dataclass(frozen=True, slots=True)
class Interruption:
    """A run that lost its work this cycle (observability/metrics.py counts them): `lost_gpu_s` is
    the GPU-time since the attempt started or, when the engine can tell, since its newest
    checkpoint file; `restarted` when the job went back to the queue as a new attempt."""

    job_id: int
    tenant: str
    cause: str  # control/apply.py interruption_cause
    restarted: bool
    lost_gpu_s: float
    at: float
    nodes: tuple[str, ...] = ()  # of the interrupted attempt


@dataclass(slots=True)
class CycleReport:
    started: int = 0
    ended: int = 0
    preempted: int = 0
    pending: int = 0
    running: int = 0
    duration_s: float = 0.0
    decisions: Decisions | None = None
    interruptions: list[Interruption] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)  # the active jobs of this cycle, as left by it
    nodes: Sequence[Node] = field(default_factory=list)


@dataclass
class ControlLoop:
    store: Store
    executor: Executor
    clock: Clock = time.time
    config: SchedulerConfig = field(default_factory=SchedulerConfig)
    on_cycle: Callable[[CycleReport], None] | None = None
    # called once an attempt's end is recorded (results are collected there); errors are logged
    on_attempt_end: Callable[[Job], None] | None = None
    usage: dict[str, float] = field(default_factory=dict)
    perf: Any = None  # control.perf.PerfGuard: prolog/sampling/epilog of perf jobs (None: not checked)
    # step 3's inventory refresh when the server has several node pools (control/pools.py's
    # PoolRouter.sync); None: from the one executor, when it owns the inventory
    node_sync: Callable[[Store], None] | None = None
    # engine calls (launch) at once, on an engine that declares Ability.CONCURRENT_LAUNCH
    launch_concurrency: int = 8
    _launcher: ThreadPoolExecutor | None = None
    _signalled: set[int] = field(default_factory=set)
    # restarted job -> the nodes of its interrupted attempt (its replacement prefers their block;
    # in memory only: after a server restart the preference is gone, the restart is not)
    _previous: dict[int, tuple[str, ...]] = field(default_factory=dict)
    _reason_at: dict[int, float] = field(default_factory=dict)  # job -> when its reason was written
    _usage_at: float | None = None
    _usage_saved_at: float = 0.0
    # the scheduler with memory: its capacity index and running-job aggregates are updated, not
    # rebuilt, while the node table (the store's cached tuple) stays the same object and the
    # running jobs are handed over as the same objects while unchanged (_frozen)
    _scheduler: Scheduler = field(default_factory=Scheduler)
    _frozen: dict[int, tuple[tuple, Job]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.usage = {k: float(v) for k, v in self.store.get_meta("fairshare_usage").items()}

    def cycle(self) -> CycleReport:
        t0 = time.perf_counter()
        now = self.clock()
        report = CycleReport()
        jobs = self.store.active_jobs()
        running = [j for j in jobs if j.state is JobState.RUNNING]
        report.ended = self._observe(running, now, report.interruptions)  # 1
        running = [j for j in running if j.state is JobState.RUNNING]
        self._act(running)  # 2
        self._check_heartbeats(running, now)
        if self.perf is not None:
            self.perf.sample(running, now)
        nodes = self._nodes(now)  # 3
        self._requeue_on_down_nodes(running, nodes)
        waiting = [j for j in jobs if j.state is JobState.PENDING]
        pending = self._gate(waiting, running, now)
        self._account_usage(running, now)
        snap = self._snapshot(nodes, running, pending, now)
        decisions = self._scheduler(snap, now)  # 4
        report.started, report.preempted = self._record(decisions, pending, running, now)  # 5
        report.pending, report.running = len(waiting) - report.started, len(running) + report.started
        report.duration_s = time.perf_counter() - t0
        report.decisions = decisions
        report.jobs, report.nodes = jobs, nodes
        if self.on_cycle:
            self.on_cycle(report)
        return report

    # 1. observe ------------------------------------------------------------------------------
    def _observe(self, running: list[Job], now: float, interrupted: list[Interruption]) -> int:
        launched = [j for j in running if j.handle is not None]
        if not launched:
            return 0
        by_id = {j.id: j for j in launched}
        ended = 0
        for obs in self.executor.poll(launched):
            job = by_id.get(obs.job_id)
            if job is None:
                continue
            old_handle = job.handle
            refused = self._in_job_perf(job) if obs.phase.ended and job.spec.perf is not None else []
            lost = None
            if refused and not job.extra.get("pending_action"):
                change = self._requeue_refused(job, refused, obs.at or now)
            else:
                lost = self._interruption(job, obs)
                change = apply_observation(job, obs, now)
            if change is None:
                if job.handle != old_handle:
                    self.store.save_job(job, JobState.RUNNING)
                continue
            if self.store.save_job(job, JobState.RUNNING, change, clear_action=True):
                ended += 1
                self._signalled.discard(job.id)
                if lost is not None:
                    interrupted.append(lost(job, change.at))
                    if interrupted[-1].restarted:
                        self._previous[job.id] = interrupted[-1].nodes
                if self.perf is not None and job.spec.perf is not None:
                    self._epilog(job, change.attempt or job.attempt)
                with job_context(job):
                    log.info("job ended", state=job.state.value, reason=job.reason, exit_code=job.exit_code)
                self._attempt_ended(job)
        return ended

    def _interruption(self, job: Job, obs: Any) -> Callable[[Job, float], Interruption] | None:
        """Read before `obs` is applied (the attempt's start, its GPUs, its newest checkpoint); the
        returned function completes the record once the outcome is known."""
        cause = interruption_cause(job, obs)
        if cause is None or job.started_at is None:
            return None
        since, gpus, failures, nodes = job.started_at, job.gpus_held, job.failures, tuple(job.node_names)
        try:
            since = max(since, self.executor.last_checkpoint(job) or since)
        except Exception as e:  # unreadable: count the whole attempt
            with job_context(job):
                log.warning("could not read the checkpoint time", error=str(e))

        def done(job: Job, at: float) -> Interruption:
            restarted = job.failures > failures
            lost = gpus * max(0.0, at - since) if restarted or cause != "failure" else 0.0
            return Interruption(job.id, job.tenant, cause, restarted, lost, at, nodes)
        return done

    def _attempt_ended(self, job: Job) -> None:
        if self.on_attempt_end is None:
            return
        try:
            self.on_attempt_end(job)
        except Exception as e:  # a bad results file must not stop the loop
            with job_context(job):
                log.warning("after-attempt hook failed", error=str(e))

    # 2. act ----------------------------------------------------------------------------------
    def _act(self, running: list[Job]) -> None:
        unlaunched = []
        for job in running:
            if job.extra.get("pending_action") and job.id not in self._signalled:
                self._signal(job)
            elif job.handle is None and not job.extra.get("pending_action"):
                unlaunched.append(job)
        self._launch_all(unlaunched)

    def _check_heartbeats(self, running: list[Job], now: float) -> None:
        """A job with --heartbeat that showed no sign of life (heartbeat file, output) for that
        long is hung (the NCCL-hang case): restarted like a node fault (control/apply.py)."""
        if Ability.HEARTBEAT not in self.executor.abilities:
            return
        for job in running:
            limit = job.spec.heartbeat_s
            if not limit or job.handle is None or job.extra.get("pending_action") or job.started_at is None:
                continue
            try:
                seen = self.executor.last_sign_of_life(job)  # type: ignore[attr-defined]
            except Exception as e:
                with job_context(job):
                    log.warning("could not read the heartbeat", error=str(e))
                continue
            last = max(seen or 0.0, job.started_at)
            if now - last <= limit:
                continue
            why = f"{HEARTBEAT_STOPPED}: no sign of life for {format_duration(int(now - last))} (--heartbeat {format_duration(limit)})"
            if self._decide(job, "requeue", why):
                with job_context(job):
                    log.warning("job hung", reason=why)

    def _decide(self, job: Job, action: str, why: str) -> bool:
        """Write the decision to stop a RUNNING job (durable first), then signal the engine."""
        if not self.store.set_action(job.id, action, why, JobState.RUNNING):
            return False
        job.extra.update(pending_action=action, action_reason=why)
        self._signal(job)
        return True

    def _signal(self, job: Job) -> None:
        try:
            self.executor.cancel(job)
            self._signalled.add(job.id)
        except Exception as e:  # the engine is unreachable: try again next cycle
            with job_context(job):
                log.warning("cancel failed; retrying next cycle", error=str(e))

    def _epilog(self, job: Job, attempt: int) -> None:
        try:
            for run in self.perf.epilog(job, attempt):
                with job_context(job):
                    log.info("perf run ended", node=run.node, perf_valid=run.valid, reason=run.reason)
        except Exception as e:  # the verdict is lost, the job's end is not
            with job_context(job):
                log.warning("perf epilog failed", error=str(e))

    def _in_job_perf(self, job: Job) -> list:
        """A perf job whose clean-room steps ran inside its allocation (Slurm) just ended: record
        their verdicts; the nodes its prolog refused (drained by the health hooks already)."""
        if self.perf is None or Ability.PERF_IN_JOB not in self.executor.abilities:
            return []
        try:
            verdicts, notes = self.executor.perf_verdicts(job, job.attempt)  # type: ignore[attr-defined]
            for note in notes:
                with job_context(job):
                    log.info("perf verdict", note=note)
            return self.perf.record_in_job(job, job.attempt, verdicts)
        except Exception as e:  # the verdict is lost, the job's end is not
            with job_context(job):
                log.warning("reading the perf verdicts failed", error=str(e))
            return []

    def _requeue_refused(self, job: Job, refused: list, at: float):
        """The in-job prolog refused a node, so the command never ran: back to the queue (the
        scheduler places it elsewhere, the node is drained), or FAILED with --no-requeue."""
        why = "perf prolog refused " + "; ".join(f"{h.node} ({h.reason})" for h in refused)
        job.exit_code = None
        if job.spec.requeue:
            return transition(job, JobState.PENDING, f"Requeued: {why}", at)
        return transition(job, JobState.FAILED, f"{why} (no requeue)", at)

    def _prolog_refused(self, job: Job) -> bool:
        """Perf jobs: the clean-room prolog on every node first. A refusal requeues the job (the
        failed nodes are already drained by the health hooks) or fails it with --no-requeue."""
        try:
            failed = self.perf.prolog(job, [self.store.get_node(n) for n in job.node_names])
        except Exception as e:
            failed, why = [], f"perf prolog crashed: {e}"
            self.perf.abort(job, why)
            change = transition(job, JobState.FAILED, why, self.clock())
            self.store.save_job(job, JobState.RUNNING, change)
            return True
        if not failed:
            return False
        why = "perf prolog refused " + "; ".join(f"{h.node} ({h.reason})" for h in failed)
        new = JobState.PENDING if job.spec.requeue else JobState.FAILED
        change = transition(job, new, f"Requeued: {why}" if job.spec.requeue else f"{why} (no requeue)", self.clock())
        self.store.save_job(job, JobState.RUNNING, change)
        with job_context(job):
            log.warning("perf prolog refused", reason=why, state=new.value)
        return True

    def _launch_all(self, jobs: list[Job]) -> None:
        """Launch jobs whose placement is written: up to `launch_concurrency` engine calls at once
        when the executor declares Ability.CONCURRENT_LAUNCH, else one after the other. Only the
        engine call runs in a worker; each outcome is recorded here, in the loop's thread, as it
        comes back (a crash in between is the same as a crash before the launch: idempotent)."""
        ready = [j for j in jobs if not (j.spec.perf is not None and self.perf is not None
                                         and self._prolog_refused(j))]
        if len(ready) < 2 or self.launch_concurrency < 2 or Ability.CONCURRENT_LAUNCH not in self.executor.abilities:
            for job in ready:
                self._launched(job, *self._engine_launch(job))
            return
        if self._launcher is None:
            self._launcher = ThreadPoolExecutor(self.launch_concurrency, thread_name_prefix="launch")
        futures = {self._launcher.submit(self._engine_launch, job): job for job in ready}
        for done in as_completed(futures):
            self._launched(futures[done], *done.result())

    def _engine_launch(self, job: Job) -> tuple[str | None, Exception | None]:
        """The engine call alone (thread-safe: reads the job, touches no store): (handle, error)."""
        try:
            return self.executor.launch(job) or f"{self.executor.name}:{job.id}", None
        except Exception as e:
            return None, e

    def _launched(self, job: Job, handle: str | None, error: Exception | None) -> None:
        """Record one launch's outcome: its handle; an engine outage leaves the decision for the
        next cycle; any other error fails the job with why."""
        if error is None:
            job.handle = handle
            self.store.save_job(job, JobState.RUNNING)
            with job_context(job):
                log.info("job launched", handle=job.handle)
        elif isinstance(error, EngineUnavailable):  # decision stays written: the next cycle launches it
            with job_context(job):
                log.warning("engine unavailable; launch retried next cycle", error=str(error))
        else:
            change = transition(job, JobState.FAILED, f"launch failed: {error}", self.clock())
            self.store.save_job(job, JobState.RUNNING, change)
            with job_context(job):
                log.warning("launch failed", error=str(error))

    def close(self) -> None:
        """Let the launch workers go (a launch under way finishes on its own)."""
        if self._launcher is not None:
            self._launcher.shutdown(wait=False, cancel_futures=True)
            self._launcher = None

    # 3. nodes --------------------------------------------------------------------------------
    def _nodes(self, now: float) -> Sequence[Node]:
        if self.node_sync is not None:
            self.node_sync(self.store)
        elif Ability.NODES in self.executor.abilities:
            try:
                self.store.sync_nodes(self.executor.nodes(), keep_state=False)
            except Exception as e:
                log.warning("could not refresh nodes from the engine", executor=self.executor.name, error=str(e))
        return self.store.nodes_view()  # read only: the same object until a node write

    def _requeue_on_down_nodes(self, running: list[Job], nodes: Sequence[Node]) -> None:
        down = {n.name for n in nodes if n.state is NodeState.DOWN}
        for job in running:
            if down.intersection(job.node_names) and not job.extra.get("pending_action"):
                bad = ",".join(sorted(down.intersection(job.node_names)))
                self._decide(job, "requeue", f"node {bad} is down")

    # 4. schedule -----------------------------------------------------------------------------
    def _gate(self, pending: list[Job], running: list[Job], now: float) -> list[Job]:
        """Hold back jobs waiting for a dependency or over their array's %N limit (their reason
        says so); end those whose dependency can never be met. The rest go to the scheduler."""
        with_deps = [j.id for j in pending if j.spec.dependency]
        groups_seen = {j.extra["group_id"] for j in (*pending, *running) if j.extra.get("group_id") is not None}
        if not with_deps and not groups_seen:
            return pending
        deps = groups_repo.dependencies(self.store.engine, with_deps)
        limits = groups_repo.array_limits(self.store.engine, sorted(groups_seen))
        g = gate(pending, running, deps, limits)
        by_id = {j.id: j for j in pending}
        changed: list = []
        for job_id, why in g.doomed.items():
            job = by_id[job_id]
            changed.append((job, JobState.PENDING, transition(job, JobState.FAILED, why, now)))
        for job_id, why in g.held.items():
            job = by_id[job_id]
            if job.reason != why:
                job.reason = why
                changed.append((job, JobState.PENDING, None))
        if changed:
            self.store.save_jobs(changed)
        return g.eligible

    def _account_usage(self, running: list[Job], now: float) -> None:
        """Fair-share usage: GPU-seconds per tenant, decayed with the configured half-life.
        Kept in memory every cycle, persisted at most every USAGE_SAVE_S."""
        if self._usage_at is not None and now > self._usage_at:
            dt = now - self._usage_at
            decay = 0.5 ** (dt / self.config.fairshare_half_life_s)
            for t in self.usage:
                self.usage[t] *= decay
            for j in running:
                self.usage[j.tenant] = self.usage.get(j.tenant, 0.0) + j.gpus_held * dt
            if now - self._usage_saved_at >= USAGE_SAVE_S:
                self.store.put_meta("fairshare_usage", self.usage)
                self._usage_saved_at = now
        self._usage_at = now

    def _snapshot(self, nodes: Sequence[Node], running: list[Job], pending: list[Job], now: float) -> Snapshot:
        waiting = {j.id: j for j in pending}
        self._previous = {k: v for k, v in self._previous.items() if k in waiting}
        for k, v in self._previous.items():
            waiting[k].extra["previous_nodes"] = v
        return Snapshot(
            nodes=tuple(nodes),
            running=self._freeze(running),
            pending=tuple(pending),
            tenants={t.name: t for t in self.store.tenants()},
            bookings=tuple(self.store.bookings(now)),
            usage=dict(self.usage),
            foreign=foreign_gpus(nodes),
            config=self.config,
        )

    def _freeze(self, running: list[Job]) -> tuple[Job, ...]:
        """The running jobs for the scheduler: a job whose every field is as last cycle is handed
        over as last cycle's object (never changed: a private copy), so the scheduler's Base
        updates by the difference instead of rebuilding (scheduler/base.py's promise)."""
        old, new, out = self._frozen, {}, []
        for j in running:
            key = (j.state, j.reason, j.submitted_at, j.started_at, j.ended_at, j.exit_code, j.allocation,
                   j.handle, j.restarts, j.failures, j.attained_gpu_s, j.spec, j.user, j.extra)
            hit = old.get(j.id)
            if hit is None or hit[0] != key or hit[1].spec is not j.spec:
                frozen = copy_job(j)
                hit = ((*key[:-1], dict(frozen.extra)), frozen)
            new[j.id] = hit
            out.append(hit[1])
        self._frozen = new
        return tuple(out)

    # 5. record -------------------------------------------------------------------------------
    def _record(self, d: Decisions, pending: list[Job], running: list[Job], now: float) -> tuple[int, int]:
        by_id = {j.id: j for j in pending}
        run_by_id = {j.id: j for j in running}
        preempted = 0
        for p in d.preemptions:
            job = run_by_id.get(p.job_id)
            if job and self._decide(job, "preempt", p.reason):
                preempted += 1
        placed: list[Job] = []
        items = []
        for p in d.placements:
            job = by_id[p.job_id]
            job.allocation = p.allocation
            nodes = ",".join(a.node for a in p.allocation)
            items.append((job, JobState.PENDING, transition(job, JobState.RUNNING, f"placed on {nodes}", now)))
            placed.append(job)
        ok = self.store.save_jobs(items) if items else []
        self._launch_all([job for job, saved in zip(placed, ok) if saved])
        self._record_reasons(d, by_id, now)
        return sum(ok), preempted

    def _record_reasons(self, d: Decisions, by_id: dict[int, Job], now: float) -> None:
        """Write the reasons that changed, in one statement. A reason that changed only in its
        numbers ("starts in 29m" -> "28m", "3 GPUs free" -> "2") is refreshed at most every
        REASON_REFRESH_S, so a long queue is not rewritten every cycle."""
        changed = []
        for job_id, reason in d.reasons.items():
            job = by_id.get(job_id)
            if job is None or job.reason == reason:
                continue
            if (_DIGITS.sub("#", job.reason) == _DIGITS.sub("#", reason)
                    and now - self._reason_at.get(job_id, -REASON_REFRESH_S) < REASON_REFRESH_S):
                continue
            job.reason = reason
            self._reason_at[job_id] = now
            changed.append((job, JobState.PENDING, None))
        if changed:
            self.store.save_jobs(changed)
        if len(self._reason_at) > 2 * len(by_id) + 1000:  # forget jobs that left the queue
            self._reason_at = {k: v for k, v in self._reason_at.items() if k in by_id}


def job_context(job: Job):
    """Every line logged about a job carries its id, tenant and node(s)."""
    return loop_context(job_id=job.id, tenant=job.tenant, node=",".join(job.node_names) or None)


def foreign_gpus(nodes: Sequence[Node]) -> dict[str, tuple[int, ...]]:
    """GPUs held by work gpufleet did not start, from the executor's node label convention."""
    out: dict[str, tuple[int, ...]] = {}
    for n in nodes:
        raw = n.labels.get(FOREIGN_GPUS_LABEL)
        if not raw:
            continue
        if raw.startswith("n:"):  # only a count is known: take the highest indices
            k = int(raw[2:])
            out[n.name] = tuple(g.index for g in n.gpus[len(n.gpus) - k:]) if k else ()
        else:
            out[n.name] = tuple(int(i) for i in raw.split(",") if i.strip())
    return out


def run_control(loop: ControlLoop, stop: threading.Event, wake: threading.Event,
                interval_s: float = 0.5, min_gap_s: float = 0.05) -> None:
    """Run cycles until `stop` is set; a `wake` (e.g. a new submission) starts one soon. Wakes
    that arrive during a cycle coalesce into one more cycle, at least `min_gap_s` later, so a burst
    of submissions does not starve the API of the interpreter."""
    while not stop.is_set():
        started = time.monotonic()
        try:
            loop.cycle()
        except Exception:
            log.exception("control cycle failed; retrying")
        if wake.wait(interval_s):
            stop.wait(max(0.0, started + min_gap_s - time.monotonic()))
        wake.clear()

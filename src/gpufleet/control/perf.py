"""Clean-room perf runs around launch on engines this server reaches through NVML (local).

    prolog(job, now)  before launch, on every node of the run: the prolog checks (health/prolog.py);
                      a failing node is released to the health loop (drain -> remediation) and the
                      job goes back to the queue (or fails with --no-requeue); records PerfRun rows
    sample(jobs, now) every policy.sample_s while a perf job runs: one reading per GPU, stored
    epilog(job, now)  when the run leaves RUNNING: last sample, throttle / clock drop / XID-ECC
                      verdicts, perf_valid with the reason, clocks restored

The NVML session opened by the prolog stays open until the epilog (one per job attempt and node).
A node NVML cannot reach (remote engine, NVML off) runs unchecked: perf_valid stays None with the
reason. On Slurm the batch script runs `gpufleet perf prolog|sample|epilog` inside the allocation
instead (executors/slurm/script.py); when the attempt ends, `record_in_job` stores what they
decided (the executor's `perf_verdicts`) as the same PerfRun rows and samples, and hands the
nodes a prolog refused to the health loop like `prolog` does.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol, Sequence

from gpufleet.domain import Job, JobState
from gpufleet.domain.perf import PerfCheck, PerfRun, PerfSample
from gpufleet.health.prolog import judge_run, prolog_checks, restore_clocks, sample_gpus, summarise
from gpufleet.health.types import CheckContext, CheckRecord, CheckResult, NodeHealth, Status
from gpufleet.inventory.identity import read_identity
from gpufleet.observability.logs import loop_logger
from gpufleet.store.hardware import HardwareRepo

log = loop_logger("perf")


class HealthHooks(Protocol):
    def release(self, health: NodeHealth) -> None:
        """A prolog refused the node: record the findings, drain it, start remediation."""

    def findings(self, node: str, since: float | None) -> list[str]:
        """XID/ECC findings of the health loop on `node` (since `since`; None: its latest run)."""


@dataclass
class _Open:
    run: PerfRun
    nvml: Any
    next_sample: float
    expected_sm: dict[int, int] = field(default_factory=dict)


@dataclass
class PerfGuard:
    nvml: Any  # an NvmlProvider: for_node(name) -> pynvml-like module or None
    hardware: HardwareRepo
    health: HealthHooks | None = None
    clock: Callable[[], float] = time.time
    _open: dict[tuple[int, int, str], _Open] = field(default_factory=dict)

    # ---- prolog -----------------------------------------------------------------------------
    def prolog(self, job: Job, nodes: Sequence[Any]) -> list[NodeHealth]:
        """Run the prolog on every node of the job (`nodes`: the Node objects). Returns the
        failed nodes' results (empty: go ahead). Passing nodes keep their session open."""
        now = self.clock()
        failed: list[NodeHealth] = []
        for node in nodes:
            health = self._prolog_node(job, node, now)
            if health is not None and health.status is Status.FAIL:
                failed.append(health)
        if failed:
            self.abort(job, "prolog failed on " + ",".join(h.node for h in failed))
            for h in failed:
                if self.health is not None:
                    self.health.release(h)
        return failed

    def _prolog_node(self, job: Job, node: Any, now: float) -> NodeHealth | None:
        policy = job.spec.perf
        gpus = next((a.gpus for a in job.allocation if a.node == node.name), ())
        run = PerfRun(job.id, job.attempt, node.name, policy, now, gpus=tuple(gpus))
        nvml = self.nvml.for_node(node.name) if self.nvml is not None else None
        if nvml is None:
            run.reason = "not checked: NVML does not reach this node"
            self.hardware.save_run(run)
            return None
        nvml.nvmlInit()
        run.identity = read_identity(nvml)
        recent = self.health.findings(node.name, None) if self.health is not None else []
        records = self._run_checks(node, nvml, prolog_checks(policy, recent), now)
        run.prolog = tuple(PerfCheck(r.check.removeprefix("perf_"), r.status is not Status.FAIL, r.message, r.facts)
                           for r in records)
        health = NodeHealth(node.name, now, uuid.uuid4().hex[:12], tuple(records), requeue=False)
        bad = [c for c in run.prolog if not c.ok]
        if bad:
            run.valid, run.ended_at = False, now
            run.reason = "prolog " + "; ".join(f"{c.name}: {c.reason}" for c in bad)
            restore_clocks(nvml, policy)
            _shutdown(nvml)
        else:
            expected = _expected_sm(run.prolog)
            self._open[(job.id, job.attempt, node.name)] = _Open(run, nvml, now, expected)
        self.hardware.save_run(run)
        return health

    def _run_checks(self, node: Any, nvml: Any, checks: Iterable[Any], now: float) -> list[CheckRecord]:
        out = []
        run_id = uuid.uuid4().hex[:12]
        for check in checks:
            ctx = CheckContext(node=node, now=now, nvml=nvml)
            try:
                result = check.run(ctx)
            except Exception as e:  # a check must not take the loop down
                result = CheckResult.fail(f"check crashed: {e.__class__.__name__}: {e}")
            out.append(CheckRecord(node.name, f"perf_{check.name}", now, result.status, result.message,
                                   dict(result.facts), 0.0, run_id))
        return out

    def abort(self, job: Job, reason: str) -> None:
        """Close the sessions a partly passed prolog opened (another node of the job failed)."""
        for key in [k for k in self._open if k[:2] == (job.id, job.attempt)]:
            o = self._open.pop(key)
            o.run.valid, o.run.ended_at, o.run.reason = False, self.clock(), reason
            restore_clocks(o.nvml, o.run.policy)
            _shutdown(o.nvml)
            self.hardware.save_run(o.run)

    # ---- during the run ---------------------------------------------------------------------
    def sample(self, running: Iterable[Job], now: float) -> None:
        live = {(j.id, j.attempt) for j in running if j.state is JobState.RUNNING}
        for key, o in list(self._open.items()):
            if key[:2] in live and now >= o.next_sample:
                self._take(o, now)

    def _take(self, o: _Open, now: float) -> None:
        try:
            samples = sample_gpus(o.nvml, now)
        except Exception as e:
            log.warning("perf sampling failed", node=o.run.node, job_id=o.run.job_id, error=str(e))
            samples = []
        if o.run.gpus:
            samples = [s for s in samples if s.gpu in o.run.gpus]
        self.hardware.add_samples(o.run.job_id, o.run.attempt, o.run.node, samples)
        o.next_sample = now + o.run.policy.sample_s

    # ---- epilog -----------------------------------------------------------------------------
    def epilog(self, job: Job, attempt: int) -> list[PerfRun]:
        """Finish every open run of this job attempt (after it left RUNNING)."""
        now = self.clock()
        done = []
        for key in [k for k in self._open if k[:2] == (job.id, attempt)]:
            o = self._open.pop(key)
            self._take(o, now)
            samples = self.hardware.samples(job.id, attempt, o.run.node)
            findings = self.health.findings(o.run.node, o.run.started_at) if self.health is not None else []
            checks = judge_run(samples, o.expected_sm, findings)
            restore_clocks(o.nvml, o.run.policy)
            _shutdown(o.nvml)
            bad = [c for c in checks if not c.ok]
            o.run.epilog, o.run.ended_at, o.run.conditions = tuple(checks), now, summarise(samples)
            o.run.valid = not bad
            o.run.reason = "epilog " + "; ".join(f"{c.name}: {c.reason}" for c in bad) if bad else ""
            self.hardware.save_run(o.run)
            done.append(o.run)
        return done

    # ---- run inside the allocation (Slurm) ----------------------------------------------------
    def record_in_job(self, job: Job, attempt: int, verdicts: Sequence[dict]) -> list[NodeHealth]:
        """Store the verdicts the job's own prolog/epilog wrote (one dict per rank, see
        SlurmExecutor.perf_verdicts) as PerfRuns; returns the nodes the prolog refused (already
        released to the health loop). The job's user could write those files: each value is
        type-checked, a malformed one makes the run invalid rather than crash the loop."""
        now = self.clock()
        refused: list[NodeHealth] = []
        for v in verdicts:
            node = str(v.get("node") or "")
            if not node:
                continue
            gpus = next((a.gpus for a in job.allocation if a.node == node), ())
            run = PerfRun(job.id, attempt, node, job.spec.perf, _num(v.get("started_at")) or now,
                          gpus=tuple(gpus), ended_at=_num(v.get("ended_at")) or now)
            run.prolog = _checks(v.get("prolog"))
            stage = v.get("stage")
            if stage == "prolog":
                bad = [c for c in run.prolog if not c.ok] or [PerfCheck("prolog", False, "refused")]
                run.valid = False
                run.reason = "prolog " + "; ".join(f"{c.name}: {c.reason}" for c in bad)
                refused.append(self._refusal(node, run, now))
            elif stage == "epilog":
                run.epilog = _checks(v.get("epilog"))
                run.valid = v.get("ok") if isinstance(v.get("ok"), bool) else False
                run.reason = str(v.get("reason") or "") if run.valid is False else ""
                if run.valid is False and not run.reason:
                    run.reason = "epilog: no valid verdict"
                conditions = v.get("conditions")
                run.conditions = conditions if isinstance(conditions, dict) else {}
                samples = _samples(v.get("samples"))
            else:
                run.reason = str(v.get("reason") or "not checked")
            self.hardware.save_run(run)
            if stage == "epilog" and samples:
                self.hardware.add_samples(job.id, attempt, node, samples)
        if refused and self.health is not None:
            for h in refused:
                self.health.release(h)
        return refused

    @staticmethod
    def _refusal(node: str, run: PerfRun, now: float) -> NodeHealth:
        run_id = uuid.uuid4().hex[:12]
        records = tuple(CheckRecord(node, f"perf_{c.name}", now, Status.OK if c.ok else Status.FAIL, c.reason,
                                    dict(c.facts or {}), 0.0, run_id) for c in run.prolog)
        if not any(r.status is Status.FAIL for r in records):
            records += (CheckRecord(node, "perf_prolog", now, Status.FAIL, run.reason, {}, 0.0, run_id),)
        return NodeHealth(node, now, run_id, records, requeue=False)

    def open_jobs(self) -> set[tuple[int, int]]:
        return {k[:2] for k in self._open}


def _expected_sm(prolog: Sequence[PerfCheck]) -> dict[int, int]:
    for c in prolog:
        if c.name == "clocks":
            gpus = (c.facts or {}).get("gpus") or {}
            return {int(i): int(f["expected_sm_mhz"]) for i, f in gpus.items() if f.get("expected_sm_mhz")}
    return {}


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _checks(value: Any) -> tuple[PerfCheck, ...]:
    out = []
    for c in value if isinstance(value, list) else ():
        if isinstance(c, dict) and isinstance(c.get("name"), str):
            facts = c.get("facts")
            out.append(PerfCheck(c["name"], c.get("ok") is True, str(c.get("reason") or ""),
                                 facts if isinstance(facts, dict) else {}))
    return tuple(out)


MAX_SAMPLES = 20_000  # per run and node read back from a job's state file


def _samples(value: Any) -> list[PerfSample]:
    out = []
    for d in (value if isinstance(value, list) else ())[-MAX_SAMPLES:]:
        if not isinstance(d, dict) or _num(d.get("at")) is None or type(d.get("gpu")) is not int:
            continue
        ints = {k: d.get(k) if type(d.get(k)) is int else None for k in ("sm_mhz", "mem_mhz", "temp_c", "util_pct")}
        throttle = d.get("throttle") if isinstance(d.get("throttle"), list) else []
        out.append(PerfSample(float(d["at"]), d["gpu"], power_w=_num(d.get("power_w")),
                              throttle=tuple(str(t) for t in throttle), **ints))
    return out


def _shutdown(nvml: Any) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception:
        pass

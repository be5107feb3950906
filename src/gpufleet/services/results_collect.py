"""Collecting what an attempt wrote into $GPUFLEET_RESULTS_DIR when it ends (called by the
control loop once it has recorded the end), with the provenance the run had."""

from __future__ import annotations

from typing import Any, Callable

from gpufleet.domain import Attempt, Job, Node
from gpufleet.executors.base import Ability, Executor, ResultFile, latest_attempt
from gpufleet.observability.logs import get_logger
from gpufleet.results import parse_junit, series_key
from gpufleet.results.ingest import parse_lenient
from gpufleet.results.model import Result, TestCase
from gpufleet.store import Store
from gpufleet.store.results import add_results

log = get_logger("gpufleet.results")
# (job id, attempt, node) -> the perf run's {valid, reason, clocks, conditions}, or None (no perf run)
PerfLookup = Callable[[int, int, str], dict[str, Any] | None]
NO_LABELS = "the job spec carries no labels yet"


def perf_lookup(hardware) -> PerfLookup:
    """The validity of a perf run from the hardware repository (store/hardware.py): what the
    epilog decided for (job, attempt, node), recorded before the attempt's end reaches us."""

    def lookup(job_id: int, attempt: int, node: str) -> dict[str, Any] | None:
        runs = [r for r in hardware.runs(job_id, attempt) if r.node == node]
        if not runs:
            return None
        run = runs[-1]
        return {"valid": run.valid, "reason": run.reason, "clocks": run.policy.clocks,
                "conditions": dict(run.conditions) or None}

    return lookup


def hardware_of(node: Node | None, gpus: tuple[int, ...]) -> dict[str, str]:
    """What the results need of a node: GPU model/SKU, driver, VBIOS, the UUIDs of the GPUs held.
    Today these are node labels (sku, driver, vbios) and the inventory's GPUs; the one place to
    adapt when hardware identity is stored elsewhere."""
    if node is None:
        return {}
    held = [g for g in node.gpus if g.index in gpus] or list(node.gpus)
    model = held[0].model if held else ""
    return {"gpu_model": model, "sku": node.labels.get("sku", "") or model,
            "driver": node.labels.get("driver", ""), "vbios": node.labels.get("vbios", ""),
            "gpu_uuids": ",".join(g.uuid for g in held if g.uuid)}


def collect(store: Store, executor: Executor, job: Job, now: float, perf: PerfLookup | None = None) -> int:
    """Store the results of the attempt of `job` that just ended; the number stored."""
    if Ability.RESULTS not in executor.abilities:
        return 0
    n = latest_attempt(job)
    attempt = next((a for a in store.attempts(job.id) if a.n == n), None)
    files, notes = executor.results(job, n)
    if not files:
        return 0
    results, cases = _parse(files, now, notes)
    nodes = {x.name: x for x in store.nodes()}
    for r in results:
        _stamp(r, job, n, attempt, nodes, perf, r.node)
    for c in cases:
        a = _allocation(job, attempt, c.node)
        c.job_id, c.attempt, c.tenant, c.user, c.node = job.id, n, job.tenant, job.user, a.node if a else ""
    for note in notes:
        log.warning("result line not stored", job_id=job.id, attempt=n, note=note)
    add_results(store.engine, results, cases)
    return len(results)


def _parse(files: list[ResultFile], now: float, notes: list[str]) -> tuple[list[Result], list[TestCase]]:
    results: list[Result] = []
    cases: list[TestCase] = []
    for f in files:
        if f.name.endswith(".xml"):
            try:
                got = parse_junit(f.data, now)
            except Exception as e:
                notes.append(f"rank {f.rank}: {f.name}: {e}")
                continue
            for c in got:
                c.node = str(f.rank)
            cases += got
            continue
        good, bad = parse_lenient(f.data.splitlines(), now)
        notes += [f"rank {f.rank}: {f.name}: {b}" for b in bad]
        for r in good:
            r.node = str(f.rank)  # replaced by the rank's node in _stamp
        results += good
    return results, cases


def _allocation(job: Job, attempt: Attempt | None, rank: str):
    alloc = attempt.allocation if attempt else job.allocation
    return alloc[int(rank)] if rank.isdigit() and int(rank) < len(alloc) else None


def _stamp(r: Result, job: Job, n: int, attempt: Attempt | None, nodes: dict[str, Node],
           perf: PerfLookup | None, rank: str) -> None:
    a = _allocation(job, attempt, rank)
    r.job_id, r.attempt, r.tenant, r.user = job.id, n, job.tenant, job.user
    r.node = a.node if a else ""
    for k, v in hardware_of(nodes.get(r.node), tuple(a.gpus) if a else ()).items():
        setattr(r, k, v)
    labels = getattr(job.spec, "labels", None)
    r.labels = dict(labels) if labels else None
    r.commit = (r.labels or {}).get("commit", "")
    run = perf(job.id, n, r.node) if perf else None
    if run:
        r.valid = run.get("valid") is not False
        r.invalid_reason, r.clocks = run.get("reason", "") or "", run.get("clocks", "") or ""
        r.conditions = run.get("conditions")
    if r.at == 0 and attempt:
        r.at = attempt.ended_at or attempt.started_at
    r.series = series_key(r)

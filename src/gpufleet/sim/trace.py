"""The canonical trace: one row per job, what the simulator replays.

CSV columns (docs/trace-format.md): `id,submit_s,duration_s,gpus` required;
`nodes,gpu_model,tenant,time_limit_s,priority` optional, and for failure replays (sim/failures.py)
`checkpoint_interval_s,checkpoint_cost_s,restart_cost_s` (empty: the failure model's defaults).
`gpus` is the job's TOTAL GPU count.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, TextIO

from gpufleet.domain import ValidationError
from gpufleet.domain.node import normalise_model

REQUIRED = ("id", "submit_s", "duration_s", "gpus")
OPTIONAL = ("nodes", "gpu_model", "tenant", "time_limit_s", "priority")
RESILIENCE = ("checkpoint_interval_s", "checkpoint_cost_s", "restart_cost_s")
COLUMNS = REQUIRED + OPTIONAL + RESILIENCE


@dataclass(frozen=True, slots=True)
class TraceJob:
    """One job of a trace. Times are seconds from the trace start; `gpus` is the total."""

    id: str
    submit_s: float
    duration_s: float
    gpus: int
    nodes: int | None = None  # None: one node up to a node's size, else whole nodes
    gpu_model: str | None = None
    tenant: str = "default"
    time_limit_s: int | None = None  # None: the importer's over-estimate model fills it
    priority: int = 0
    # failure replays only; None: the failure model's default. 0 interval: never checkpoints
    checkpoint_interval_s: float | None = None
    checkpoint_cost_s: float | None = None
    restart_cost_s: float | None = None


@dataclass(slots=True)
class Trace:
    jobs: list[TraceJob]
    source: str = "canonical"
    skipped: int = 0  # rows the importer dropped on purpose (job steps, never started, no GPU)

    def sorted(self) -> "Trace":
        order = sorted(self.jobs, key=lambda j: j.submit_s)  # stable: ties keep file order
        return Trace(order, self.source, self.skipped)

    def with_time_limits(self, model) -> "Trace":
        """Fill every missing time limit from the actual duration through `model`."""
        jobs = [j if j.time_limit_s is not None else
                TraceJob(j.id, j.submit_s, j.duration_s, j.gpus, j.nodes, j.gpu_model, j.tenant,
                         model(j.duration_s), j.priority, j.checkpoint_interval_s, j.checkpoint_cost_s,
                         j.restart_cost_s)  # not dataclasses.replace: 3x faster
                for j in self.jobs]
        return Trace(jobs, self.source, self.skipped)

    @property
    def tenants(self) -> list[str]:
        return sorted({j.tenant for j in self.jobs})


def gang_shape(job: TraceJob, node_gpus: int) -> tuple[int, int]:
    """(nodes, gpus per node). Without `nodes`, jobs over one node become gangs of whole nodes."""
    if job.nodes is not None:
        return job.nodes, job.gpus // job.nodes
    if job.gpus <= node_gpus or node_gpus <= 0:
        return 1, job.gpus
    return math.ceil(job.gpus / node_gpus), node_gpus


def read_canonical(path: str | Path) -> Trace:
    with _open_text(path) as fh:
        return parse_canonical(fh)


def parse_canonical(fh: TextIO) -> Trace:
    reader = csv.DictReader(fh)
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ValidationError("trace", f"canonical CSV lacks column(s) {missing} (header: {header})")
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        raise ValidationError("trace", f"unknown column(s) {unknown}; allowed: {list(COLUMNS)}")
    reader.fieldnames = header
    jobs: list[TraceJob] = []
    seen: set[str] = set()
    for line, row in enumerate(reader, start=2):
        if not any((v or "").strip() for v in row.values()):
            continue  # blank line
        job = _canonical_row(row, line)
        if job.id in seen:
            raise ValidationError(f"trace line {line}: id", f"duplicate id {job.id!r}")
        seen.add(job.id)
        jobs.append(job)
    return Trace(jobs, "canonical").sorted()


def _canonical_row(row: dict[str, str | None], line: int) -> TraceJob:
    def get(key: str) -> str:
        return (row.get(key) or "").strip()

    where = f"trace line {line}"
    jid = get("id")
    if not jid:
        raise ValidationError(f"{where}: id", "is empty")
    gpus = _num(get("gpus"), f"{where}: gpus", int, minimum=1)
    nodes = _num(get("nodes"), f"{where}: nodes", int, minimum=1) if get("nodes") else None
    if nodes is not None and gpus % nodes:
        raise ValidationError(f"{where}: nodes", f"{gpus} GPUs do not split evenly over {nodes} nodes")
    limit = get("time_limit_s")
    return TraceJob(
        id=jid,
        submit_s=_num(get("submit_s"), f"{where}: submit_s", float, minimum=0),
        duration_s=_num(get("duration_s"), f"{where}: duration_s", float, minimum=0),
        gpus=gpus,
        nodes=nodes,
        gpu_model=normalise_model(get("gpu_model")) if get("gpu_model") else None,
        tenant=get("tenant") or "default",
        time_limit_s=_num(limit, f"{where}: time_limit_s", int, minimum=1) if limit else None,
        priority=_num(get("priority"), f"{where}: priority", int) if get("priority") else 0,
        **{k: _num(get(k), f"{where}: {k}", float, minimum=0) for k in RESILIENCE if get(k)},
    )


def _num(text: str, field: str, kind: type, minimum: float | None = None):
    try:
        value = float(text)
    except ValueError:
        raise ValidationError(field, f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise ValidationError(field, f"not a finite number: {text!r}")
    if kind is int:
        if value != int(value):
            raise ValidationError(field, f"must be a whole number, got {text!r}")
        value = int(value)
    if minimum is not None and value < minimum:
        raise ValidationError(field, f"must be >= {minimum:g}, got {text!r}")
    return value


def write_canonical(jobs: Iterable[TraceJob], fh: TextIO) -> None:
    """The resilience columns are written only when some job has one of them."""
    jobs = list(jobs)
    extra = [k for k in RESILIENCE if any(getattr(j, k) is not None for j in jobs)]
    w = csv.writer(fh, lineterminator="\n")
    w.writerow(REQUIRED + OPTIONAL + tuple(extra))
    for j in jobs:
        opt = [_fmt(v) if (v := getattr(j, k)) is not None else "" for k in extra]
        w.writerow([j.id, _fmt(j.submit_s), _fmt(j.duration_s), j.gpus, j.nodes or "",
                    j.gpu_model or "", j.tenant, j.time_limit_s or "", j.priority, *opt])


def to_csv_text(jobs: Iterable[TraceJob]) -> str:
    buf = io.StringIO()
    write_canonical(jobs, buf)
    return buf.getvalue()


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _open_text(path: str | Path) -> TextIO:
    p = Path(path)
    if not p.is_file():
        raise ValidationError("trace", f"no such file: {path}")
    if p.suffix == ".gz":
        import gzip

        return gzip.open(p, "rt", newline="")
    return p.open(newline="")


def sniff_format(path: str | Path) -> str:
    """canonical | philly | sacct, from the header line."""
    with _open_text(path) as fh:
        head = fh.readline().strip().lower()
    if "|" in head and ("submit" in head or "jobid" in head):
        return "sacct"
    cols = {c.strip() for c in head.split(",")}
    if {"timestamp", "duration", "num_gpus"} <= cols:
        return "philly"
    if {"id", "submit_s"} <= cols:
        return "canonical"
    raise ValidationError("format", f"cannot tell the trace format from its header {head[:80]!r}; "
                          "pass --format canonical|philly|sacct")

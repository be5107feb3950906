"""Trace importers: Philly per-job CSV and Slurm `sacct --parsable2` exports -> `Trace`."""

from __future__ import annotations

import csv
import re
from datetime import datetime, timezone
from pathlib import Path

from gpufleet.domain import ValidationError, parse_duration
from gpufleet.domain.node import normalise_model
from gpufleet.sim.timelimit import TimeLimitModel, parse_time_limit_model
from gpufleet.sim.trace import Trace, TraceJob, _open_text, read_canonical, sniff_format

FORMATS = ("auto", "canonical", "philly", "sacct")


def load_trace(path: str | Path, fmt: str = "auto", model: TimeLimitModel | None = None) -> Trace:
    """Read any supported format; fill missing time limits with the over-estimate model."""
    fmt = (fmt or "auto").lower()
    if fmt not in FORMATS:
        raise ValidationError("format", f"unknown trace format {fmt!r}; use one of {list(FORMATS)}")
    if fmt == "auto":
        fmt = sniff_format(path)
    reader = {"canonical": read_canonical, "philly": read_philly, "sacct": read_sacct}[fmt]
    trace = reader(path)
    if not trace.jobs:
        raise ValidationError("trace", f"{path}: no jobs to replay")
    return trace.with_time_limits(model or parse_time_limit_model(None))


# --- Philly ---------------------------------------------------------------------------------

PHILLY_COLUMNS = ("timestamp", "duration", "num_gpus")


def read_philly(path: str | Path) -> Trace:
    """`timestamp,duration,num_gpus,gpu_time,cluster`; submit times become seconds from the first."""
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in PHILLY_COLUMNS if c not in header]
        if missing:
            raise ValidationError("trace", f"Philly CSV lacks column(s) {missing} (header: {header})")
        ci = {name: header.index(name) for name in header}
        rows = [(line, r) for line, r in enumerate(reader, start=2) if r and any(x.strip() for x in r)]
    parsed = [_philly_row(r, ci, line) for line, r in rows]
    if not parsed:
        return Trace([], "philly")
    t0 = min(p[0] for p in parsed)
    jobs = [TraceJob(id=str(k), submit_s=ts - t0, duration_s=dur, gpus=g, tenant=tenant)
            for k, (ts, dur, g, tenant) in enumerate(parsed, start=1)]
    return Trace(jobs, "philly").sorted()


def _philly_row(r: list[str], ci: dict[str, int], line: int) -> tuple[float, float, int, str]:
    where = f"trace line {line}"
    try:
        ts = datetime.fromisoformat(r[ci["timestamp"]].strip()).replace(tzinfo=timezone.utc).timestamp()
    except (ValueError, IndexError):
        raise ValidationError(f"{where}: timestamp", "not a 'YYYY-MM-DD HH:MM:SS' time") from None
    try:
        dur = float(r[ci["duration"]])
        gpus = int(float(r[ci["num_gpus"]]))
    except (ValueError, IndexError):
        raise ValidationError(f"{where}: duration/num_gpus", "not a number") from None
    if dur < 0:
        raise ValidationError(f"{where}: duration", f"must be >= 0, got {dur}")
    if gpus < 1:
        raise ValidationError(f"{where}: num_gpus", f"must be >= 1, got {gpus}")
    tenant = r[ci["cluster"]].strip() if "cluster" in ci and len(r) > ci["cluster"] else ""
    return ts, dur, gpus, tenant or "default"


# --- Slurm sacct ----------------------------------------------------------------------------

SACCT_REQUIRED = ("JobID", "Submit", "Start", "End")
_GPU_TRES = re.compile(r"gres/gpu(?::([^=,]+))?=(\d+)")
_NO_TIME = {"", "unknown", "none", "n/a"}


def read_sacct(path: str | Path) -> Trace:
    """`sacct --parsable2 -o JobID,Submit,Start,End,AllocTRES,ReqTRES,Timelimit,Account[,NNodes,Priority]`.

    Keeps whole jobs (drops steps like `12.batch`), drops jobs that never ran or hold no GPU.
    Duration = End - Start. `Timelimit` is the user's own estimate, so it is kept as is.
    """
    with _open_text(path) as fh:
        lines = [ln.rstrip("\r\n") for ln in fh if ln.strip()]
    if not lines:
        return Trace([], "sacct")
    header = lines[0].split("|")
    missing = [c for c in SACCT_REQUIRED if c not in header]
    if missing:
        raise ValidationError("trace", f"sacct export lacks column(s) {missing} (use --parsable2 with a header)")
    if "AllocTRES" not in header and "ReqTRES" not in header:
        raise ValidationError("trace", "sacct export needs an AllocTRES or ReqTRES column for GPU counts")
    raw: list[tuple[float, float, TraceJob]] = []
    skipped = 0
    for line, text in enumerate(lines[1:], start=2):
        row = dict(zip(header, text.split("|")))
        item = _sacct_row(row, line)
        if item is None:
            skipped += 1
        else:
            raw.append(item)
    if not raw:
        return Trace([], "sacct", skipped)
    t0 = min(sub for sub, _, _ in raw)
    jobs = [_shift(job, sub - t0) for sub, _, job in raw]
    return Trace(jobs, "sacct", skipped).sorted()


def _shift(job: TraceJob, submit_s: float) -> TraceJob:
    return TraceJob(job.id, submit_s, job.duration_s, job.gpus, job.nodes, job.gpu_model,
                    job.tenant, job.time_limit_s, job.priority)


def _sacct_row(row: dict[str, str], line: int) -> tuple[float, float, TraceJob] | None:
    where = f"trace line {line}"
    jid = row.get("JobID", "").strip()
    if not jid or "." in jid:
        return None  # job steps (12.batch, 12.0, 12.extern) repeat their parent
    start, end = row.get("Start", "").strip(), row.get("End", "").strip()
    if start.lower() in _NO_TIME or end.lower() in _NO_TIME:
        return None  # never started, or still running
    submit = _sacct_time(row.get("Submit", ""), f"{where}: Submit")
    t_start = _sacct_time(start, f"{where}: Start")
    t_end = _sacct_time(end, f"{where}: End")
    gpus, model = _gpus(row.get("AllocTRES", "")) if row.get("AllocTRES", "").strip() else (0, None)
    if gpus == 0:
        gpus, model = _gpus(row.get("ReqTRES", ""))
    if gpus == 0:
        return None  # CPU-only job: nothing for a GPU scheduler to place
    nodes = _nodes(row.get("NNodes", ""), gpus)
    job = TraceJob(id=jid, submit_s=0.0, duration_s=max(0.0, t_end - t_start), gpus=gpus, nodes=nodes,
                   gpu_model=model, tenant=row.get("Account", "").strip() or "default",
                   time_limit_s=_limit(row.get("Timelimit", ""), f"{where}: Timelimit"),
                   priority=_int_or_zero(row.get("Priority", "")))
    return submit, t_start, job


def _sacct_time(text: str, field: str) -> float:
    try:
        return datetime.fromisoformat(text.strip()).replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        raise ValidationError(field, f"not a time like 2024-05-01T12:00:00: {text!r}") from None


def _gpus(tres: str) -> tuple[int, str | None]:
    """'cpu=8,gres/gpu=2,gres/gpu:a100=2' -> (2, 'a100')."""
    total, model = 0, None
    for m in _GPU_TRES.finditer(tres or ""):
        if m.group(1):
            model = normalise_model(m.group(1))
            total = total or int(m.group(2))
        else:
            total = int(m.group(2))
    return total, model


def _nodes(text: str, gpus: int) -> int | None:
    n = _int_or_zero(text)
    if n <= 1:
        return None if n == 0 else 1
    return n if gpus % n == 0 else None


def _limit(text: str, field: str) -> int | None:
    t = (text or "").strip()
    if not t or t.upper() in ("UNLIMITED", "PARTITION_LIMIT", "INVALID"):
        return None  # the over-estimate model fills it
    return parse_duration(t, field)


def _int_or_zero(text: str) -> int:
    try:
        return int((text or "").strip())
    except ValueError:
        return 0

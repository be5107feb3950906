"""gpufleet usage [--from] [--to] [--by ...] [--json|--csv]; gpufleet usage export --format sacct."""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

from gpufleet.cli.output import err, print_json, table
from gpufleet.client import Client
from gpufleet.domain import ValidationError, format_duration

usage_app = typer.Typer(help="GPU-hours per tenant, user, GPU model, SKU, node kind, job label (like sreport).",
                        invoke_without_command=True, no_args_is_help=False)

_FROM = typer.Option(None, "--from", help="start: 2026-05-01, 2026-05-01T08:00 (UTC), -7d (default: 30 days before --to)")
_TO = typer.Option(None, "--to", help="end (exclusive): a date, a time, now (default), -1d")
_TENANT = typer.Option(None, "--tenant", "-T", help="one tenant (non-admins: their own only)")
MEASURES = ("gpu_hours", "share", "quota_share", "attempts", "started", "mean_wait_s", "busy_gpu_s", "idle_gpu_s")


@usage_app.callback()
def usage(ctx: typer.Context, start: Optional[str] = _FROM, end: Optional[str] = _TO,
          by: Optional[List[str]] = typer.Option(None, "--by", help="tenant|user|gpu_model|sku|kind|node|label:KEY; repeat or a,b"),
          tenant: Optional[str] = _TENANT,
          as_json: bool = typer.Option(False, "--json"), as_csv: bool = typer.Option(False, "--csv")) -> None:
    """GPU-hours allocated in a period, with totals, quota share and the top idle holders. Running
    attempts and attempts crossing the period's boundaries are cut there."""
    if ctx.invoked_subcommand is not None:
        return
    if as_json and as_csv:
        raise ValidationError("csv", "give --json or --csv, not both")
    with Client.from_env() as c:
        u = c.usage(start, end, by, tenant)
    if as_json:
        print_json(u)
    elif as_csv:
        _csv(u)
    else:
        _tables(u)


def _cell(name: str, v) -> str:
    if v is None:
        return "-"
    if name in ("share", "quota_share"):
        return f"{100 * v:.1f}%"
    if name == "mean_wait_s":
        return format_duration(v)
    if name in ("busy_gpu_s", "idle_gpu_s"):
        return f"{v / 3600:.2f}"
    if name == "gpu_hours":
        return f"{v:.2f}"
    return str(v)


def _tables(u) -> None:
    span = f"{_utc(u.start)} -> {_utc(u.end)} UTC"
    heads = [k.upper() for k in u.by] + ["GPU-H", "SHARE", "OF-QUOTA", "ATTEMPTS", "STARTED", "WAIT",
                                         "BUSY-H", "IDLE-H"]  # WAIT: mean queue time
    rows = [[g.key[k] for k in u.by] + [_cell(m, getattr(g, m)) for m in MEASURES] for g in u.groups]
    rows.append(["TOTAL"] + [""] * (len(u.by) - 1) + [_cell(m, getattr(u.total, m)) for m in MEASURES])
    table(heads, rows, title=f"Usage {span}")
    if u.idle:
        table(("JOB", "USER", "TENANT", "GPU-H", "BUSY-H", "IDLE-H"),
              [(h.job_id, h.user, h.tenant, f"{h.gpu_s / 3600:.2f}", f"{h.busy_gpu_s / 3600:.2f}",
                f"{h.idle_gpu_s / 3600:.2f}") for h in u.idle], title="Top idle holders")
    for note in u.notes:
        err.print(f"note: {note}", markup=False)


def _csv(u) -> None:
    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow([*u.by, *MEASURES])
    for g in u.groups:
        w.writerow([*(g.key[k] for k in u.by), *("" if getattr(g, m) is None else getattr(g, m) for m in MEASURES)])
    w.writerow(["TOTAL", *[""] * (len(u.by) - 1), *("" if getattr(u.total, m) is None else getattr(u.total, m)
                                                    for m in MEASURES)])


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))


@usage_app.command("export")
def export(fmt: str = typer.Option("sacct", "--format", help="sacct (sacct --parsable2 columns)"),
           start: Optional[str] = _FROM, end: Optional[str] = _TO, tenant: Optional[str] = _TENANT,
           output: Optional[Path] = typer.Option(None, "--output", "-o", help="file (default: stdout)")) -> None:
    """The period's jobs as a `sacct --parsable2` file; replay it: gpufleet sim --format sacct FILE."""
    with Client.from_env() as c:
        text = c.usage_export(start, end, tenant, fmt)
    if output is None:
        sys.stdout.write(text)
        return
    output.write_text(text)
    err.print(f"{max(0, text.count(chr(10)) - 1)} jobs written to {output}", markup=False)

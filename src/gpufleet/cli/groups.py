"""gpufleet group show|list|cancel: job groups (test matrices, arrays)."""

from __future__ import annotations

from typing import Any

import typer

from gpufleet.cli.output import out, print_json, table, when
from gpufleet.client import Client

group_app = typer.Typer(help="Job groups: test matrices and arrays.", no_args_is_help=True)


def cell_text(cell: dict[str, str]) -> str:
    if list(cell) == ["GPUFLEET_ARRAY_INDEX"]:
        return cell["GPUFLEET_ARRAY_INDEX"]
    return ",".join(f"{k}={v}" for k, v in cell.items())


def _metric(m: dict[str, Any] | None) -> str:
    if not m:
        return "-"
    return f"{m['benchmark']}/{m['metric']}={m['value']:g}{(' ' + m['unit']) if m['unit'] else ''}"


def _tests(t: dict[str, int] | None) -> str:
    return " ".join(f"{k}:{v}" for k, v in sorted(t.items())) if t else "-"


def print_group(g: dict[str, Any]) -> None:
    """The matrix as a table: cell -> job -> state -> result (and why a cell has no job)."""
    head = "CELL" if g["kind"] == "matrix" else "INDEX"
    title = f"group {g['id']} ({g['kind']} {g['name']}, tenant {g['tenant']})"
    table((head, "JOB", "STATE", "RESULT", "EXIT", "TESTS", "METRIC", "REASON"),
          [(cell_text(c["cell"]), c["job_id"] or "-", c["state"], c["result"],
            "-" if c["exit_code"] is None else c["exit_code"], _tests(c["tests"]), _metric(c["metric"]),
            c["reason"] if c["state"] in ("IMPOSSIBLE", "PENDING", "FAILED", "CANCELLED") else "")
           for c in g["cells"]], title=title)
    out.print("  ".join(f"{k}: {v}" for k, v in sorted(g["summary"].items())), markup=False)


@group_app.command("show")
def show(group_id: int, as_json: bool = typer.Option(False, "--json")) -> None:
    """A group's cells: each cell's job, state and result (pass/fail from JUnit results or the
    exit code), the headline metric from its results, and why an impossible cell has no job."""
    with Client.from_env() as c:
        g = c.group(group_id)
    if as_json:
        return print_json(g)
    print_group(g)


@group_app.command("list")
def list_(limit: int = typer.Option(100, "--limit"), as_json: bool = typer.Option(False, "--json")) -> None:
    with Client.from_env() as c:
        rows = c.groups(limit)
    if as_json:
        return print_json(rows)
    table(("ID", "KIND", "NAME", "TENANT", "USER", "JOBS", "CREATED"),
          [(g["id"], g["kind"], g["name"], g["tenant"], g["user"], g["jobs"], when(g["created_at"])) for g in rows])


@group_app.command("cancel")
def cancel(group_id: int) -> None:
    """Cancel every job of the group that is still pending or running."""
    with Client.from_env() as c:
        r = c.post(f"/groups/{group_id}/cancel")
    out.print(f"group {r['id']}: cancelled {len(r['cancelled'])} job(s)", markup=False)

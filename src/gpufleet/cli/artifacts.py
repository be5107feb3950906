"""gpufleet artifacts ID | artifacts get ID [PATH] | artifacts gc | artifacts policy [TENANT]."""

from __future__ import annotations

import os
import sys
from pathlib import Path, PurePosixPath
from typing import Optional

import typer

from gpufleet.cli.output import out, print_json, table, when
from gpufleet.client import Client
from gpufleet.domain import ValidationError

USAGE = "gpufleet artifacts ID | get ID [PATH] | gc | policy [TENANT --max-bytes B --retention D]"


def artifacts(
    args: list[str] = typer.Argument(..., help="ID | get ID [PATH] | gc | policy [TENANT]"),
    attempt: Optional[int] = typer.Option(None, "--attempt", "-a", help="one run (default: all for the list, "
                                                                       "the latest that has it for get)"),
    rank: Optional[int] = typer.Option(None, "--rank", "-r", help="get: which rank's file (default 0)"),
    output: Optional[str] = typer.Option(None, "--output", "-o",
                                         help="get PATH: a file ('-': stdout); get ID: a folder"),
    max_bytes: Optional[str] = typer.Option(None, "--max-bytes", help="policy: the tenant's quota (500M, 50G)"),
    retention: Optional[str] = typer.Option(None, "--retention", help="policy: how long one is kept (30d)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """A job's artifacts: the files its `artifacts` globs matched when each attempt ended, with
    sha256 and size. `get` downloads them (checked against the sha256); `gc` (admin) applies
    retention; `policy` shows or sets per-tenant quota and expiry."""
    verb, rest = args[0], args[1:]
    with Client.from_env() as c:
        if verb.isdigit() and not rest:
            return _list(c, int(verb), attempt, as_json)
        if verb == "get" and rest and rest[0].isdigit() and len(rest) <= 2:
            return _get(c, int(rest[0]), rest[1] if len(rest) > 1 else None, attempt, rank, output)
        if verb == "gc" and not rest:
            r = c.artifacts_gc()
            return print_json(r) if as_json else out.print(
                f"deleted {r['deleted']} artifacts ({r['bytes']} bytes), {r['failed']} failed", markup=False)
        if verb == "policy" and len(rest) <= 1:
            return _policy(c, rest[0] if rest else None, max_bytes, retention, as_json)
    raise ValidationError("artifacts", f"usage: {USAGE}")


def _list(c: Client, job_id: int, attempt: int | None, as_json: bool) -> None:
    rows = c.artifacts(job_id, attempt)
    if as_json:
        return print_json(rows)
    table(("ATTEMPT", "RANK", "PATH", "SIZE", "SHA256", "STORED", "EXPIRES"),
          [(a["attempt"], a["rank"], a["path"], a["size"], a["sha256"], when(a["created_at"]),
            when(a["expires_at"]) if a["expires_at"] else "-") for a in rows])


def _get(c: Client, job_id: int, path: str | None, attempt: int | None, rank: int | None,
         output: str | None) -> None:
    if path is not None:
        if output == "-":
            c.download_artifact(job_id, path, sys.stdout.buffer, attempt, rank)
            return
        dest = Path(output or PurePosixPath(path).name)
        _download(c, job_id, path, dest, attempt, rank)
        return
    rows = c.artifacts(job_id, attempt)
    if not rows:
        raise ValidationError("job", f"job {job_id} has no artifacts")
    latest = attempt or max(a["attempt"] for a in rows)
    folder = Path(output or f"artifacts-{job_id}")
    for a in rows:
        if a["attempt"] != latest:
            continue
        sub = folder / (f"rank-{a['rank']}" if any(x["rank"] for x in rows) else "") / a["path"]
        _download(c, job_id, a["path"], sub, latest, a["rank"])


def _download(c: Client, job_id: int, path: str, dest: Path, attempt: int | None, rank: int | None) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            meta = c.download_artifact(job_id, path, f, attempt, rank)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    out.print(f"{dest}  {meta['size']} bytes  sha256 {meta['sha256']}", markup=False)


def _policy(c: Client, tenant: str | None, max_bytes: str | None, retention: str | None, as_json: bool) -> None:
    if tenant and (max_bytes is not None or retention is not None):
        r = c.set_artifact_policy(tenant, max_bytes, retention)
        return print_json(r) if as_json else out.print(
            f"{r['tenant']}: max_bytes {r['max_bytes']}, retention_s {r['retention_s']}", markup=False)
    rows = [p for p in c.artifact_policies() if not tenant or p["tenant"] == tenant]
    if as_json:
        return print_json(rows)
    table(("TENANT", "USED", "QUOTA", "RETENTION"),
          [(p["tenant"], p["used_bytes"], p["max_bytes"] if p["max_bytes"] is not None else "-",
            f"{p['retention_s']:.0f}s" if p["retention_s"] else "-") for p in rows])

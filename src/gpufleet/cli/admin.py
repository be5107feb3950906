"""nodes, node drain/resume, tenants, tenant create/set, book, bookings (tokens, users: accounts.py)."""

from __future__ import annotations

import time
from typing import Optional

import typer

from gpufleet.cli.output import err, print_json, table, when
from gpufleet.client import Client

node_app = typer.Typer(help="Drain and resume nodes (admin).", no_args_is_help=True)
tenant_app = typer.Typer(help="Create tenants and set quotas (admin).", no_args_is_help=True)
booking_app = typer.Typer(help="Approve or reject bookings beyond a tenant's limits (admin).",
                          no_args_is_help=True)


def nodes(as_json: bool = typer.Option(False, "--json"),
          health: bool = typer.Option(False, "--health", help="health and failures per week instead"),
          weeks: int = typer.Option(8, "--weeks", help="with --health: weeks of history"),
          wide: bool = typer.Option(False, "--wide", "-o", help="hardware identity: SKU, driver, CUDA, VBIOS, kernel")) -> None:
    """List nodes like sinfo: GPUs total/allocated, model, state."""
    if health:
        from gpufleet.cli.health import print_nodes_health

        print_nodes_health(weeks, as_json)
        return
    with Client.from_env() as c:
        rows = c.nodes()
        notice = None if as_json else c.info().get("notice")
    if as_json:
        print_json(rows)
        return
    if notice:
        err.print(f"notice: {notice}", markup=False)
    if wide:
        from gpufleet.cli.hardware import WIDE_HEADERS, _wide_rows

        table(WIDE_HEADERS, _wide_rows(rows))
        return
    table(("NODE", "KIND", "STATE", "GPUS", "ALLOC", "MODEL", "CPUS", "MEM", "REASON"), [
        (n.name, n.kind, n.state, n.gpus_total, n.gpus_allocated, ",".join(n.gpu_models) or "-",
         n.cpus, f"{n.mem_mb // 1024}G" if n.mem_mb else "-", n.reason)
        for n in rows
    ])


@node_app.command("drain")
def drain(name: str, reason: str = typer.Option(..., "--reason", "-r", help="why (shown to users)")) -> None:
    """No new jobs land on NAME; running jobs finish."""
    with Client.from_env() as c:
        n = c.set_node(name, "drain", reason)
    print(f"{n.name} {n.state}: {n.reason}")


@node_app.command("resume")
def resume(name: str) -> None:
    """Put NAME back in service."""
    with Client.from_env() as c:
        n = c.set_node(name, "resume")
    print(f"{n.name} {n.state}")


@node_app.command("down")
def down(name: str, reason: str = typer.Option(..., "--reason", "-r")) -> None:
    """Mark NAME down: its running jobs are requeued."""
    with Client.from_env() as c:
        n = c.set_node(name, "down", reason)
    print(f"{n.name} {n.state}: {n.reason}")


def tenants(as_json: bool = typer.Option(False, "--json")) -> None:
    """Tenants with their quotas, GPUs in use and pending jobs."""
    with Client.from_env() as c:
        rows = c.tenants()
    if as_json:
        print_json(rows)
        return
    fmt = lambda d: ",".join(f"{k}={v}" for k, v in sorted(d.items())) if d else "-"  # noqa: E731
    table(("TENANT", "QUOTA", "LIMIT", "WEIGHT", "RUNNING GPUS", "PENDING", "USAGE (GPU-h)"), [
        (t.name, fmt(t.quota), fmt(t.limit) if t.limit is not None else "-", t.weight,
         fmt(t.running_gpus), t.pending_jobs, t.usage_gpu_hours)
        for t in rows
    ])


def _tenant(name: str, create: bool, quota, limit, weight, no_borrow) -> None:
    with Client.from_env() as c:
        t = c.put_tenant(name, create=create, quota=quota, limit=limit, weight=weight,
                         can_borrow=False if no_borrow else None)
    print(f"{t.name} quota={t.quota} limit={t.limit} weight={t.weight}")


_Q = typer.Option(None, "--quota", help="guaranteed GPUs per model: a100=16,h100=8")
_L = typer.Option(None, "--max", help="hard cap incl. borrowing: a100=24 ('none' clears)")
_W = typer.Option(None, "--weight", help="fair-share weight")
_NB = typer.Option(False, "--no-borrow", help="never use more than the quota")


@tenant_app.command("create")
def tenant_create(name: str, quota: Optional[str] = _Q, limit: Optional[str] = _L,
                  weight: Optional[float] = _W, no_borrow: bool = _NB) -> None:
    _tenant(name, True, quota, limit, weight, no_borrow)


@tenant_app.command("set")
def tenant_set(name: str, quota: Optional[str] = _Q, limit: Optional[str] = _L,
               weight: Optional[float] = _W, no_borrow: bool = _NB) -> None:
    _tenant(name, False, quota, limit, weight, no_borrow)


def book(
    nodes: Optional[str] = typer.Option(None, "--nodes", help="n1,n2"),
    gpus: Optional[int] = typer.Option(None, "--gpus", help="or: this many GPUs (whole nodes)"),
    gpu_model: Optional[str] = typer.Option(None, "--gpu-model"),
    start: str = typer.Option("now", "--start", help="now, +2h, 2026-11-22T14:00 (UTC)"),
    duration: str = typer.Option(..., "--duration", "-d", help="e.g. 4h"),
    tenant: Optional[str] = typer.Option(None, "--tenant", "-T"),
    exclusive: bool = typer.Option(True, "--exclusive/--shared"),
    name: str = typer.Option("", "--name"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Book whole machines for a time window; submit into it with --booking ID."""
    with Client.from_env() as c:
        b = c.book(nodes=[n for n in (nodes or "").split(",") if n], gpus=gpus, gpu_model=gpu_model,
                   start=start, duration=duration, tenant=tenant, exclusive=exclusive, name=name)
    if as_json:
        print_json(b)
    else:
        print(f"{b.id} {','.join(b.nodes)} {when(b.start)} -> {when(b.end)}")
        if b.approval == "requested":
            err.print(f"booking {b.id} is requested, not in force: {b.note} (gpufleet booking approve {b.id})",
                      markup=False)


def bookings(as_json: bool = typer.Option(False, "--json")) -> None:
    """Current and future bookings."""
    with Client.from_env() as c:
        rows = c.bookings()
    if as_json:
        print_json(rows)
        return
    now = time.time()
    table(("ID", "NAME", "TENANT", "NODES", "START", "END", "APPROVAL", "ACTIVE"), [
        (b.id, b.name, b.tenant, ",".join(b.nodes), when(b.start), when(b.end), b.approval,
         "yes" if b.approval == "approved" and b.start <= now < b.end else "no") for b in rows
    ])


@booking_app.command("approve")
def booking_approve(booking_id: int) -> None:
    """Put a requested booking in force (admin)."""
    with Client.from_env() as c:
        b = c.approve_booking(booking_id)
    print(f"{b.id} approved: {','.join(b.nodes)} {when(b.start)} -> {when(b.end)}")


@booking_app.command("reject")
def booking_reject(booking_id: int) -> None:
    """Refuse a requested booking (admin)."""
    with Client.from_env() as c:
        b = c.approve_booking(booking_id, approve=False)
    print(f"{b.id} rejected")


def unbook(booking_id: int) -> None:
    """Cancel a booking."""
    with Client.from_env() as c:
        c.unbook(booking_id)
    print(f"{booking_id} cancelled")


def audit(limit: int = typer.Option(50, "--limit"), user: Optional[str] = typer.Option(None, "--user"),
          action: Optional[str] = typer.Option(None, "--action", help="submit, cancel, node-drain, book..."),
          as_json: bool = typer.Option(False, "--json")) -> None:
    """The audit log: who submitted, cancelled, drained, booked (admin)."""
    with Client.from_env() as c:
        rows = c.get("/audit", limit=limit, **({"user_name": user} if user else {}),
                     **({"action": action} if action else {}))
    if as_json:
        print_json(rows)
        return
    table(("TIME", "USER", "ACTION", "TARGET", "DETAIL"),
          [(when(r["at"]), r["user"], r["action"], r["target"], r["detail"]) for r in rows])

"""`gpufleet health ...` and `gpufleet schedule ...` (through the client only); `gpufleet nodes
--health` prints `print_nodes_health`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer
import yaml

from gpufleet.cli.output import print_json, table, when
from gpufleet.client import Client
from gpufleet.health.history import sparkline

health_app = typer.Typer(help="Node health checks, history, remediation, fault injection.", no_args_is_help=True)
schedule_app = typer.Typer(help="Recurring automation (cron).", no_args_is_help=True)
MARK = {"ok": "ok", "warn": "WARN", "fail": "FAIL", None: "-"}


@health_app.command("run")
def run(nodes: Optional[List[str]] = typer.Argument(None, help="nodes to check (default: all)"),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="every check, not only problems"),
        as_json: bool = typer.Option(False, "--json")) -> None:
    """Run the health checks now (admin). A failing node is drained and remediated."""
    with Client.from_env() as c:
        runs = c.post("/health/run", {"nodes": nodes or None})
    if as_json:
        print_json(runs)
        return
    rows = []
    for h in runs:
        shown = [r for r in h["results"] if verbose or r["status"] != "ok"]
        if not shown:
            rows.append((h["node"], "*", "ok", passed_line(h["results"])))
        rows += [(h["node"], r["check"], MARK[r["status"]], r["message"]) for r in shown]
    table(("NODE", "CHECK", "STATUS", "MESSAGE"), rows)


def passed_line(results: list[dict]) -> str:
    """'all 9 checks pass', or '2 checks pass, 7 skipped (NVML not configured)' when some skipped."""
    skipped = [r for r in results if (r.get("facts") or {}).get("skipped")]
    ran = len(results) - len(skipped)
    if not skipped:
        return f"all {ran} checks pass"
    why = sorted({r["message"].removeprefix("skipped: ") for r in skipped})
    return f"{ran} check{'s' if ran != 1 else ''} pass, {len(skipped)} skipped ({'; '.join(why)})"


@health_app.command("show")
def show(node: str, limit: int = typer.Option(200, "--limit", help="history rows"),
         weeks: int = typer.Option(8, "--weeks"), as_json: bool = typer.Option(False, "--json")) -> None:
    """A node's latest results, history, failures per week and remediations."""
    with Client.from_env() as c:
        d = c.get(f"/health/nodes/{node}", limit=limit, weeks=weeks)
    if as_json:
        print_json(d)
        return
    latest = d["latest"]
    print(f"{d['node']}  state={d['state']}" + (f"  reason={d['reason']}" if d["reason"] else ""))
    if latest:
        print(f"latest run {when(latest['at'])}: {latest['status']}")
        table(("CHECK", "STATUS", "MESSAGE"), [(r["check"], MARK[r["status"]], r["message"]) for r in latest["results"]])
    weeks_d = d["failures_per_week"]
    print(f"failures per week: {sparkline(weeks_d.values())}  " + " ".join(f"{w}={n}" for w, n in weeks_d.items()))
    for rem in d["remediations"][:5]:
        print(f"remediation {when(rem['started_at'])}: {rem['outcome'] or rem['phase']} (round {rem['round']})"
              + (f" ticket {rem['ticket']['id']}" if rem.get("ticket") else ""))


def print_nodes_health(weeks: int = 8, as_json: bool = False) -> None:
    """What `gpufleet nodes --health` shows: failures per ISO week per node."""
    with Client.from_env() as c:
        rows = c.get("/health/nodes", weeks=weeks)
    if as_json:
        print_json(rows)
        return
    table(("NODE", "STATE", "HEALTH", "FAILURES/WEEK", "TOTAL", "REMEDIATION", "REASON"), [
        (n["node"], n["state"], MARK[n["status"]], sparkline(n["failures_per_week"].values()),
         sum(n["failures_per_week"].values()),
         f"{n['remediation']['phase']} r{n['remediation']['round']}" if n["remediation"] else "-", n["reason"])
        for n in rows
    ])


@health_app.command("nodes")
def nodes(weeks: int = typer.Option(8, "--weeks"), as_json: bool = typer.Option(False, "--json")) -> None:
    """Every node's health and flakiness (failures per ISO week)."""
    print_nodes_health(weeks, as_json)


@health_app.command("remediations")
def remediations(node: Optional[str] = typer.Option(None, "--node"), open_only: bool = typer.Option(False, "--open"),
                 as_json: bool = typer.Option(False, "--json")) -> None:
    """Remediation incidents: drain -> runbook -> burn-in -> re-check -> resume | ticket."""
    params: dict[str, Any] = {"open": open_only}
    if node:
        params["node"] = node
    with Client.from_env() as c:
        rows = c.get("/health/remediations", **params)
    if as_json:
        print_json(rows)
        return
    table(("ID", "NODE", "STARTED", "PHASE", "ROUND", "OUTCOME", "TICKET", "REASON"), [
        (r["id"], r["node"], when(r["started_at"]), r["phase"], r["round"], r["outcome"] or "-",
         r["ticket"]["id"] if r.get("ticket") else "-", r["reason"]) for r in rows
    ])


@health_app.command("inject")
def inject(node: str, fault: str = typer.Argument(..., help="xid | ecc | missing_gpu | overheat | nvlink_down | "
                                                           "persistence_off | driver | vbios | stray_process | "
                                                           "throttle | clock_drop | clear"),
           gpu: int = typer.Option(0, "--gpu"), xid: int = typer.Option(79, "--xid"),
           link: int = typer.Option(0, "--link"), temp: Optional[int] = typer.Option(None, "--temp"),
           version: Optional[str] = typer.Option(None, "--version"),
           pid: int = typer.Option(4242, "--pid", help="stray_process: its pid"),
           reason: str = typer.Option("sw_power_cap", "--reason", help="throttle: sw_power_cap, hw_slowdown, ..."),
           sm_mhz: Optional[int] = typer.Option(None, "--sm-mhz", help="clock_drop: the SM clock it falls to")) -> None:
    """Inject a fault into the fake NVML (servers started with health.nvml: fake)."""
    body: dict[str, Any] = {"node": node, "fault": fault, "gpu": gpu, "xid": xid, "link": link,
                            "pid": pid, "reason": reason}
    if sm_mhz is not None:
        body["sm_mhz"] = sm_mhz
    if temp is not None:
        body["temp_c"] = temp
    if version is not None:
        body["version"] = version
    with Client.from_env() as c:
        c.post("/health/faults", body)
    print(f"injected {fault} on {node} GPU {gpu}")


@schedule_app.command("add")
def add(name: str, cron: str = typer.Option(..., "--cron", help='e.g. "0 3 * * *"'),
        tz: str = typer.Option("UTC", "--tz", help="time zone of the cron expression"),
        job: Optional[Path] = typer.Option(None, "--job", help="a job spec YAML to submit instead of a command"),
        command: Optional[List[str]] = typer.Argument(None, help="-- COMMAND ARGS...")) -> None:
    """Run COMMAND (or submit --job) at every cron slot; never twice for one slot."""
    body: dict[str, Any] = {"name": name, "cron": cron, "tz": tz, "command": command or []}
    if job is not None:
        body["job"] = yaml.safe_load(job.read_text())
    with Client.from_env() as c:
        s = c.post("/schedules", body)
    print(f"schedule {s['name']}: next run {s['next_slot']}")


@schedule_app.command("list")
def list_schedules(as_json: bool = typer.Option(False, "--json")) -> None:
    """Schedules with their last and next run and the last outcome."""
    with Client.from_env() as c:
        rows = c.get("/schedules")
    if as_json:
        print_json(rows)
        return
    table(("NAME", "CRON", "TZ", "LAST", "OUTCOME", "NEXT", "COMMAND"), [
        (s["name"], s["cron"], s["tz"], s["last_slot"] or "-", s["last_outcome"] or "-", s["next_slot"] or "-",
         " ".join(s["command"]) if s["command"] else f"job {s['job'].get('name', '')}".strip()) for s in rows
    ])


@schedule_app.command("remove")
def remove(name: str) -> None:
    """Delete a schedule."""
    with Client.from_env() as c:
        c.delete(f"/schedules/{name}")
    print(f"removed {name}")

"""`gpufleet sim`: replay a job trace through the real scheduler on a virtual clock.

    gpufleet sim --trace T.csv --cluster C.yaml --policy las [--backfill] [--json] [--plot out.png]
    gpufleet sim compare --trace T.csv --cluster C.yaml --policies fifo,sjf,las [--plot out.png]
    gpufleet sim --trace T.csv --cluster C.yaml --failure-rate 2e-5 [--repair-time 4h]
        [--checkpoint-interval 30m] [--checkpoint-cost 30s] [--restart-cost 5m] [--spares 2] [--seed 1]
    gpufleet sim --trace T.csv --cluster C.yaml --failures MODEL.yaml   (docs/training-sim.md)

Mounted into the main CLI as `gpufleet sim`; `python -m gpufleet.cli.sim ...` works on its own.
Bad input exits 2 with one line naming the field.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Optional

import typer

from gpufleet.domain import ValidationError
from gpufleet.scheduler import POLICIES, SchedulerConfig

app = typer.Typer(
    name="sim", add_completion=False, no_args_is_help=False,
    help="Replay a job trace through the scheduler on a virtual clock (what-if studies).",
)

TRACE_HELP = "Job trace file (.csv or .csv.gz)."
FORMAT_HELP = "Trace format: auto, canonical, philly or sacct."
CLUSTER_HELP = "Inventory YAML (node groups, optional tenants with quotas and weights)."
TL_HELP = "Time-limit over-estimate model for jobs without one: buckets:1h,4h,1d,7d | factor:2 | exact."
SHARES_HELP = "Trace tenants missing from the cluster file get equal 'weight' (default) or 'quota' shares."
RESTART_HELP = "A preempted job 'resume's its progress (default) or restarts from 'scratch'."
INTERVAL_HELP = "Run cycles at most every S virtual seconds (default 0: at every event instant)."
RATE_HELP = "Inject node faults: unexpected interruptions per GPU-hour (Llama 3: ~2e-5)."
FAILURES_HELP = "Failure model YAML (inter-arrival, repair distribution, checkpoints, spares; flags win)."
SEED_HELP = "Seed of the fault times (each node has its own stream)."


class _Common:
    """The inputs both commands share, checked up front (exit 2 names the field)."""

    def __init__(self, trace: str | None, cluster: str | None, fmt: str, config: str | None,
                 time_limit_model: str | None, tenant_shares: str, restart: str, interval: float = 0.0):
        if not trace:
            raise ValidationError("trace", "required: --trace FILE")
        if not cluster:
            raise ValidationError("cluster", "required: --cluster CLUSTER.yaml")
        from gpufleet.sim.config import load_config

        self.base = load_config(config)
        self.restart = restart
        self.interval = interval
        self.failures = None
        from gpufleet.sim.runner import prepare

        self.trace, self.cluster = prepare(trace, cluster, fmt, time_limit_model, tenant_shares)

    def config(self, policy: str | None, backfill: bool | None) -> SchedulerConfig:
        from gpufleet.sim.config import make_config

        base = dict(self.base)
        base.setdefault("backfill", False)  # the sim's default: backfill only when asked for
        return make_config(base, policy=policy, backfill=backfill)


@app.callback(invoke_without_command=True)
def sim(
    ctx: typer.Context,
    trace: Optional[str] = typer.Option(None, "--trace", help=TRACE_HELP),
    fmt: str = typer.Option("auto", "--format", help=FORMAT_HELP),
    cluster: Optional[str] = typer.Option(None, "--cluster", help=CLUSTER_HELP),
    policy: Optional[str] = typer.Option(None, "--policy", help=f"Queue order: {', '.join(POLICIES)}."),
    backfill: Optional[bool] = typer.Option(None, "--backfill/--no-backfill", help="EASY backfill."),
    config: Optional[str] = typer.Option(None, "--config", help="Scheduler settings YAML."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    plot: Optional[str] = typer.Option(None, "--plot", help="Write a PNG: queue, utilization, JCT CDF."),
    time_limit_model: Optional[str] = typer.Option(None, "--time-limit-model", help=TL_HELP),
    tenant_shares: str = typer.Option("weight", "--tenant-shares", help=SHARES_HELP),
    restart: str = typer.Option("resume", "--restart", help=RESTART_HELP),
    interval: float = typer.Option(0.0, "--cycle-interval", help=INTERVAL_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar (off under --json)."),
    failure_rate: Optional[float] = typer.Option(None, "--failure-rate", help=RATE_HELP),
    failures: Optional[str] = typer.Option(None, "--failures", help=FAILURES_HELP),
    repair_time: Optional[str] = typer.Option(None, "--repair-time", help="Fixed repair time of a faulty node."),
    checkpoint_interval: Optional[str] = typer.Option(None, "--checkpoint-interval",
                                                      help="Default checkpoint interval of jobs (0: none)."),
    checkpoint_cost: Optional[str] = typer.Option(None, "--checkpoint-cost", help="Wall time of one checkpoint."),
    restart_cost: Optional[str] = typer.Option(None, "--restart-cost", help="Wall time a restart takes."),
    spares: Optional[int] = typer.Option(None, "--spares", help="Hot spare nodes per topology domain."),
    spare_domain: Optional[str] = typer.Option(None, "--spare-domain", help="Node label of a domain (rack)."),
    seed: Optional[int] = typer.Option(None, "--seed", help=SEED_HELP),
) -> None:
    """Replay one trace under one scheduler configuration."""
    if ctx.invoked_subcommand is not None:
        return
    with _errors():
        model = failure_model(failure_rate, failures, repair_time=repair_time,
                              checkpoint_interval=checkpoint_interval, checkpoint_cost=checkpoint_cost,
                              restart_cost=restart_cost, spares=spares, spare_domain=spare_domain, seed=seed)
        common = _Common(trace, cluster, fmt, config, time_limit_model, tenant_shares, restart, interval)
        common.failures = model
        cfg = common.config(policy, backfill)
        result = _replay(common, cfg, show=progress and not json_out)
        if plot:
            from gpufleet.sim.plots import plot_runs

            plot_runs([(result.label, result.recorder)], plot, title=_title(common, result.label))
        if json_out:
            _print_json(result.summary)
        else:
            _print_summary(result.summary)


@app.command("compare")
def compare(
    trace: Optional[str] = typer.Option(None, "--trace", help=TRACE_HELP),
    fmt: str = typer.Option("auto", "--format", help=FORMAT_HELP),
    cluster: Optional[str] = typer.Option(None, "--cluster", help=CLUSTER_HELP),
    policies: str = typer.Option(",".join(POLICIES), "--policies",
                                 help="Comma-separated; an entry may read sjf+backfill."),
    backfill: Optional[bool] = typer.Option(None, "--backfill/--no-backfill", help="Backfill for every entry."),
    config: Optional[str] = typer.Option(None, "--config", help="Scheduler settings YAML."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
    plot: Optional[str] = typer.Option(None, "--plot", help="Write one PNG comparing the runs."),
    time_limit_model: Optional[str] = typer.Option(None, "--time-limit-model", help=TL_HELP),
    tenant_shares: str = typer.Option("weight", "--tenant-shares", help=SHARES_HELP),
    restart: str = typer.Option("resume", "--restart", help=RESTART_HELP),
    interval: float = typer.Option(0.0, "--cycle-interval", help=INTERVAL_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar (off under --json)."),
) -> None:
    """Replay one trace under several policies; print one table (the first entry is the baseline)."""
    with _errors():
        entries = parse_policies(policies)
        common = _Common(trace, cluster, fmt, config, time_limit_model, tenant_shares, restart, interval)
        configs = [common.config(p, True if bf or backfill else backfill) for p, bf in entries]
        results = [_replay(common, c, show=progress and not json_out) for c in configs]
        table = comparison(results)
        if plot:
            from gpufleet.sim.plots import plot_runs

            plot_runs([(r.label, r.recorder) for r in results], plot, title=_title(common, "policies"))
        if json_out:
            _print_json(table)
        else:
            _print_comparison(table)


def failure_model(rate: float | None, path: str | None, **flags: Any):
    """The failure model from --failures and the flags, or None when neither asks for faults."""
    if rate is None and path is None:
        given = [k for k, v in flags.items() if v is not None]
        if given:
            raise ValidationError("failure_rate", f"--{given[0].replace('_', '-')} needs --failure-rate R "
                                                  "or --failures MODEL.yaml")
        return None
    from gpufleet.sim.failures import load_failure_model, make_failure_model

    data = load_failure_model(path) if path else {}
    return make_failure_model(data, rate=rate, **flags)


def parse_policies(text: str) -> list[tuple[str, bool]]:
    out = []
    for raw in [p.strip().lower() for p in text.split(",") if p.strip()]:
        name, plus, extra = raw.partition("+")
        if name not in POLICIES or (plus and extra != "backfill"):
            raise ValidationError("policies", f"unknown entry {raw!r}; use {', '.join(POLICIES)}[+backfill]")
        out.append((name, bool(plus)))
    if not out:
        raise ValidationError("policies", "give at least one policy")
    return out


def comparison(results) -> dict[str, Any]:
    """Rows in order; ratios against the first row (the baseline, usually fifo)."""
    base = results[0].summary
    rows = []
    for r in results:
        s = {k: v for k, v in r.summary.items() if k not in ("config",)}
        s["label"] = r.label
        s["jct_ratio_vs_baseline"] = base["avg_jct_s"] / s["avg_jct_s"] if s["avg_jct_s"] else 0.0
        rows.append(s)
    best = min(rows, key=lambda s: s["avg_jct_s"])
    return {"baseline": rows[0]["label"], "best": best["label"],
            "best_jct_ratio": best["jct_ratio_vs_baseline"], "runs": rows}


def _replay(common: _Common, cfg: SchedulerConfig, show: bool):
    from gpufleet.sim.runner import policy_label, replay

    label = policy_label(cfg)
    if not show:
        return replay(common.trace, common.cluster, cfg, common.restart, label=label,
                      cycle_interval_s=common.interval, failures=common.failures)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    columns = (TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(label, total=len(common.trace.jobs))
        return replay(common.trace, common.cluster, cfg, common.restart, label=label,
                      cycle_interval_s=common.interval, failures=common.failures,
                      progress=lambda done, total: bar.update(task, completed=done, total=total))


def _title(common: _Common, what: str) -> str:
    return f"{what}: {len(common.trace.jobs)} jobs ({common.trace.source}) on {common.cluster.total_gpus} GPUs"


class _errors:
    """Bad input -> one line on stderr naming the field, exit 2."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if isinstance(exc, ValidationError):
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
        return False


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=None, sort_keys=False, default=str) + "\n")


def _hours(s: float) -> str:
    return f"{s / 3600:.2f} h"


def _print_summary(s: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{s['policy']}{' + backfill' if s['backfill'] else ''}: {s['jobs']} jobs "
                    f"on {s['cluster_gpus']} GPUs (offered load {s['offered_load']:.2f})")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for key in ("avg_jct_s", "median_jct_s", "p99_jct_s", "avg_queue_s", "p99_queue_s", "max_queue_s",
                "makespan_s"):
        t.add_row(key, _hours(s[key]))
    for key in ("gpu_utilization", "avg_fragmentation"):
        t.add_row(key, f"{s[key]:.3f}")
    for key in ("preemptions", "timeouts", "unfinished", "rejected", "cycles"):
        t.add_row(key, str(s[key]))
    if s.get("failures"):
        for key in ("goodput", "training_time_ratio"):
            t.add_row(key, f"{s[key]:.4f}")
        for key in ("lost_gpu_hours", "restart_gpu_hours", "checkpoint_gpu_hours"):
            t.add_row(key, f"{s[key]:,.1f}")
        for key in ("node_faults", "restarts", "spare_replacements"):
            t.add_row(key, str(s[key]))
        for key in ("time_to_restart_p50_s", "time_to_restart_p99_s"):
            t.add_row(key, "-" if s[key] is None else f"{s[key]:.0f} s")
    t.add_row("wall_s", f"{s['wall_s']:.1f}")
    per = Table(title="per tenant")
    for col in ("tenant", "jobs", "avg JCT", "max queue", "avg slowdown", "GPU-time share"):
        per.add_column(col, justify="right" if col != "tenant" else "left")
    for name, v in s["per_tenant"].items():
        per.add_row(name, str(v["jobs"]), _hours(v["avg_jct_s"]), _hours(v["max_queue_s"]),
                    f"{v['avg_slowdown']:.2f}", f"{v['gpu_time_share']:.3f}")
    console = Console()
    console.print(t)
    console.print(per)


def _print_comparison(table: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"baseline {table['baseline']}; best {table['best']} "
                    f"({table['best_jct_ratio']:.2f}x lower avg JCT)")
    for col in ("policy", "avg JCT", "median JCT", "p99 JCT", "avg queue", "max queue", "util",
                "preempt", "vs baseline", "wall s"):
        t.add_column(col, justify="left" if col == "policy" else "right")
    for s in table["runs"]:
        t.add_row(s["label"], _hours(s["avg_jct_s"]), _hours(s["median_jct_s"]), _hours(s["p99_jct_s"]),
                  _hours(s["avg_queue_s"]), _hours(s["max_queue_s"]), f"{s['gpu_utilization']:.3f}",
                  str(s["preemptions"]), f"{s['jct_ratio_vs_baseline']:.2f}x", f"{s['wall_s']:.1f}")
    Console().print(t)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry: click usage errors become one line and exit 2 as well."""
    try:  # typer >= 0.16 vendors click
        from typer._click.exceptions import UsageError
    except ImportError:  # pragma: no cover
        from click.exceptions import UsageError
    try:
        rc = app(args=argv, prog_name="gpufleet sim", standalone_mode=False)
    except typer.Exit as e:
        return e.exit_code
    except UsageError as e:
        typer.echo(f"error: {e.format_message()}", err=True)
        return 2
    except typer.Abort:
        return 130
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())

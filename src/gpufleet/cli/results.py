"""gpufleet results import|list|show|trend|compare|regressions|outliers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from gpufleet.cli.output import out, print_json, table, when
from gpufleet.client import Client
from gpufleet.domain import ValidationError

results_app = typer.Typer(help="Benchmark results: series, trends, regressions, slow nodes.", no_args_is_help=True)
_JSON = typer.Option(False, "--json")
_TENANT = typer.Option(None, "--tenant", "-T", help="one tenant (non-admins: their own only)")


@results_app.command("import")
def import_(file: str = typer.Argument(..., help="JSON Lines file ('-': stdin)")) -> None:
    """Load measurements (one JSON object per line, with provenance: node, gpu_model, sku, driver,
    vbios, gpu_uuid, commit, timestamp, job). All lines or none: a bad line exits 2 naming it."""
    if file == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            data = Path(file).read_bytes()
        except OSError as e:
            raise ValidationError("file", f"cannot read {file}: {e.strerror}") from None
    with Client.from_env() as c:
        n = c.results_import(data)
    out.print(f"imported {n} results", markup=False)


@results_app.command("list")
def list_(benchmark: Optional[str] = typer.Option(None, "--benchmark", "-b"), tenant: Optional[str] = _TENANT,
          as_json: bool = _JSON) -> None:
    """The series (benchmark/metric/params/SKU/driver) and how many results each has."""
    with Client.from_env() as c:
        rows = c.results(benchmark=benchmark, tenant=tenant)["series"]
    if as_json:
        return print_json(rows)
    table(("SERIES", "RESULTS", "FIRST", "LAST"),
          [(r["series"], r["results"], when(r["first_at"]), when(r["last_at"])) for r in rows])


@results_app.command("show")
def show(series: Optional[str] = typer.Argument(None, help="a series key (see `results list`)"),
         job: Optional[int] = typer.Option(None, "--job", "-j", help="the results of one job instead"),
         tenant: Optional[str] = _TENANT, limit: int = typer.Option(1000, "--limit"), as_json: bool = _JSON) -> None:
    """Results with their provenance (node, SKU, driver, VBIOS, commit, validity); a job's JUnit cases."""
    with Client.from_env() as c:
        body = c.results("show", series=series, job=job, tenant=tenant, limit=limit)
    if as_json:
        return print_json(body)
    table(("WHEN", "BENCHMARK", "METRIC", "VALUE", "UNIT", "JOB", "NODE", "SKU", "DRIVER", "VBIOS", "COMMIT", "VALID"),
          [(when(r["at"]), r["benchmark"], r["metric"], f"{r['value']:g}", r["unit"], r["job"] or "-", r["node"],
            r["sku"], r["driver"], r["vbios"], r["commit"] or "-", "yes" if r["perf_valid"] else "no")
           for r in body["results"]])
    if body["test_cases"]:
        table(("SUITE", "TEST", "OUTCOME", "TIME_S"),
              [(t["suite"], t["name"], t["outcome"], f"{t['time_s']:.2f}") for t in body["test_cases"]])


@results_app.command("trend")
def trend(series: str, plot: Optional[str] = typer.Option(None, "--plot", help="write a PNG here"),
          tenant: Optional[str] = _TENANT, as_json: bool = _JSON) -> None:
    """A series over time, with its change points."""
    with Client.from_env() as c:
        body = c.results("trend", series=series, tenant=tenant)
    if plot:
        _plot(body, plot)
    if as_json:
        return print_json(body)
    changes = {g["first"]["at"]: g for g in body["changes"]}
    table(("WHEN", "VALUE", "COMMIT", "JOB", "NODE", "VALID", "CHANGE"),
          [(when(r["at"]), f"{r['value']:g}", r["commit"] or "-", r["job"] or "-", r["node"],
            "yes" if r["perf_valid"] else "no", _change(changes.get(r["at"]))) for r in body["results"]])


def _change(g: dict | None) -> str:
    return "" if g is None else f"{g['direction']} {g['change_pct']:+.1f}%"


def _plot(body: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from datetime import datetime, timezone

    rs = [r for r in body["results"] if r["perf_valid"]]
    xs = [datetime.fromtimestamp(r["at"], timezone.utc) for r in rs]
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(xs, [r["value"] for r in rs], ".-", lw=0.8)
    for g in body["changes"]:
        ax.axvline(datetime.fromtimestamp(g["first"]["at"], timezone.utc),
                   color="red" if g["direction"] == "regression" else "green", ls="--")
    ax.set_title(body["series"], fontsize=9)
    ax.set_ylabel(rs[-1]["unit"] if rs and rs[-1]["unit"] else "value")
    fig.autofmt_xdate()
    try:
        fig.savefig(path, dpi=100, bbox_inches="tight")
    except OSError as e:
        raise ValidationError("plot", f"cannot write {path}: {e.strerror}") from None
    finally:
        plt.close(fig)


@results_app.command("compare")
def compare(a: str, b: str, tenant: Optional[str] = _TENANT, as_json: bool = _JSON) -> None:
    """Two series, or two jobs (job:12 job:15): medians and the change per benchmark/metric/params."""
    with Client.from_env() as c:
        body = c.results("compare", a=a, b=b, tenant=tenant)
    if as_json:
        return print_json(body)
    table(("KEY", "A", "B", "CHANGE", "BETTER"),
          [(r["key"], f"{r['a_median']:g}", f"{r['b_median']:g}", f"{r['change_pct']:+.2f}%",
            {True: "yes", False: "no", None: "-"}[r["better"]]) for r in body["rows"]])


@results_app.command("regressions")
def regressions(since: Optional[str] = typer.Option(None, "--since", help="-7d, 2026-11-01, epoch"),
                key: Optional[str] = typer.Option(None, "--key", help="series key fields, e.g. benchmark,metric,params,sku"),
                only_open: bool = typer.Option(False, "--open", help="only changes the series still sits at"),
                tenant: Optional[str] = _TENANT, as_json: bool = _JSON) -> None:
    """Change points of every series: the first result after each, direction, magnitude, confidence,
    and whether every node moved (software) or some (node)."""
    with Client.from_env() as c:
        rows = c.results("regressions", since=since, key=key, open=only_open, tenant=tenant)["regressions"]
    if as_json:
        return print_json(rows)
    table(("SERIES", "DIRECTION", "CHANGE", "CONF", "FIRST", "COMMIT", "JOB", "METHOD", "CAUSE"),
          [(g["series"], g["direction"], f"{g['change_pct']:+.1f}%", f"{g['confidence']:.3f}",
            when(g["first"]["at"]), g["first"]["commit"] or "-", g["first"]["job"] or "-", g["method"],
            g["verdict"]) for g in rows])


@results_app.command("outliers")
def outliers(benchmark: Optional[str] = typer.Option(None, "--benchmark", "-b"), tenant: Optional[str] = _TENANT,
             since: Optional[str] = typer.Option(None, "--since", help="only results since: -30d, 2026-11-01, epoch"),
             as_json: bool = _JSON) -> None:
    """Nodes whose results sit outside the fleet's (same benchmark and SKU): slow, fast or noisy."""
    with Client.from_env() as c:
        rows = c.results("outliers", benchmark=benchmark, tenant=tenant, since=since)["outliers"]
    if as_json:
        return print_json(rows)
    table(("NODE", "KIND", "SKU", "BENCHMARK", "METRIC", "DEVIATION", "Z", "NODE_CV", "FLEET_CV"),
          [(o["node"], o["kind"], o["sku"], o["benchmark"], o["metric"], f"{o['deviation_pct']:+.1f}%",
            f"{o['z']:.1f}", f"{o['node_cv_pct']:.1f}%", f"{o['fleet_cv_pct']:.1f}%") for o in rows])

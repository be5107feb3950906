"""Results for people (API and CLI): import, list, show, trend, compare, regressions, outliers.
Tenant isolation as for jobs: a non-admin sees the results of their own tenant only."""

from __future__ import annotations

import statistics
import time
from typing import Any, Iterable, Sequence

from gpufleet.domain import User, ValidationError, parse_duration
from gpufleet.domain.units import parse_time
from gpufleet.results import parse_jsonl, series_key
from gpufleet.results.analysis import Outlier, Regression, group_series, outliers, regressions
from gpufleet.results.model import DEFAULT_SERIES_KEY, Result, check_series_key
from gpufleet.services.context import Ctx
from gpufleet.services.usage import visible_tenant
from gpufleet.store.results import (
    add_results, latest_values, query_cases, query_for_detection, query_results, series_summary, tenants_of_jobs,
)

MAX_IMPORT_LINES = 2_000_000


def import_lines(ctx: Ctx, user: User, lines: Iterable[str | bytes]) -> int:
    """All lines or none: the first bad line raises ValidationError('line N: field', why)."""
    results = parse_jsonl(lines, ctx.clock(), provenance=True)
    if len(results) > MAX_IMPORT_LINES:
        raise ValidationError("file", f"at most {MAX_IMPORT_LINES} lines per import")
    _check_jobs(ctx, user, results)
    for r in results:
        r.tenant, r.user = user.tenant, user.name
        r.series = series_key(r)
    add_results(ctx.store.engine, results)
    ctx.audit(user, "results.import", "results", lines=len(results))
    return len(results)


def _check_jobs(ctx: Ctx, user: User, results: Sequence[Result]) -> None:
    """A line naming a job of another tenant is refused (history of unknown jobs is fine)."""
    owners = tenants_of_jobs(ctx.store.engine, (r.job_id for r in results if r.job_id is not None))
    for n, r in enumerate(results, 1):
        owner = owners.get(r.job_id) if r.job_id is not None else None
        if owner is not None and owner != user.tenant and not user.admin:
            raise ValidationError(f"line {n}: job", f"job {r.job_id} is not a job of tenant {user.tenant}")


def key_fields(key: str | Sequence[str] | None) -> tuple[str, ...]:
    if not key:
        return DEFAULT_SERIES_KEY
    fields = [f.strip() for f in (key.split(",") if isinstance(key, str) else key) if f.strip()]
    try:
        return check_series_key(fields)
    except ValueError as e:
        raise ValidationError("key", str(e)) from None


def list_series(ctx: Ctx, user: User, benchmark: str | None = None, tenant: str | None = None) -> list[dict]:
    return series_summary(ctx.store.engine, visible_tenant(ctx, user, tenant), benchmark)


def show(ctx: Ctx, user: User, series: str | None = None, job_id: int | None = None,
         tenant: str | None = None, limit: int = 1000) -> tuple[list[Result], list]:
    """The results of a series or of a job (with its JUnit test cases), newest last."""
    if not series and job_id is None:
        raise ValidationError("series", "name a series or a job")
    t = visible_tenant(ctx, user, tenant)
    rs = query_results(ctx.store.engine, t, series=series or None, job_id=job_id)
    cases = query_cases(ctx.store.engine, t, job_id) if job_id is not None else []
    return rs[-limit:], cases


def trend(ctx: Ctx, user: User, series: str, tenant: str | None = None) -> tuple[list[Result], list[Regression]]:
    rs = query_results(ctx.store.engine, visible_tenant(ctx, user, tenant), series=series)
    return rs, regressions(rs)


def compare(ctx: Ctx, user: User, a: str, b: str, tenant: str | None = None) -> list[dict]:
    """Two series, or two jobs (`job:N`): per benchmark x metric x params, medians and change."""
    t = visible_tenant(ctx, user, tenant)
    left, right = _side(ctx, t, a, "a"), _side(ctx, t, b, "b")
    out = []
    for k in sorted(set(left) & set(right)):
        la, rb = [r.value for r in left[k]], [r.value for r in right[k]]
        ma, mb = statistics.median(la), statistics.median(rb)
        hib = right[k][-1].higher_is_better
        pct = (mb - ma) / abs(ma) * 100 if ma else 0.0
        out.append({"key": k, "a_median": ma, "b_median": mb, "a_results": len(la), "b_results": len(rb),
                    "change_pct": pct, "better": (pct > 0) == hib if pct else None,
                    "unit": right[k][-1].unit})
    return out


def _side(ctx: Ctx, tenant: str | None, ref: str, field: str) -> dict[str, list[Result]]:
    if ref.startswith("job:"):
        try:
            job_id = int(ref[4:])
        except ValueError:
            raise ValidationError(field, f"not a job reference: {ref!r} (use job:<id>)") from None
        rs = query_results(ctx.store.engine, tenant, job_id=job_id)
        fields = ("benchmark", "metric", "params")
    else:
        rs = query_results(ctx.store.engine, tenant, series=ref)
        fields = ("benchmark", "metric", "params")
    if not rs:
        raise ValidationError(field, f"no results for {ref!r}")
    return group_series(rs, fields)


def find_regressions(ctx: Ctx, user: User, since: str | float | None = None, key: str | None = None,
                     tenant: str | None = None, only_open: bool = False) -> list[Regression]:
    t0 = _since(ctx, since) if since not in (None, "") else None
    fields = key_fields(key)
    t = visible_tenant(ctx, user, tenant)
    # the default key is stored with each result: the light query (no JSON columns) suffices
    rs = query_for_detection(ctx.store.engine, t) if fields == DEFAULT_SERIES_KEY else query_results(ctx.store.engine, t)
    found = regressions(rs, t0, fields)
    return [r for r in found if r.open] if only_open else found


def watch_metrics(ctx: Ctx, metrics: Any) -> None:
    """Prometheus series of results on `metrics` (gpufleet.observability.Metrics): the latest value
    per series, the open regressions of every tenant (recomputed every 10 minutes at most)."""
    from gpufleet.observability.results_metrics import ResultsCollector

    system = User("metrics", "ops", admin=True)
    metrics.registry.register(ResultsCollector(
        latest=lambda: latest_values(ctx.store.engine),
        regressions=lambda: find_regressions(ctx, system, only_open=True),
        clock=time.monotonic))


def _since(ctx: Ctx, value: str | float) -> float:
    """-7d (before now), an ISO date or time, epoch seconds."""
    now = ctx.clock()
    if isinstance(value, str) and value.strip().startswith("-"):
        return now - (parse_duration(value.strip()[1:], "since") or 0)
    return parse_time(value, now, "since")


def find_outliers(ctx: Ctx, user: User, tenant: str | None = None, benchmark: str | None = None,
                  since: str | float | None = None) -> list[Outlier]:
    """Slow or noisy nodes among the results since `since` (-30d, a date, epoch; None: all)."""
    t0 = _since(ctx, since) if since not in (None, "") else None
    return outliers(query_results(ctx.store.engine, visible_tenant(ctx, user, tenant), benchmark=benchmark, since=t0))


def result_out(r: Result) -> dict:
    return {"id": r.id, "series": r.series, "benchmark": r.benchmark, "metric": r.metric, "value": r.value,
            "unit": r.unit, "higher_is_better": r.higher_is_better, "params": r.params, "at": r.at,
            "job": r.job_id, "attempt": r.attempt, "tenant": r.tenant, "user": r.user, "node": r.node,
            "gpu_model": r.gpu_model, "sku": r.sku, "driver": r.driver, "vbios": r.vbios,
            "gpu_uuids": r.gpu_uuids, "commit": r.commit, "labels": r.labels,
            "labels_note": None if r.labels is not None else "labels not available (none recorded)",
            "clocks": r.clocks, "perf_valid": r.valid, "invalid_reason": r.invalid_reason,
            "conditions": r.conditions, "source": r.source}


def regression_out(g: Regression) -> dict:
    return {"series": g.series, "benchmark": g.benchmark, "metric": g.metric, "direction": g.direction,
            "change_pct": g.change_pct, "magnitude_pct": abs(g.change_pct), "confidence": g.confidence,
            "method": g.method, "open": g.open, "mean_before": g.mean_before, "mean_after": g.mean_after,
            "first": {"at": g.first.at, "commit": g.first.commit, "job": g.first.job_id,
                      "node": g.first.node, "value": g.first.value},
            "cause": g.cause.cause, "nodes_moved": list(g.cause.moved), "nodes_steady": list(g.cause.steady),
            "verdict": verdict(g)}


def verdict(g: Regression) -> str:
    """Software change or node fault, in words: a change seen on every node of the SKU is software."""
    sku = g.first.sku or g.first.gpu_model or "the SKU"
    if g.cause.cause == "software":
        return f"software change: every node of {sku} moved ({len(g.cause.moved)} nodes)"
    if g.cause.cause == "node":
        return f"node fault: {', '.join(g.cause.moved) or '?'} moved, {len(g.cause.steady)} node(s) of {sku} did not"
    return "unknown: too few nodes on both sides of the change to say"


def outlier_out(o: Outlier) -> dict:
    s = o.stats
    return {"node": s.node, "kind": s.kind, "gpu_model": o.gpu_model, "sku": o.sku, "benchmark": o.benchmark,
            "metric": o.metric, "params": o.params, "deviation_pct": s.deviation_pct, "z": s.z,
            "node_median": s.node_median, "fleet_median": s.fleet_median, "node_cv_pct": s.node_cv_pct,
            "fleet_cv_pct": s.fleet_cv_pct, "results": s.results}

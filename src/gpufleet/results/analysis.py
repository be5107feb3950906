"""Regressions and outliers over stored results (lists of Result; pure)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

from gpufleet.results.changes import Change, change_points, guard
from gpufleet.results.model import DEFAULT_SERIES_KEY, Result, series_key
from gpufleet.results.outliers import Cause, NodeOutlier, classify_change, node_outliers

SIDE = 20  # results each side of a change used to say which nodes moved


@dataclass(frozen=True, slots=True)
class Regression:
    series: str
    benchmark: str
    metric: str
    direction: str  # regression | improvement
    change_pct: float
    confidence: float
    first: Result  # the first result after the change
    mean_before: float
    mean_after: float
    cause: Cause
    method: str  # e-divisive | guard (a single new result, not yet confirmed)
    open: bool  # the series still sits at this level (no later change)


def group_series(results: Iterable[Result], fields: Sequence[str] = DEFAULT_SERIES_KEY) -> dict[str, list[Result]]:
    """Valid results by series, oldest first. Invalid runs never enter detection."""
    out: dict[str, list[Result]] = defaultdict(list)
    default = tuple(fields) == DEFAULT_SERIES_KEY
    for r in results:
        if r.valid:
            out[(r.series if default and r.series else series_key(r, fields))].append(r)
    for rs in out.values():
        rs.sort(key=lambda r: (r.at, r.id or 0))
    return dict(out)


def series_regressions(key: str, rs: Sequence[Result]) -> list[Regression]:
    hib = rs[-1].higher_is_better
    values = [r.value for r in rs]
    changes = change_points(values, hib)
    out = [_regression(key, rs, c, i == len(changes) - 1) for i, c in enumerate(changes)]
    last_cp = changes[-1].index if changes else 0
    if len(rs) - last_cp > 6:  # the newest result against the window before it
        hit = guard(values[:-1], values[-1], hib)
        if hit is not None:
            c = Change(len(rs) - 1, hit.change_pct, 0.0, 0.0, values[-1], hit.regression)
            reg = _regression(key, rs, c, True, method="guard")
            out.append(reg)
    return out


def _regression(key: str, rs: Sequence[Result], c: Change, last: bool, method: str = "e-divisive") -> Regression:
    before, after = _by_node(rs[max(0, c.index - SIDE):c.index]), _by_node(rs[c.index:c.index + SIDE])
    first = rs[c.index]
    mean_before = c.mean_before or (sum(r.value for r in rs[:c.index][-30:]) / max(1, len(rs[:c.index][-30:])))
    return Regression(series=key, benchmark=first.benchmark, metric=first.metric,
                      direction="regression" if c.regression else "improvement", change_pct=c.change_pct,
                      confidence=c.confidence if method != "guard" else 0.5, first=first,
                      mean_before=mean_before, mean_after=c.mean_after,
                      cause=classify_change(before, after, c.change_pct), method=method, open=last)


def _by_node(rs: Iterable[Result]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    for r in rs:
        out[r.node or "-"].append(r.value)
    return dict(out)


def regressions(results: Iterable[Result], since: float | None = None,
                fields: Sequence[str] = DEFAULT_SERIES_KEY) -> list[Regression]:
    """Every change (E-Divisive) and guard hit, of every series; `since`: whose first result after
    the change is at or after it. Newest first."""
    out = []
    for key, rs in group_series(results, fields).items():
        out.extend(series_regressions(key, rs))
    if since is not None:
        out = [r for r in out if r.first.at >= since]
    out.sort(key=lambda r: r.first.at, reverse=True)
    return out


@dataclass(frozen=True, slots=True)
class Outlier:
    benchmark: str
    metric: str
    params: str
    sku: str
    gpu_model: str
    stats: NodeOutlier


def outliers(results: Iterable[Result]) -> list[Outlier]:
    """Nodes outside the fleet's distribution, per benchmark x metric x params x SKU (valid runs)."""
    groups: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    facts: dict[tuple, tuple[bool, str]] = {}
    for r in sorted((r for r in results if r.valid), key=lambda r: r.at):
        k = (r.benchmark, r.metric, series_key(r, ("params",)), r.sku or r.gpu_model)
        groups[k][r.node or "-"].append(r.value)
        facts[k] = (r.higher_is_better, r.gpu_model)
    out = []
    for k, by_node in groups.items():
        hib, model = facts[k]
        for o in node_outliers(by_node, hib):
            out.append(Outlier(k[0], k[1], k[2], k[3], model, o))
    out.sort(key=lambda o: -abs(o.stats.z))
    return out

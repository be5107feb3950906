"""Regressions and outliers over stored results (lists of Result; pure)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

from gpufleet.results.changes import Change, change_points, change_regions, despiked, guard
from gpufleet.results.model import DEFAULT_SERIES_KEY, Result, series_key
from gpufleet.results.outliers import (
    RECENT, Cause, NodeOutlier, classify_change, node_outliers, relative_to_fleet, robust_cv,
)

SIDE = 20  # results each side of a change used to say which nodes moved
PRETEST = True  # run E-Divisive only where the cheap pre-test sees a possible change (False: everywhere)
MIN_OFFSET_RUNS = 5  # results a node needs before its offset is taken out of a series
GUARD_MIN_OWN = 10  # results of the newest result's own node the guard compares it with
STATS: dict[str, int] = {}  # series seen / sent to E-Divisive (the bench reads it)


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
    STATS["series"] = STATS.get("series", 0) + 1
    changes: list[Change] = []
    level = without_node_offsets(rs)
    clean = despiked(level)
    regions = change_regions(clean, already_despiked=True) if PRETEST else [(0, len(level))]
    if regions:
        STATS["e_divisive"] = STATS.get("e_divisive", 0) + 1
        STATS["e_divisive_points"] = STATS.get("e_divisive_points", 0) + sum(hi - lo for lo, hi in regions)
        changes = change_points(clean, hib, regions=regions, already_despiked=True)
    bounds = [0] + [c.index for c in changes] + [len(rs)]
    out = [_regression(key, rs, c, i == len(changes) - 1, (bounds[i], bounds[i + 2]))
           for i, c in enumerate(changes)]
    last_cp = changes[-1].index if changes else 0
    if len(rs) - last_cp > 6:  # the newest result against the window before it
        node = rs[-1].node
        mine = [r.value for r in rs[last_cp:-1] if r.node == node]
        # against the same node's recent results when it has enough: a slow node's newest run is
        # the outlier report's business, not a regression
        hit = guard(mine if len(mine) >= GUARD_MIN_OWN else values[last_cp:-1], values[-1], hib)
        if hit is not None:
            c = Change(len(rs) - 1, hit.change_pct, 0.0, 0.0, values[-1], hit.regression)
            reg = _regression(key, rs, c, True, (last_cp, len(rs)), method="guard")
            out.append(reg)
    return out


def _regression(key: str, rs: Sequence[Result], c: Change, last: bool, segment: tuple[int, int],
                method: str = "e-divisive") -> Regression:
    """`segment`: the change's neighbours (the previous and the next change, or the ends)."""
    lo, hi = max(segment[0], c.index - SIDE * 4), min(segment[1], c.index + SIDE * 4)
    before, after = _by_node(rs[lo:c.index], last=True), _by_node(rs[c.index:hi], last=False)
    first = rs[c.index]
    mean_before = c.mean_before or (sum(r.value for r in rs[:c.index][-30:]) / max(1, len(rs[:c.index][-30:])))
    return Regression(series=key, benchmark=first.benchmark, metric=first.metric,
                      direction="regression" if c.regression else "improvement", change_pct=c.change_pct,
                      confidence=c.confidence if method != "guard" else 0.5, first=first,
                      mean_before=mean_before, mean_after=c.mean_after,
                      cause=classify_change(before, after, c.change_pct, robust_cv([r.value for r in rs[lo:c.index]])),
                      method=method, open=last)


def without_node_offsets(rs: Sequence[Result]) -> list[float]:
    """The series with each node's steady offset taken out (a slow node's runs are the outlier
    report's business; mixed into the series they are noise, and a few of them in a row look like
    a change): value / (the node's median ratio to the fleet's level around each of its runs)."""
    ratios = relative_to_fleet([r.value for r in rs])
    by_node: dict[str, list[float]] = defaultdict(list)
    for r, q in zip(rs, ratios):
        if q == q:
            by_node[r.node].append(q)
    offset = {n: statistics.median(qs) if len(qs) >= MIN_OFFSET_RUNS else 1.0 for n, qs in by_node.items()}
    return [r.value / (offset.get(r.node) or 1.0) for r in rs]


def _by_node(rs: Iterable[Result], last: bool) -> dict[str, list[float]]:
    """Per node its results, at most SIDE of them: the last ones before a change, the first after."""
    out: dict[str, list[float]] = defaultdict(list)
    for r in rs:
        out[r.node or "-"].append(r.value)
    return {n: (v[-SIDE:] if last else v[:SIDE]) for n, v in out.items()}


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
    """Nodes outside the fleet's distribution, per benchmark x metric x params x SKU x driver (valid
    runs; another driver is other software, with its own level).
    Each result is first taken relative to the whole fleet's level at its time (a software change
    or driver upgrade moves every node and is no node's fault), then the nodes' medians compared."""
    groups: dict[tuple, list[Result]] = defaultdict(list)
    for r in results:
        if r.valid:
            groups[(r.benchmark, r.metric, series_key(r, ("params",)), r.sku or r.gpu_model, r.driver)].append(r)
    out = []
    for k, rs in groups.items():
        rs.sort(key=lambda r: (r.at, r.id or 0))
        by_node: dict[str, list[float]] = defaultdict(list)
        for r, rel in zip(rs, relative_to_fleet([r.value for r in rs])):
            if rel == rel:  # not NaN (a level of 0)
                by_node[r.node or "-"].append(rel)
        level = statistics.median(r.value for r in rs[-2 * RECENT:])
        for o in node_outliers(by_node, rs[-1].higher_is_better, scale=level):
            out.append(Outlier(k[0], k[1], k[2], k[3], rs[-1].gpu_model, o))
    out.sort(key=lambda o: -abs(o.stats.z))
    return out


@dataclass(frozen=True, slots=True)
class Quarantine:
    node: str
    reason: str
    outliers: tuple[Outlier, ...]


def quarantine(found: Iterable[Outlier]) -> list[Quarantine]:
    """The nodes the health loop drains: slow or noisy (a fast node is not drained), with a reason
    naming the worst benchmark."""
    by_node: dict[str, list[Outlier]] = defaultdict(list)
    for o in found:
        if o.stats.kind in ("slow", "noisy"):
            by_node[o.stats.node].append(o)
    out = []
    for node, os_ in sorted(by_node.items()):
        worst = max(os_, key=lambda o: abs(o.stats.z))
        s = worst.stats
        what = (f"{s.deviation_pct:+.1f}% vs the fleet median" if s.kind == "slow"
                else f"CV {s.node_cv_pct:.1f}% vs the fleet's {s.fleet_cv_pct:.1f}%")
        reason = (f"{s.kind} node: {worst.benchmark}/{worst.metric} on {worst.sku or worst.gpu_model} {what}"
                  f" ({len(os_)} benchmark(s))")
        out.append(Quarantine(node, reason[:240], tuple(os_)))
    return out

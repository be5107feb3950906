"""Slow and noisy nodes: for one benchmark x SKU, where each node sits in the fleet's distribution
(robust statistics across nodes: median and MAD of the per-node medians), and whether a change
seen in a series is a software change (every node moved) or a node fault (some nodes moved)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

MAD_SIGMA = 1.4826
Z_LIMIT = 4.0  # robust z of a node's median against the fleet
MIN_DEVIATION = 0.04  # and at least 4 % away from the fleet median (no quarantine for a tight fleet)
NOISY_RATIO = 3.0  # a node whose own spread is 3x the fleet's typical spread is noisy
MIN_NODES = 4
RECENT = 20  # per node, the last results considered


@dataclass(frozen=True, slots=True)
class NodeOutlier:
    node: str
    kind: str  # slow | fast | noisy
    deviation_pct: float  # node median vs fleet median, in %
    z: float
    node_median: float
    fleet_median: float
    node_cv_pct: float
    fleet_cv_pct: float
    results: int


def robust_cv(values: Sequence[float]) -> float:
    """MAD-based coefficient of variation (0.0 for fewer than 3 values or a median of 0)."""
    if len(values) < 3:
        return 0.0
    med = statistics.median(values)
    if med == 0:
        return 0.0
    return statistics.median(abs(v - med) for v in values) * MAD_SIGMA / abs(med)


_cv = robust_cv


def node_outliers(by_node: Mapping[str, Sequence[float]], higher_is_better: bool = True,
                  scale: float = 1.0) -> list[NodeOutlier]:
    """by_node: node -> its results (oldest first) for ONE benchmark x metric x params x SKU; or
    each result relative to the fleet's level at its time (see `relative_to_fleet`), then `scale`
    (that level now) turns the medians back into the metric's unit."""
    recent = {n: list(v)[-RECENT:] for n, v in by_node.items() if len(v) >= 3}
    if len(recent) < MIN_NODES:
        return []
    meds = {n: statistics.median(v) for n, v in recent.items()}
    cvs = {n: _cv(v) for n, v in recent.items()}
    fleet = statistics.median(meds.values())
    mad = statistics.median(abs(m - fleet) for m in meds.values()) * MAD_SIGMA
    fleet_cv = statistics.median(cvs.values())
    out = []
    for n, m in sorted(meds.items()):
        rel = (m - fleet) / abs(fleet) if fleet else 0.0
        z = (m - fleet) / max(mad, abs(fleet) * 1e-4)
        kind = None
        if abs(z) >= Z_LIMIT and abs(rel) >= MIN_DEVIATION:
            kind = "slow" if (rel < 0) == higher_is_better else "fast"
        elif fleet_cv > 0 and cvs[n] >= NOISY_RATIO * fleet_cv and cvs[n] >= MIN_DEVIATION / 2:
            kind = "noisy"
        if kind:
            out.append(NodeOutlier(n, kind, rel * 100, z, m * scale, fleet * scale, cvs[n] * 100, fleet_cv * 100,
                                  len(recent[n])))
    return out


@dataclass(frozen=True, slots=True)
class Cause:
    cause: str  # software | node | unknown
    moved: tuple[str, ...]  # the nodes whose results moved
    steady: tuple[str, ...]  # the nodes seen on both sides that did not


def classify_change(before: Mapping[str, Sequence[float]], after: Mapping[str, Sequence[float]],
                    change_pct: float, cv: float | None = None) -> Cause:
    """A change seen on every node (of the SKU) is a software change; one seen on some nodes only
    is a node fault. Nodes need results on both sides of the change to count. `cv`: the series'
    noise (relative); given, a node counts as steady only when its own shift is clearly (3 sigma)
    away from the change: a node with one or two noisy results after a change says nothing."""
    moved, steady = [], []
    for n in sorted(set(before) & set(after)):
        if not before[n] or not after[n]:
            continue
        b, a = statistics.median(before[n]), statistics.median(after[n])
        pct = (a - b) / abs(b) * 100 if b else 0.0
        if pct * change_pct > 0 and abs(pct) >= abs(change_pct) / 2:
            moved.append(n)
        elif cv is None:
            steady.append(n)
        else:
            sigma = 1.25 * cv * 100 * (1 / len(before[n]) + 1 / len(after[n])) ** 0.5  # of a median's shift
            if abs(pct - change_pct) > 3 * sigma:
                steady.append(n)
    if not moved:
        # the nodes of the new results were never seen before: a new or changed node?
        new_only = sorted(set(after) - set(before))
        return Cause("node" if new_only and before else "unknown", tuple(new_only), tuple(steady))
    if len(moved) + len(steady) < 2:
        return Cause("unknown", tuple(moved), tuple(steady))
    return Cause("software" if not steady else "node", tuple(moved), tuple(steady))


def relative_to_fleet(values: Sequence[float], half: int = 10) -> list[float]:
    """Each value over the median of the 2*half+1 results around it in time (all nodes): what is
    left is the node's own deviation, not a software change or a driver upgrade of the whole fleet."""
    v = np.asarray(values, dtype=float)
    width = 2 * half + 1
    if len(v) < width:
        level = np.full(len(v), np.median(v) if len(v) else 0.0)
    else:
        mid = np.median(np.lib.stride_tricks.sliding_window_view(v, width), axis=1)
        level = np.concatenate([np.full(half, mid[0]), mid, np.full(half, mid[-1])])
    level[level == 0] = np.nan
    return list(v / level)

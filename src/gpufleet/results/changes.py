"""Change points per series: Apache Otava's E-Divisive (the algorithm of Fleming et al., "Hunter:
Using Change Point Detection to Hunt for Performance Regressions", ICPE 2023) proposes them on the
despiked series, only where a cheap vectorised pre-test sees a possible change (`change_regions`),
and each is confirmed against the series' robust noise (`confirmed`); plus a fast guard for one
new result against a recent window. The thresholds were tuned on bench/results_quality.py's
labelled history (docs/perf-testing.md has its numbers).

Only valid results (perf_valid) are handed in: callers filter them. Points are ordered by time.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from otava.analysis import compute_change_points
from scipy.stats import norm

WINDOW = 50  # E-Divisive sliding window (Otava's default)
MAX_PVALUE = 0.001
CANDIDATE_PVALUE = 0.001  # E-Divisive's own bar for a candidate (the confirmation below is the real one)
MIN_MAGNITUDE = 0.02  # relative: smaller shifts are not reported (noise of a healthy fleet: 1-2 %)
GUARD_WINDOW = 30
GUARD_Z = 5.0
MIN_POINTS = 6
MIN_SEGMENT = 3  # results the newest level must hold for
MIN_HOLD = 10  # results an older level must have held for (an excursion that came back is no change)
MIN_Z = 4.5  # and the shift of the means, in standard errors (the series' noise is known from its
# hundreds of successive differences; 4.5 pays for E-Divisive having tried every position)
MIN_EFFECT = 1.5  # a change moves the level by at least this many sigmas of the series' noise
SEGMENT_LIMIT = 100  # results each side a change is tested on (a level from long ago says little)
REGION_PAD = 75  # results each side of a possible change E-Divisive looks at
PRETEST_MARGIN = 0.7  # the pre-test asks for 70 % of a change's bar before E-Divisive runs
SPIKE_HALF = 3  # despiking: the median of the 7 results around each one (a step of >= 4 survives it)
SPIKE_SIGMAS = 5.0  # a result further than this from that median (in the series' noise) is a spike


@dataclass(frozen=True, slots=True)
class Change:
    index: int  # the first point after the change
    change_pct: float  # mean after vs mean before, in %
    pvalue: float
    mean_before: float
    mean_after: float
    regression: bool  # worse, given higher_is_better

    @property
    def confidence(self) -> float:
        return 1.0 - self.pvalue


def change_points(values: Sequence[float], higher_is_better: bool = True, window: int = WINDOW,
                  max_pvalue: float = MAX_PVALUE, min_magnitude: float = MIN_MAGNITUDE,
                  regions: Sequence[tuple[int, int]] | None = None, already_despiked: bool = False) -> list[Change]:
    """The significant changes of one series (oldest first): E-Divisive's candidates on the
    despiked series (only within `regions`, [lo, hi) slices, when given: see `change_regions`),
    each then confirmed on the whole series between its kept neighbours (z-test, magnitude, and a
    shift of at least MIN_EFFECT times the series' noise)."""
    if len(values) < MIN_POINTS:
        return []
    clean = np.asarray(values, dtype=float) if already_despiked else despiked(values)
    candidates = []
    for lo, hi in regions if regions is not None else [(0, len(clean))]:
        if hi - lo < MIN_POINTS:
            continue
        cps, _weak = compute_change_points(list(clean[lo:hi]), window_len=window,
                                           max_pvalue=max(max_pvalue, CANDIDATE_PVALUE), min_magnitude=min_magnitude)
        candidates += [lo + int(cp.index) for cp in _without_spikes(cps, hi - lo)]
    out = []
    for index, (before, after, p) in confirmed(clean, candidates, max_pvalue, min_magnitude).items():
        pct = (after / before - 1) * 100 if before else 0.0
        out.append(Change(index=index, change_pct=pct, pvalue=p, mean_before=before, mean_after=after,
                          regression=(pct < 0) == higher_is_better))
    return out


def confirmed(values: np.ndarray, candidates: list[int], max_pvalue: float, min_magnitude: float,
              min_effect: float | None = None) -> dict[int, tuple[float, float, float]]:
    """Otava's merge step again, over the candidates that are no spike, with the series' robust
    noise instead of each segment's own spread (a z-test: a short new level is judged against a
    noise level known from the whole series, so a 5 % step at 2 % CV is confirmed after 4-5
    results), and two more bars: MIN_Z standard errors, and a shift of MIN_EFFECT sigmas (a long,
    small excursion of noise is significant but is no change). Weakest first, neighbours
    re-tested after each removal. index -> (mean before, mean after, p-value), for the kept ones."""
    effect = MIN_EFFECT if min_effect is None else min_effect
    sigma = noise(values)
    kept = sorted(set(candidates))
    while kept:
        bounds = [0] + kept + [len(values)]
        stats = {}
        for i, cp in enumerate(kept):
            left, right = values[max(bounds[i], cp - SEGMENT_LIMIT):cp], values[cp:min(bounds[i + 2], cp + SEGMENT_LIMIT)]
            m1, m2 = float(np.mean(left)), float(np.mean(right))
            z = abs(m2 - m1) / (sigma * (1 / len(left) + 1 / len(right)) ** 0.5) if sigma > 0 else 0.0
            p = float(2 * norm.sf(z))
            rel = abs(m2 / m1 - 1) if m1 else 0.0
            held = len(left) >= MIN_HOLD and len(right) >= (MIN_SEGMENT if i == len(kept) - 1 else MIN_HOLD)
            ok = held and p < max_pvalue and z >= MIN_Z and rel >= min_magnitude and abs(m2 - m1) >= effect * sigma
            stats[cp] = (m1, m2, p if p == p else 1.0, ok, rel)
        weak = [cp for cp in kept if not stats[cp][3]]
        if not weak:
            return {cp: stats[cp][:3] for cp in kept}
        kept.remove(max(weak, key=lambda cp: (stats[cp][2], -stats[cp][4])))
    return {}


def _without_spikes(cps: list, n: int) -> list:
    """A level must hold for MIN_SEGMENT results to be a change: a one- or two-result spike (a
    change and its return) is dropped, and so is a change too close to the end to be confirmed
    (the guard speaks for the newest result)."""
    kept = []
    i = 0
    while i < len(cps):
        end = int(cps[i + 1].index) if i + 1 < len(cps) else n
        if end - int(cps[i].index) >= MIN_SEGMENT:
            kept.append(cps[i])
            i += 1
        else:
            i += 2 if i + 1 < len(cps) else 1  # the spike and its return
    return kept


@dataclass(frozen=True, slots=True)
class GuardHit:
    change_pct: float  # the new value vs the window's median, in %
    z: float  # robust z-score (median/MAD)
    regression: bool


def guard(window: Sequence[float], new: float, higher_is_better: bool = True, z_limit: float = GUARD_Z,
          min_magnitude: float = MIN_MAGNITUDE) -> GuardHit | None:
    """Is one new result far outside the recent window (robust z beyond `z_limit` and a shift of at
    least `min_magnitude`)? O(window): cheap enough to run on every ingested result."""
    recent = list(window)[-GUARD_WINDOW:]
    if len(recent) < MIN_POINTS:
        return None
    med = statistics.median(recent)
    mad = statistics.median(abs(v - med) for v in recent) * 1.4826
    if med == 0:
        return None
    rel = (new - med) / abs(med)
    spread = max(mad, abs(med) * 1e-4)
    z = (new - med) / spread
    if abs(z) < z_limit or abs(rel) < min_magnitude:
        return None
    return GuardHit(change_pct=rel * 100, z=z, regression=(rel < 0) == higher_is_better)


def change_regions(values: Sequence[float], margin: float = PRETEST_MARGIN, pad: int = REGION_PAD,
                   already_despiked: bool = False) -> list[tuple[int, int]]:
    """A cheap, vectorised pre-test: where could `change_points` confirm a change? Interior
    changes need MIN_HOLD results each side, so windows of 10, 20, 50 and 100 results each side of
    every position; the newest level may be short, so the last 3-9 results against the 100 before.
    A change is possible where some difference of means reaches `margin` times the bar a change
    must pass (MIN_EFFECT sigmas, MIN_Z standard errors, MIN_MAGNITUDE). Returns the [lo, hi)
    slices (each such position +- `pad`, merged) E-Divisive is run on: none for a steady series.
    The bench checks the verdicts against E-Divisive over every whole series."""
    v = np.asarray(values, dtype=float) if already_despiked else despiked(values)
    n = len(v)
    if n < MIN_POINTS:
        return []
    sigma = noise(v)
    level = abs(float(np.median(v)))
    if sigma <= 0:
        return [(0, n)] if np.ptp(v) > 0 else []
    cs = np.concatenate([[0.0], np.cumsum(v)])

    def bar(a: int, b: int) -> float:
        return margin * max(MIN_EFFECT * sigma, MIN_Z * sigma * (1 / a + 1 / b) ** 0.5, MIN_MAGNITUDE * level)

    hits: list[np.ndarray] = []
    for w in (MIN_HOLD, 2 * MIN_HOLD, 50, SEGMENT_LIMIT):
        if 2 * w > n:
            break
        i = np.arange(w, n - w + 1)
        diff = np.abs((cs[i + w] - cs[i]) - (cs[i] - cs[i - w])) / w
        hits.append(i[diff >= bar(w, w)])
    for k in range(MIN_SEGMENT, MIN_HOLD):
        before = min(SEGMENT_LIMIT, n - k)
        if before < MIN_HOLD:
            break
        if abs((cs[n] - cs[n - k]) / k - (cs[n - k] - cs[n - k - before]) / before) >= bar(k, before):
            hits.append(np.array([n - k]))
    found = np.unique(np.concatenate(hits)) if hits else np.array([], dtype=int)
    regions: list[list[int]] = []
    for i in found.tolist():
        lo, hi = max(0, i - pad), min(n, i + pad)
        if regions and lo <= regions[-1][1]:
            regions[-1][1] = hi
        else:
            regions.append([lo, hi])
    return [(lo, hi) for lo, hi in regions]


def noise(values: Sequence[float]) -> float:
    """The series' noise (one sigma) from successive differences: MAD of the differences / sqrt(2),
    which a step change barely moves."""
    d = np.diff(np.asarray(values, dtype=float))
    if len(d) < 2:
        return 0.0
    return float(np.median(np.abs(d - np.median(d))) * 1.4826 / np.sqrt(2))


def despiked(values: Sequence[float]) -> np.ndarray:
    """The series with single outlier results (and pairs) replaced by the median around them
    (Hampel filter, window 2*SPIKE_HALF+1 centred, shorter at the ends): one run on a bad day is
    not a change, while a step that holds for SPIKE_HALF+1 results passes unchanged."""
    v = np.asarray(values, dtype=float)
    n, h = len(v), SPIKE_HALF
    if n < 2 * h + 1:
        return v
    med = np.empty(n)
    med[h:n - h] = np.median(np.lib.stride_tricks.sliding_window_view(v, 2 * h + 1), axis=1)
    for i in list(range(h)) + list(range(n - h, n)):  # the ends: the shorter window there is
        med[i] = np.median(v[max(0, i - h):i + h + 1])
    sigma = noise(v)
    if sigma <= 0:
        return v
    spikes = np.abs(v - med) > SPIKE_SIGMAS * sigma
    return np.where(spikes, med, v)

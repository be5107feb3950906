"""Change points per series (Apache Otava's E-Divisive with Student's t-test significance, the
algorithm of Fleming et al., "Hunter: Using Change Point Detection to Hunt for Performance
Regressions", ICPE 2023), plus a fast guard for one new result against a recent window.

Only valid results (perf_valid) are handed in: callers filter them. Points are ordered by time.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from otava.analysis import compute_change_points
from scipy.stats import ttest_ind

WINDOW = 50  # E-Divisive sliding window (Otava's default)
MAX_PVALUE = 0.001
MIN_MAGNITUDE = 0.02  # relative: smaller shifts are not reported (noise of a healthy fleet: 1-2 %)
GUARD_WINDOW = 30
GUARD_Z = 5.0
MIN_POINTS = 6
MIN_SEGMENT = 3  # results a new level must hold for
MIN_EFFECT = 2.0  # a change moves the level by at least this many sigmas of the series' noise
SEGMENT_LIMIT = 100  # results each side a change is tested on (a level from long ago says little)
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
                  max_pvalue: float = MAX_PVALUE, min_magnitude: float = MIN_MAGNITUDE) -> list[Change]:
    """The significant changes of one series (oldest first): E-Divisive's candidates on the
    despiked series, each then confirmed between its kept neighbours (t-test, magnitude, and a
    shift of at least MIN_EFFECT times the series' noise)."""
    if len(values) < MIN_POINTS:
        return []
    clean = despiked(values)
    cps, _weak = compute_change_points(list(clean), window_len=window, max_pvalue=max_pvalue,
                                       min_magnitude=min_magnitude)
    candidates = [int(cp.index) for cp in _without_spikes(cps, len(values))]
    out = []
    for index, (before, after, p) in confirmed(clean, candidates, max_pvalue, min_magnitude).items():
        pct = (after / before - 1) * 100 if before else 0.0
        out.append(Change(index=index, change_pct=pct, pvalue=p, mean_before=before, mean_after=after,
                          regression=(pct < 0) == higher_is_better))
    return out


def confirmed(values: np.ndarray, candidates: list[int], max_pvalue: float, min_magnitude: float,
              min_effect: float | None = None) -> dict[int, tuple[float, float, float]]:
    """Otava's merge step again, over the candidates that are no spike, with one more bar: the
    shift must be MIN_EFFECT sigmas of the series' noise (a long, small excursion of noise is
    significant by t-test but is no change). Weakest first, neighbours re-tested after each
    removal. index -> (mean before, mean after, p-value), for the kept ones."""
    effect = MIN_EFFECT if min_effect is None else min_effect
    sigma = noise(values)
    kept = sorted(set(candidates))
    while kept:
        bounds = [0] + kept + [len(values)]
        stats = {}
        for i, cp in enumerate(kept):
            left, right = values[max(bounds[i], cp - SEGMENT_LIMIT):cp], values[cp:min(bounds[i + 2], cp + SEGMENT_LIMIT)]
            m1, m2 = float(np.mean(left)), float(np.mean(right))
            p = float(ttest_ind(left, right, equal_var=False).pvalue) if len(left) > 1 and len(right) > 1 else 1.0
            rel = abs(m2 / m1 - 1) if m1 else 0.0
            ok = p < max_pvalue and rel >= min_magnitude and abs(m2 - m1) >= effect * sigma
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


def may_change(values: Sequence[float]) -> bool:
    """Placeholder: always."""
    return True


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
    padded = np.concatenate([np.full(h, np.nan), v, np.full(h, np.nan)])
    med = np.nanmedian(np.lib.stride_tricks.sliding_window_view(padded, 2 * h + 1), axis=1)
    sigma = noise(v)
    if sigma <= 0:
        return v
    spikes = np.abs(v - med) > SPIKE_SIGMAS * sigma
    return np.where(spikes, med, v)

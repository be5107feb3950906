"""Change points per series (Apache Otava's E-Divisive with Student's t-test significance, the
algorithm of Fleming et al., "Hunter: Using Change Point Detection to Hunt for Performance
Regressions", ICPE 2023), plus a fast guard for one new result against a recent window.

Only valid results (perf_valid) are handed in: callers filter them. Points are ordered by time.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Sequence

from otava.analysis import compute_change_points

WINDOW = 50  # E-Divisive sliding window (Otava's default)
MAX_PVALUE = 0.001
MIN_MAGNITUDE = 0.02  # relative: smaller shifts are not reported (noise of a healthy fleet: 1-2 %)
GUARD_WINDOW = 30
GUARD_Z = 5.0
MIN_POINTS = 6
MIN_SEGMENT = 3  # results a new level must hold for


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
    """The significant changes of one series (oldest first)."""
    if len(values) < MIN_POINTS:
        return []
    cps, _weak = compute_change_points(list(values), window_len=window, max_pvalue=max_pvalue,
                                       min_magnitude=min_magnitude)
    out = []
    for cp in _without_spikes(cps, len(values)):
        s = cp.stats
        pct = float(s.forward_change_percent())
        out.append(Change(index=int(cp.index), change_pct=pct, pvalue=float(s.pvalue),
                          mean_before=float(s.mean_before()), mean_after=float(s.mean_after()),
                          regression=(pct < 0) == higher_is_better))
    return out


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

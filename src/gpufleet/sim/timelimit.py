"""The time-limit over-estimate model: what a user would have asked for, given the true run time.

Real users over-estimate (Slurm studies: most jobs use a small fraction of their limit), and
round to a few familiar values. Backfill and SJF must see such estimates, never the exact truth
unless asked for.

Specs:
  `buckets:1h,4h,1d,7d` (default) round the duration up to the next bucket; beyond the last one,
                                  up to a whole multiple of it.
  `factor:2`                      duration x 2, rounded up to a whole minute.
  `exact`                         the true duration (an oracle: for comparisons only).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from gpufleet.domain import ValidationError, parse_duration

DEFAULT_SPEC = "buckets:1h,4h,1d,7d"


@dataclass(frozen=True, slots=True)
class TimeLimitModel:
    kind: str  # buckets | factor | exact
    buckets: tuple[int, ...] = ()
    factor: float = 1.0
    spec: str = DEFAULT_SPEC

    def __call__(self, duration_s: float) -> int:
        d = max(1, math.ceil(duration_s))
        if self.kind == "exact":
            return d
        if self.kind == "factor":
            return max(60, math.ceil(d * self.factor / 60) * 60)
        i = bisect.bisect_left(self.buckets, d)
        if i < len(self.buckets):
            return self.buckets[i]
        last = self.buckets[-1]
        return math.ceil(d / last) * last


def parse_time_limit_model(spec: str | None, field: str = "time_limit_model") -> TimeLimitModel:
    spec = (spec or DEFAULT_SPEC).strip()
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "exact" and not arg:
        return TimeLimitModel("exact", spec=spec)
    if kind == "factor":
        try:
            factor = float(arg)
        except ValueError:
            raise ValidationError(field, f"factor needs a number, e.g. factor:2 (got {spec!r})") from None
        if not factor >= 1.0:
            raise ValidationError(field, f"factor must be >= 1 (users over-estimate), got {spec!r}")
        return TimeLimitModel("factor", factor=factor, spec=spec)
    if kind == "buckets":
        parts = [p for p in arg.split(",") if p.strip()]
        if not parts:
            raise ValidationError(field, f"buckets need values, e.g. {DEFAULT_SPEC}")
        values = tuple(sorted({parse_duration(p.strip(), field) or 0 for p in parts}))
        return TimeLimitModel("buckets", buckets=values, spec=spec)
    raise ValidationError(field, f"unknown model {spec!r}; use buckets:1h,4h,1d,7d, factor:2 or exact")

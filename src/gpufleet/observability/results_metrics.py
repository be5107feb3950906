"""Prometheus series of benchmark results: the latest value per series and the open regressions.

    metrics.registry.register(ResultsCollector(latest=..., regressions=..., clock=time.monotonic))

Cardinality is bounded: at most MAX_SERIES `gpufleet_result_latest_value` series (the first by
series key; `gpufleet_result_series` says how many exist, so a cut is visible), and
open regressions are counted per benchmark x SKU x direction x cause, never per result. The latest
values are read at scrape time (one grouped SQL query); regressions, which mean change-point
detection over the whole history (seconds for 500,000 results), are recomputed at most every
`regressions_ttl_s`, in a background thread unless `background=False`: a scrape never waits for
them, it serves the last answer (empty until the first is done), and a failure keeps the previous one.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from typing import Any, Callable, Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

MAX_SERIES = 500
REGRESSIONS_TTL_S = 600.0


class ResultsCollector(Collector):
    def __init__(self, latest: Callable[[], Iterable[tuple]], regressions: Callable[[], Iterable[Any]],
                 clock: Callable[[], float], regressions_ttl_s: float = REGRESSIONS_TTL_S,
                 max_series: int = MAX_SERIES, background: bool = True):
        """latest(): (series, benchmark, metric, sku, value) per series (store.results.latest_values);
        regressions(): open Regression objects (gpufleet.results.analysis)."""
        self._latest, self._regressions, self._clock = latest, regressions, clock
        self._ttl, self._max = regressions_ttl_s, max_series
        self._lock = threading.Lock()
        self._open: dict[tuple[str, str, str, str], int] = {}
        self._computed_at: float | None = None
        self._background, self._running = background, False

    def collect(self) -> Iterator[GaugeMetricFamily]:
        rows = sorted(self._latest(), key=lambda r: r[0])
        total = GaugeMetricFamily("gpufleet_result_series", "Result series with at least one valid result")
        total.add_metric([], len(rows))
        yield total
        fam = GaugeMetricFamily("gpufleet_result_latest_value",
                                f"Newest valid result per series (at most {self._max} series)",
                                labels=["series", "benchmark", "metric", "sku"])
        for row in rows[:self._max]:
            series, benchmark, metric, sku, value = row[:5]
            fam.add_metric([series, benchmark, metric, sku or "-"], float(value))
        yield fam
        opened = GaugeMetricFamily("gpufleet_result_open_regressions",
                                   "Changes a series still sits at, by benchmark, SKU, direction and cause "
                                   "(software: every node moved; node: some nodes)",
                                   labels=["benchmark", "sku", "direction", "cause"])
        for (benchmark, sku, direction, cause), n in sorted(self._open_regressions().items()):
            opened.add_metric([benchmark, sku, direction, cause], n)
        yield opened

    def _open_regressions(self) -> dict[tuple[str, str, str, str], int]:
        now = self._clock()
        with self._lock:
            due = not self._running and (self._computed_at is None or now - self._computed_at >= self._ttl)
            if due:
                self._computed_at, self._running = now, True  # a failing one is not retried each scrape
        if due:
            if self._background:
                threading.Thread(target=self._recompute, name="results-metrics", daemon=True).start()
            else:
                self._recompute()
        with self._lock:
            return self._open

    def _recompute(self) -> None:
        try:
            found = dict(Tally((g.benchmark, g.first.sku or "-", g.direction, g.cause.cause)
                               for g in self._regressions() if g.open))
        except Exception:
            found = None  # keep the last answer; the next interval tries again
        with self._lock:
            if found is not None:
                self._open = found
            self._running = False

    def describe(self) -> Iterator[Any]:
        return iter(())

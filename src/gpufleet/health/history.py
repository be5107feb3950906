"""Flakiness history per node, computed from stored health results: failures per ISO week.

A "failure" is one health run (run_id) on the node with at least one failing check; records
without a run id count one run per distinct timestamp.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from typing import Iterable, Mapping

from gpufleet.health.types import CheckRecord, Status


def iso_week(ts: float) -> str:
    year, week, _ = datetime.fromtimestamp(ts, timezone.utc).isocalendar()
    return f"{year}-W{week:02d}"


def last_weeks(now: float, weeks: int) -> list[str]:
    """The ISO weeks ending with the one holding `now`, oldest first."""
    day = datetime.fromtimestamp(now, timezone.utc)
    out: list[str] = []
    for k in range(weeks - 1, -1, -1):
        out.append(iso_week((day - timedelta(weeks=k)).timestamp()))
    return out


def failures_per_week(records: Iterable[CheckRecord], now: float, weeks: int = 8) -> dict[str, int]:
    """{"2026-W03": 2, ...} for the last `weeks` weeks, oldest first, zero-filled."""
    window = last_weeks(now, weeks)
    failed_runs: dict[str, set[str]] = defaultdict(set)
    for r in records:
        if r.status is Status.FAIL:
            failed_runs[iso_week(r.at)].add(r.run_id or f"at:{r.at}")
    return {w: len(failed_runs.get(w, ())) for w in window}


def flakiness(records_by_node: Mapping[str, Iterable[CheckRecord]], now: float,
              weeks: int = 8) -> dict[str, dict[str, int]]:
    return {node: failures_per_week(recs, now, weeks) for node, recs in records_by_node.items()}


def group_by_node(records: Iterable[CheckRecord]) -> dict[str, list[CheckRecord]]:
    out: dict[str, list[CheckRecord]] = defaultdict(list)
    for r in records:
        out[r.node].append(r)
    return dict(out)


def top_failing_checks(records: Iterable[CheckRecord], n: int = 3) -> list[tuple[str, int]]:
    """The checks that failed most often (what breaks on this node)."""
    return Counter(r.check for r in records if r.status is Status.FAIL).most_common(n)


def sparkline(counts: Iterable[int]) -> str:
    """A tiny per-week bar for `gpufleet nodes --health`: ' ▁▂▃▄▅▆▇█'."""
    bars = " ▁▂▃▄▅▆▇█"
    values = list(counts)
    top = max(values, default=0)
    if top == 0:
        return "·" * len(values)
    return "".join(bars[min(8, -(-v * 8 // top))] if v else "·" for v in values)

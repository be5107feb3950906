"""Output progress of a job's pods: the newest log line's time, for --heartbeat (the hang check).

Kubernetes has no file the server could stat, so a rank's sign of life is its output: the pod log
API with `timestamps=true&tailLines=1` returns the newest line with the time the container runtime
recorded it (RFC 3339, nanoseconds), one small read per running rank pod."""

from __future__ import annotations

import datetime as dt
import re

_TS = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d) ")


def line_time(data: bytes) -> float | None:
    """The time kubelet put before the first line of `data` (None: no timestamp there, e.g. an
    empty log). `2026-12-05T14:00:01.123456789Z loss 0.3` -> 1796479201.123457"""
    m = _TS.match(data[:64])
    if m is None:
        return None
    zone = m.group(3).decode()
    at = dt.datetime.strptime(m.group(1).decode() + ("+00:00" if zone == "Z" else zone), "%Y-%m-%dT%H:%M:%S%z")
    return at.timestamp() + (float(m.group(2)) if m.group(2) else 0.0)


def refresh_s(heartbeat_s: float | None) -> float:
    """How long one reading of a job's pod logs is reused: a tenth of its --heartbeat (1..30 s), so
    a hang is still seen within ~10% of the limit and a big gang costs O(ranks) calls per period,
    not per control cycle."""
    return min(30.0, max(1.0, (heartbeat_s or 10.0) / 10))

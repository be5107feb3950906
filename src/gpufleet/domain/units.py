"""Parsing of durations (90s, 30m, 4h, 1d, HH:MM:SS) and sizes (16G, 512M)."""

from __future__ import annotations

import math
import re

from gpufleet.domain.errors import ValidationError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)
_UNIT_MB = {"k": 1 / 1024, "m": 1, "": 1, "g": 1024, "t": 1024**2, "p": 1024**3}
MAX_INT = 2**63 - 1  # every integer gpufleet stores fits a signed 64-bit column


def parse_duration(value: str | int | float | None, field: str = "time_limit") -> int | None:
    """Seconds from `90s`, `30m`, `4h`, `1d`, `1w`, `HH:MM:SS`, `MM:SS`, `D-HH:MM:SS` or a number."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValidationError(field, f"not a duration: {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(field, f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        seconds = int(value)
    else:
        seconds = _parse_duration_text(value, field)
    if seconds <= 0:
        raise ValidationError(field, f"must be positive, got {value!r}")
    if seconds > MAX_INT:
        raise ValidationError(field, f"too long: {value!r}")
    return seconds


def _parse_duration_text(text: str, field: str) -> int:
    m = _DURATION.match(text)
    if m:
        return _finite_int(float(m.group(1)) * _UNIT_S[m.group(2).lower()], field, text)
    days = 0
    rest = text.strip()
    if "-" in rest:
        d, _, rest = rest.partition("-")
        if not d.isdigit():
            raise ValidationError(field, f"not a duration: {text!r} (use 90s, 30m, 4h, 1d or HH:MM:SS)")
        days = int(d)
    parts = rest.split(":")
    if not 2 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise ValidationError(field, f"not a duration: {text!r} (use 90s, 30m, 4h, 1d or HH:MM:SS)")
    nums = [int(p) for p in parts]
    if len(nums) == 2:
        nums.insert(0, 0)
    h, m_, s = nums
    if m_ >= 60 or s >= 60:
        raise ValidationError(field, f"not a duration: {text!r} (minutes and seconds must be < 60)")
    return days * 86400 + h * 3600 + m_ * 60 + s


def parse_mem_mb(value: str | int | None, field: str = "mem") -> int | None:
    """MiB from `16G`, `512M`, `1T`, `16GiB` or a plain number of MiB."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValidationError(field, f"not a size: {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(field, f"not a size: {value!r}")
    if isinstance(value, (int, float)):
        mb = int(value)
    else:
        m = _SIZE.match(value)
        if not m:
            raise ValidationError(field, f"not a size: {value!r} (use e.g. 512M, 16G)")
        mb = _finite_int(float(m.group(1)) * _UNIT_MB[m.group(2).lower()], field, value)
    if mb <= 0:
        raise ValidationError(field, f"must be positive, got {value!r}")
    if mb > MAX_INT:
        raise ValidationError(field, f"too large: {value!r}")
    return mb


def _finite_int(x: float, field: str, text: object) -> int:
    if not math.isfinite(x) or x > MAX_INT:
        raise ValidationError(field, f"too large: {text!r}")
    return int(x)


def _finite_time(t: float, field: str, text: object) -> float:
    if not math.isfinite(t) or abs(t) > 1e12:  # about the year 33658
        raise ValidationError(field, f"not a time: {text!r}")
    return t


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    d, rem = divmod(seconds, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    return f"{d}-{h:02d}:{m:02d}:{s:02d}" if d else f"{h:02d}:{m:02d}:{s:02d}" if h else f"{m:d}:{s:02d}"


def parse_time(value: str | int | float, now: float, field: str = "start") -> float:
    """An instant: epoch seconds, `now`, `+30m` (from now), or ISO 8601 (`2026-11-22T14:00`, UTC if
    no zone is given)."""
    from datetime import datetime, timezone

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _finite_time(float(value), field, value)
    text = str(value).strip()
    if text == "now":
        return now
    if text.startswith("+"):
        return now + (parse_duration(text[1:], field) or 0)
    try:
        return _finite_time(float(text), field, text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(field, f"not a time: {text!r} (use now, +2h, or 2026-11-22T14:00)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()

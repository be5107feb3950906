"""Scheduler settings for a replay: a YAML of `SchedulerConfig` fields, overridden by flags.

```yaml
policy: fairshare
backfill: true
preemption: true
topology: true
default_time_limit_s: 1d        # durations accept 90s, 30m, 4h, 1d, HH:MM:SS
fairshare_half_life_s: 7d
```
A `scheduler:` top-level key holding the same mapping is accepted too (a server config file).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from gpufleet.domain import ValidationError, parse_duration
from gpufleet.scheduler import POLICIES, SchedulerConfig

_DURATIONS = {"default_time_limit_s", "fairshare_half_life_s"}


def load_config(path: str | Path | None) -> dict[str, Any]:
    if not path:
        return {}
    p = Path(path)
    if not p.is_file():
        raise ValidationError("config", f"no such file: {path}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValidationError("config", f"not valid YAML: {str(e).splitlines()[0]}") from None
    if isinstance(data, dict) and isinstance(data.get("scheduler"), dict):
        data = data["scheduler"]
    if not isinstance(data, dict):
        raise ValidationError("config", "must be a mapping of scheduler settings")
    return data


def make_config(base: dict[str, Any], **overrides: Any) -> SchedulerConfig:
    """SchedulerConfig from file values, then non-None flag values; unknown keys are errors."""
    fields = {f.name: f for f in dataclasses.fields(SchedulerConfig)}
    values = dict(base)
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValidationError(f"config.{unknown[0]}", f"unknown setting; known: {sorted(fields)}")
    kwargs = {k: _coerce(k, v, fields[k].default) for k, v in values.items()}
    policy = kwargs.get("policy", fields["policy"].default)
    if policy not in POLICIES:
        raise ValidationError("policy", f"must be one of {list(POLICIES)}, got {policy!r}")
    return SchedulerConfig(**kwargs)


def _coerce(key: str, value: Any, default: Any) -> Any:
    field = f"config.{key}" if key != "policy" else "policy"
    if key in _DURATIONS:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if value <= 0:
                raise ValidationError(field, f"must be positive, got {value!r}")
            return type(default)(value)
        return type(default)(parse_duration(str(value), field))
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValidationError(field, f"must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValidationError(field, f"must be a non-negative integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValidationError(field, f"must be a number, got {value!r}")
        return float(value)
    return str(value).lower() if key == "policy" else value

"""What one stored measurement is, with the provenance of the run that produced it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

# A series is one benchmark x metric x params x SKU x driver (configurable: any Result field)
DEFAULT_SERIES_KEY = ("benchmark", "metric", "params", "sku", "driver")
SERIES_FIELDS = ("benchmark", "metric", "params", "sku", "driver", "vbios", "gpu_model", "node", "unit")


@dataclass(slots=True)
class Result:
    benchmark: str
    metric: str
    value: float
    at: float  # when it was measured (epoch seconds)
    unit: str = ""
    higher_is_better: bool = True
    params: dict[str, Any] = field(default_factory=dict)
    # provenance
    job_id: int | None = None
    attempt: int | None = None
    tenant: str = ""
    user: str = ""
    node: str = ""
    gpu_model: str = ""
    sku: str = ""
    driver: str = ""
    vbios: str = ""
    gpu_uuids: str = ""  # comma-separated
    commit: str = ""
    labels: dict[str, str] | None = None  # None: the run's spec carried no labels (not available)
    clocks: str = ""
    valid: bool = True  # perf_valid: False results never enter change-point detection
    invalid_reason: str = ""
    conditions: dict[str, Any] | None = None
    source: str = "job"  # job | import
    series: str = ""
    id: int | None = None


@dataclass(slots=True)
class TestCase:
    __test__ = False  # not a pytest class
    suite: str
    name: str
    outcome: str  # passed | failed | error | skipped
    classname: str = ""
    time_s: float = 0.0
    message: str = ""
    job_id: int | None = None
    attempt: int | None = None
    tenant: str = ""
    user: str = ""
    node: str = ""
    at: float = 0.0


def params_text(params: Mapping[str, Any]) -> str:
    """{'precision': 'bf16', 'batch': 256} -> 'batch=256,precision=bf16' (sorted; '-' when empty)."""
    if not params:
        return "-"
    return ",".join(f"{k}={_scalar(v)}" for k, v in sorted(params.items()))


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float, str)):
        return str(v)
    return json.dumps(v, sort_keys=True, separators=(",", ":"))


def series_key(r: Result, fields: Sequence[str] = DEFAULT_SERIES_KEY) -> str:
    """The series a result belongs to, e.g. 'resnet50-train/images_per_s/batch=256/A100-SXM4-80GB/550.54'.
    Empty parts are '-'."""
    parts = []
    for f in fields:
        v = params_text(r.params) if f == "params" else str(getattr(r, f) or "")
        parts.append(v.replace("/", "_") or "-")
    return "/".join(parts)


def check_series_key(fields: Sequence[str]) -> tuple[str, ...]:
    bad = [f for f in fields if f not in SERIES_FIELDS]
    if bad or not fields:
        raise ValueError(f"series key fields must be among {', '.join(SERIES_FIELDS)} (got {list(fields)})")
    return tuple(fields)

"""Parsing what jobs (and people importing history) hand in: JSON Lines measurements, JUnit XML.

One JSON object per line:
    {"benchmark": "resnet50-train", "metric": "images_per_s", "value": 2874.1, "unit": "img/s",
     "higher_is_better": true, "params": {"batch": 256, "precision": "bf16"}}
An imported line may also carry its provenance: node, gpu_model, sku, driver, vbios, gpu_uuid,
commit, timestamp (ISO 8601 or epoch seconds), job, perf_valid, labels. Lines written by a job
get their provenance from the server instead (whatever provenance the line claims is ignored).
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any, Iterable
from xml.etree import ElementTree

from gpufleet.domain import ValidationError
from gpufleet.results.model import Result, TestCase

MEASUREMENT = ("benchmark", "metric", "value", "unit", "higher_is_better", "params")
PROVENANCE = ("node", "gpu_model", "sku", "driver", "vbios", "gpu_uuid", "commit", "timestamp", "job",
              "perf_valid", "labels")
_TEXT_LIMIT = 256


def parse_jsonl(lines: Iterable[str | bytes], now: float, provenance: bool = True) -> list[Result]:
    """Every line as a Result, or ValidationError('line N: field', why) for the first bad one
    (all or nothing). Blank lines are skipped. `provenance`: honour the provenance fields."""
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        out.append(parse_line(line, n, now, provenance))
    return out


def parse_lenient(lines: Iterable[str | bytes], now: float) -> tuple[list[Result], list[str]]:
    """A job's own files: the good lines, and one 'line N: field: why' per bad one."""
    good, bad = [], []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            good.append(parse_line(line, n, now, provenance=False))
        except ValidationError as e:
            bad.append(str(e))
    return good, bad


def parse_line(line: str | bytes, n: int, now: float, provenance: bool = True) -> Result:
    where = f"line {n}"
    try:
        obj = json.loads(line)
    except ValueError as e:
        raise ValidationError(where, f"not JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise ValidationError(where, "not a JSON object")
    r = Result(benchmark=_name(obj, "benchmark", where), metric=_name(obj, "metric", where),
               value=_value(obj, where), at=now, unit=_text(obj, "unit", where),
               higher_is_better=_bool(obj, "higher_is_better", where, True),
               params=_params(obj, where), source="import" if provenance else "job")
    if provenance:
        _provenance(r, obj, where, now)
    return r


def _provenance(r: Result, obj: dict, where: str, now: float) -> None:
    for f in ("node", "gpu_model", "sku", "driver", "vbios", "commit"):
        setattr(r, f, _text(obj, f, where))
    r.gpu_uuids = _text(obj, "gpu_uuid", where)
    if "timestamp" in obj:
        r.at = parse_timestamp(obj["timestamp"], f"{where}: timestamp")
    job = obj.get("job")
    if job is not None:
        if isinstance(job, bool) or not isinstance(job, int) or job < 1:
            raise ValidationError(f"{where}: job", f"must be a job id (a positive integer), got {job!r}")
        r.job_id = job
    r.valid = _bool(obj, "perf_valid", where, True)
    labels = obj.get("labels")
    if labels is not None:
        if not isinstance(labels, dict) or not all(isinstance(v, (str, int, float)) for v in labels.values()):
            raise ValidationError(f"{where}: labels", "must be an object of strings")
        r.labels = {str(k): str(v) for k, v in labels.items()}
        r.commit = r.commit or r.labels.get("commit", "")


def parse_timestamp(value: Any, field: str) -> float:
    """ISO 8601 (UTC unless it names a zone) or epoch seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if math.isfinite(value) and 0 <= value < 1e11:
            return float(value)
        raise ValidationError(field, f"epoch seconds out of range: {value!r}")
    if isinstance(value, str):
        try:
            return parse_timestamp(float(value), field)
        except ValueError:
            pass
        try:
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(field, f"not ISO 8601 or epoch seconds: {value!r}") from None
        return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()
    raise ValidationError(field, f"not ISO 8601 or epoch seconds: {value!r}")


def _name(obj: dict, f: str, where: str) -> str:
    v = obj.get(f)
    if not isinstance(v, str) or not v.strip():
        raise ValidationError(f"{where}: {f}", "required (a non-empty string)")
    if len(v) > _TEXT_LIMIT or "/" in v:
        raise ValidationError(f"{where}: {f}", f"at most {_TEXT_LIMIT} characters, no '/'")
    return v.strip()


def _text(obj: dict, f: str, where: str) -> str:
    v = obj.get(f)
    if type(v) is str and len(v) <= _TEXT_LIMIT:  # the common case first: 800k calls per 100k lines
        return v
    if v is None:
        return ""
    if isinstance(v, bool) or not isinstance(v, (str, int, float)) or len(str(v)) > _TEXT_LIMIT:
        raise ValidationError(f"{where}: {f}", f"must be a string of at most {_TEXT_LIMIT} characters")
    return str(v)


def _value(obj: dict, where: str) -> float:
    v = obj.get("value")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValidationError(f"{where}: value", f"required (a finite number), got {v!r}")
    return float(v)


def _bool(obj: dict, f: str, where: str, default: bool) -> bool:
    v = obj.get(f, default)
    if not isinstance(v, bool):
        raise ValidationError(f"{where}: {f}", f"must be true or false, got {v!r}")
    return v


def _params(obj: dict, where: str) -> dict[str, Any]:
    v = obj.get("params", {})
    if v is None:
        return {}
    if not isinstance(v, dict) or not all(isinstance(x, (str, int, float, bool)) for x in v.values()):
        raise ValidationError(f"{where}: params", "must be an object of strings, numbers or booleans")
    return v


def parse_junit(data: bytes, at: float) -> list[TestCase]:
    """JUnit XML (<testsuites> or one <testsuite>) -> one TestCase per <testcase>."""
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as e:
        raise ValidationError("junit", f"not XML: {e}") from None
    suites = [root] if root.tag == "testsuite" else root.iter("testsuite")
    out = []
    for suite in suites:
        for case in suite.findall("testcase"):
            outcome, message = _outcome(case)
            out.append(TestCase(suite=suite.get("name", ""), name=case.get("name", ""),
                                classname=case.get("classname", ""), outcome=outcome,
                                time_s=_float(case.get("time")), message=message[:2000], at=at))
    return out


def _outcome(case: ElementTree.Element) -> tuple[str, str]:
    for tag, outcome in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
        el = case.find(tag)
        if el is not None:
            return outcome, (el.get("message") or el.text or "").strip()
    return "passed", ""


def _float(v: str | None) -> float:
    try:
        return float(v) if v else 0.0
    except ValueError:
        return 0.0

from __future__ import annotations

import json

import pytest

from gpufleet.domain import ValidationError
from gpufleet.results import parse_jsonl, parse_junit, series_key
from gpufleet.results.ingest import parse_lenient

GOOD = {"benchmark": "resnet50-train", "metric": "images_per_s", "value": 2874.1, "unit": "img/s",
        "higher_is_better": True, "params": {"precision": "bf16", "batch": 256}}


def test_a_measurement_line_with_provenance():
    line = json.dumps({**GOOD, "node": "dgx1", "sku": "A100-SXM4-80GB", "driver": "550.54.15", "vbios": "92.00.45",
                       "gpu_uuid": "GPU-1", "commit": "abc123", "timestamp": "2026-11-02T10:00:00Z", "job": 7})
    [r] = parse_jsonl([line], now=5.0)
    assert (r.benchmark, r.metric, r.value, r.unit, r.node, r.sku, r.commit, r.job_id) == (
        "resnet50-train", "images_per_s", 2874.1, "img/s", "dgx1", "A100-SXM4-80GB", "abc123", 7)
    assert r.at == 1793613600.0 and r.gpu_uuids == "GPU-1" and r.valid
    assert series_key(r) == "resnet50-train/images_per_s/batch=256,precision=bf16/A100-SXM4-80GB/550.54.15"


def test_epoch_timestamps_and_defaults():
    [r] = parse_jsonl([json.dumps({"benchmark": "b", "metric": "m", "value": 1, "timestamp": 1700000000})], now=5.0)
    assert r.at == 1700000000.0 and r.higher_is_better and r.params == {} and r.labels is None
    [r] = parse_jsonl([json.dumps({"benchmark": "b", "metric": "m", "value": 1})], now=5.0)
    assert r.at == 5.0


@pytest.mark.parametrize("line,field", [
    ("{not json", "line 2"),
    ("[1, 2]", "line 2"),
    (json.dumps({"metric": "m", "value": 1}), "line 2: benchmark"),
    (json.dumps({"benchmark": "b", "metric": "m", "value": "fast"}), "line 2: value"),
    (json.dumps({"benchmark": "b", "metric": "m", "value": float("nan")}).replace("NaN", "NaN"), "line 2: value"),
    (json.dumps({"benchmark": "b", "metric": "m", "value": 1, "timestamp": "yesterday"}), "line 2: timestamp"),
    (json.dumps({"benchmark": "b", "metric": "m", "value": 1, "higher_is_better": "yes"}), "line 2: higher_is_better"),
    (json.dumps({"benchmark": "b", "metric": "m", "value": 1, "params": {"a": [1]}}), "line 2: params"),
    (json.dumps({"benchmark": "b", "metric": "m", "value": 1, "job": -3}), "line 2: job"),
    (json.dumps({"benchmark": "a/b", "metric": "m", "value": 1}), "line 2: benchmark"),
])
def test_a_bad_line_names_its_number_and_field(line, field):
    with pytest.raises(ValidationError) as e:
        parse_jsonl([json.dumps(GOOD), line, json.dumps(GOOD)], now=0.0)
    assert e.value.field == field


def test_blank_lines_are_skipped_and_counted():
    with pytest.raises(ValidationError) as e:
        parse_jsonl([json.dumps(GOOD), "", "  ", "{}"], now=0.0)
    assert e.value.field == "line 4: benchmark"


def test_a_jobs_own_lines_cannot_claim_provenance_and_bad_ones_are_noted():
    claim = json.dumps({**GOOD, "node": "elsewhere", "sku": "H100", "perf_valid": True})
    good, bad = parse_lenient([claim, "oops"], now=3.0)
    assert [(r.node, r.sku, r.source) for r in good] == [("", "", "job")]
    assert bad == ["line 2: not JSON (Expecting value)"]


JUNIT = b"""<?xml version="1.0"?>
<testsuites><testsuite name="nccl" tests="3">
  <testcase classname="allreduce" name="fp16" time="1.5"/>
  <testcase classname="allreduce" name="bf16" time="0.2"><failure message="busbw 12 &lt; 150">trace</failure></testcase>
  <testcase classname="allgather" name="int8"><skipped/></testcase>
</testsuite></testsuites>"""


def test_junit_cases_pass_fail_skip():
    cases = parse_junit(JUNIT, at=9.0)
    assert [(c.suite, c.classname, c.name, c.outcome, c.time_s) for c in cases] == [
        ("nccl", "allreduce", "fp16", "passed", 1.5), ("nccl", "allreduce", "bf16", "failed", 0.2),
        ("nccl", "allgather", "int8", "skipped", 0.0)]
    assert cases[1].message == "busbw 12 < 150"


def test_junit_not_xml():
    with pytest.raises(ValidationError) as e:
        parse_junit(b"<testsuite", at=0)
    assert e.value.field == "junit"

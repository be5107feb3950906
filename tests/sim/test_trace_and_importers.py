"""Trace formats: canonical CSV, Philly, sacct; the time-limit over-estimate model."""

from __future__ import annotations

import gzip
import io

import pytest

from gpufleet.domain import ValidationError
from gpufleet.sim import load_trace, parse_time_limit_model
from gpufleet.sim.trace import TraceJob, gang_shape, parse_canonical, sniff_format, to_csv_text

PHILLY = """timestamp,duration,num_gpus,gpu_time,cluster
2017-10-09 07:01:55,66.0,1,66.0,11cb48
2017-10-09 06:13:03,2951.0,1,2951.0,6214e9
2017-10-09 06:20:00,7200.0,16,115200.0,6214e9

"""

SACCT = """JobID|JobName|Account|Submit|Start|End|Timelimit|AllocTRES|ReqTRES|NNodes|State
100|train|vision|2024-05-01T10:00:00|2024-05-01T10:05:00|2024-05-01T12:05:00|04:00:00|billing=16,cpu=16,gres/gpu:a100=2,gres/gpu=2,mem=64G,node=1|cpu=16,gres/gpu=2,node=1|1|COMPLETED
100.batch|batch|vision|2024-05-01T10:05:00|2024-05-01T10:05:00|2024-05-01T12:05:00||cpu=16,gres/gpu=2,mem=64G,node=1||1|COMPLETED
101|big|speech|2024-05-01T11:00:00|2024-05-01T11:30:00|2024-05-02T11:30:00|1-12:00:00|cpu=64,gres/gpu=16,node=2|cpu=64,gres/gpu=16,node=2|2|TIMEOUT
102|cpu|speech|2024-05-01T11:00:00|2024-05-01T11:00:00|2024-05-01T11:10:00|UNLIMITED|cpu=4,mem=8G,node=1|cpu=4,mem=8G,node=1|1|COMPLETED
103|queued|vision|2024-05-01T12:00:00|Unknown|Unknown|01:00:00||cpu=1,gres/gpu=1,node=1|1|PENDING
104|nolimit|vision|2024-05-01T13:00:00|2024-05-01T13:00:00|2024-05-01T13:20:00|UNLIMITED||cpu=1,gres/gpu=1,node=1|1|CANCELLED
"""


def test_philly_importer_on_a_hand_written_file(tmp_path):
    path = tmp_path / "philly.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(PHILLY)
    trace = load_trace(path)  # format sniffed from the header
    assert trace.source == "philly"
    got = [(j.id, j.submit_s, j.duration_s, j.gpus, j.tenant, j.time_limit_s) for j in trace.jobs]
    assert got == [
        ("2", 0.0, 2951.0, 1, "6214e9", 3600),  # limits: the next of 1h/4h/1d/7d above the duration
        ("3", 417.0, 7200.0, 16, "6214e9", 14400),
        ("1", 2932.0, 66.0, 1, "11cb48", 3600),
    ]


def test_sacct_importer_keeps_whole_gpu_jobs_that_ran(tmp_path):
    path = tmp_path / "sacct.txt"
    path.write_text(SACCT)
    trace = load_trace(path, "sacct")
    assert trace.skipped == 3  # the step 100.batch, the CPU-only 102, the never-started 103
    got = [(j.id, j.submit_s, j.duration_s, j.gpus, j.nodes, j.gpu_model, j.tenant, j.time_limit_s)
           for j in trace.jobs]
    assert got == [
        ("100", 0.0, 7200.0, 2, 1, "a100", "vision", 4 * 3600),  # the user's own Timelimit
        ("101", 3600.0, 86400.0, 16, 2, None, "speech", 36 * 3600),
        ("104", 10800.0, 1200.0, 1, 1, None, "vision", 3600),  # UNLIMITED: the model's 1h
    ]


def test_sacct_without_gpu_column_names_the_field(tmp_path):
    path = tmp_path / "sacct.txt"
    path.write_text("JobID|Submit|Start|End\n1|2024-05-01T10:00:00|2024-05-01T10:00:00|2024-05-01T11:00:00\n")
    with pytest.raises(ValidationError) as e:
        load_trace(path, "sacct")
    assert "AllocTRES" in str(e.value)


def test_canonical_round_trip_and_gangs():
    jobs = [TraceJob("a", 0, 10, 4, tenant="x", time_limit_s=60),
            TraceJob("b", 1.5, 20, 24, gpu_model="h100", priority=5)]
    trace = parse_canonical(io.StringIO(to_csv_text(jobs)))
    assert trace.jobs == jobs
    assert gang_shape(jobs[0], 8) == (1, 4)
    assert gang_shape(jobs[1], 8) == (3, 8)  # more than a node: whole nodes
    assert gang_shape(TraceJob("c", 0, 1, 12), 8) == (2, 8)
    assert gang_shape(TraceJob("d", 0, 1, 12, nodes=3), 8) == (3, 4)  # explicit nodes win


@pytest.mark.parametrize("text, field", [
    ("id,submit_s,gpus\n1,0,1\n", "trace"),
    ("id,submit_s,duration_s,gpus\n1,0,10,zero\n", "trace line 2: gpus"),
    ("id,submit_s,duration_s,gpus\n1,0,10,0\n", "trace line 2: gpus"),
    ("id,submit_s,duration_s,gpus\n1,-5,10,1\n", "trace line 2: submit_s"),
    ("id,submit_s,duration_s,gpus,nodes\n1,0,10,6,4\n", "trace line 2: nodes"),
    ("id,submit_s,duration_s,gpus\n1,0,10,1\n1,0,10,1\n", "trace line 3: id"),
    ("id,submit_s,duration_s,gpus,colour\n1,0,10,1,red\n", "trace"),
])
def test_canonical_rejects_bad_rows_naming_the_field(text, field):
    with pytest.raises(ValidationError) as e:
        parse_canonical(io.StringIO(text))
    assert e.value.field == field


def test_sniffing_and_unknown_format(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("id,submit_s,duration_s,gpus\n1,0,1,1\n")
    assert sniff_format(p) == "canonical"
    with pytest.raises(ValidationError) as e:
        load_trace(p, "parquet")
    assert e.value.field == "format"
    p.write_text("a,b,c\n")
    with pytest.raises(ValidationError) as e:
        load_trace(p)
    assert e.value.field == "format"


@pytest.mark.parametrize("spec, duration, limit", [
    (None, 61, 3600), (None, 3600, 3600), (None, 3601, 4 * 3600), (None, 90000, 7 * 86400),
    (None, 8 * 86400, 14 * 86400), ("buckets:30m,2h", 100, 1800), ("factor:2", 100, 240),
    ("exact", 99.2, 100),
])
def test_time_limit_model(spec, duration, limit):
    assert parse_time_limit_model(spec)(duration) == limit


@pytest.mark.parametrize("spec", ["factor:0.5", "factor:x", "buckets:", "guess"])
def test_time_limit_model_rejects_nonsense(spec):
    with pytest.raises(ValidationError) as e:
        parse_time_limit_model(spec)
    assert e.value.field == "time_limit_model"


def test_trace_time_limits_are_kept_when_given(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("id,submit_s,duration_s,gpus,time_limit_s\na,0,100,1,500\nb,0,100,1,\n")
    trace = load_trace(p, model=parse_time_limit_model("exact"))
    assert [j.time_limit_s for j in trace.jobs] == [500, 100]

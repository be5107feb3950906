"""Results in the store on SQLite and a real PostgreSQL: bulk insert all or nothing, queries by
tenant/series/job/time, per-series summary and latest values."""

from __future__ import annotations

import pytest

from gpufleet.results.model import Result, TestCase
from gpufleet.store.results import add_results, latest_values, query_cases, query_results, series_summary
from tests.results.builders import make_result


@pytest.fixture
def engine(db_engine):
    return db_engine


def test_round_trip_with_provenance(engine):
    r = make_result(2874.1, at=100.0, job_id=7, attempt=2, commit="abc", labels={"commit": "abc"},
                    params={"batch": 256}, valid=False, invalid_reason="throttled", conditions={"sm_mhz": {"min": 900}})
    add_results(engine, [r], [TestCase("s", "t", "failed", job_id=7, attempt=2, tenant="vision", user="alice", at=1.0)])
    [back] = query_results(engine)
    assert back.id is not None
    back.id = None
    assert back == r
    assert [c.outcome for c in query_cases(engine, job_id=7)] == ["failed"]


def test_queries_by_tenant_series_job_and_time(engine):
    a = [make_result(float(i), at=float(i), job_id=1) for i in range(5)]
    b = [make_result(float(i), at=float(i), tenant="speech", benchmark="bert", job_id=2) for i in range(3)]
    add_results(engine, a + b)
    assert len(query_results(engine)) == 8
    assert len(query_results(engine, tenant="speech")) == 3
    assert [r.value for r in query_results(engine, series=a[0].series, since=3.0)] == [3.0, 4.0]
    assert len(query_results(engine, job_id=2)) == 3
    summary = {s["series"]: s["results"] for s in series_summary(engine, tenant="vision")}
    assert summary == {a[0].series: 5}
    latest = {s: v for s, _, _, _, v in latest_values(engine)}
    assert latest == {a[0].series: 4.0, b[0].series: 2.0}


def test_a_failing_insert_stores_nothing(engine):
    good = [make_result(1.0, at=1.0) for _ in range(3)]
    bad = Result("b", "m", 1.0, at=1.0)
    bad.series = None  # NOT NULL
    with pytest.raises(Exception):
        add_results(engine, good + [bad])
    assert query_results(engine) == []


def test_the_detection_query_reads_valid_rows_with_what_detection_needs(engine):
    from gpufleet.store.results import query_for_detection

    rs = [make_result(100.0 + i, at=float(i), job_id=i + 1, commit=f"c{i}", node=f"n{i % 2}") for i in range(4)]
    rs[2].valid = False
    add_results(engine, rs + [make_result(1.0, at=9.0, tenant="speech")])
    got = query_for_detection(engine, "vision")
    assert [(r.value, r.commit, r.node, r.job_id, r.higher_is_better, r.tenant) for r in got] == [
        (100.0, "c0", "n0", 1, True, "vision"), (101.0, "c1", "n1", 2, True, "vision"),
        (103.0, "c3", "n1", 4, True, "vision")]
    assert got[0].series == rs[0].series and got[0].sku == "A100-SXM4-80GB" and got[0].id is not None
    assert len(query_for_detection(engine)) == 4

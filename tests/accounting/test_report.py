"""Exact GPU-seconds for a known history: preempted and requeued attempts, a gang over two nodes,
attempts crossing both period boundaries and one still running, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from gpufleet.accounting import usage_report
from gpufleet.domain import JobState
from tests.accounting.conftest import end, lab, requeue, run, submit

START, END, NOW = 1000.0, 2000.0, 2500.0


@pytest.fixture
def history(store):
    lab(store)
    a = submit(store, "alice", "vision", 1000.0, gpus=4)
    run(store, a, 1100.0, ("dgx1", (0, 1, 2, 3)))           # 4 a100 x 400 s inside
    end(store, a, 1500.0)
    b = submit(store, "bob", "vision", 800.0, gpus=2)
    run(store, b, 900.0, ("dgx1", (4, 5)))                  # attempt 1 from before the period
    requeue(store, b, 1200.0)                               # ... preempted: 2 x 200 s inside
    run(store, b, 1300.0, ("dgx1", (4, 5)))                 # attempt 2, still running at NOW
    c = submit(store, "carol", "speech", 1400.0, gpus=2, nodes=2)
    run(store, c, 1500.0, ("desk-001", (0, 1)), ("desk-002", (0, 1)))  # gang: 4 rtx4090 x 300 s
    end(store, c, 1800.0, JobState.FAILED)
    d = submit(store, "carol", "speech", 1850.0)
    run(store, d, 1900.0, ("dgx1", (6,)))                   # crosses the end: 1 x 100 s inside
    end(store, d, 2300.0)
    e = submit(store, "carol", "speech", 50.0)
    run(store, e, 100.0, ("dgx1", (7,)))                    # all before the period
    end(store, e, 500.0)
    f = submit(store, "alice", "vision", 2050.0)
    run(store, f, 2100.0, ("dgx1", (7,)))                   # all after it
    return store


def by(report, *keys):
    return {tuple(g.key[k] for k in keys): g.gpu_s for g in report.groups}


def test_exact_gpu_seconds_per_tenant_user_model_and_kind(history):
    engine = history.engine
    r = usage_report(engine, START, END, NOW, ["tenant"])
    assert by(r, "tenant") == {("vision",): 1600 + 400 + 1400, ("speech",): 1200 + 100}
    assert r.total.gpu_s == 4700
    r = usage_report(engine, START, END, NOW, ["user"])
    assert by(r, "user") == {("alice",): 1600, ("bob",): 1800, ("carol",): 1300}
    r = usage_report(engine, START, END, NOW, ["gpu_model", "kind"])
    assert by(r, "gpu_model", "kind") == {("a100", "server"): 3500, ("rtx4090", "desktop"): 1200}
    r = usage_report(engine, START, END, NOW, ["tenant", "gpu_model"])
    assert by(r, "tenant", "gpu_model") == {("speech", "a100"): 100, ("speech", "rtx4090"): 1200,
                                            ("vision", "a100"): 3400}
    r = usage_report(engine, START, END, NOW, ["node"])
    assert by(r, "node") == {("dgx1",): 3500, ("desk-001",): 600, ("desk-002",): 600}


def test_attempts_and_waits_count_each_attempt_once(history):
    r = usage_report(history.engine, START, END, NOW, ["user"])
    g = {x.key["user"]: x for x in r.groups}
    assert (g["bob"].attempts, g["bob"].started, g["bob"].wait_s) == (2, 1, 100.0)  # waited 1200 -> 1300
    assert (g["carol"].attempts, g["carol"].started, g["carol"].wait_s) == (2, 2, 100.0 + 50.0)  # gang once
    assert (g["alice"].attempts, g["alice"].wait_s) == (1, 100.0)


def test_a_running_attempt_is_cut_at_now_and_a_tenant_sees_its_own(history):
    r = usage_report(history.engine, START, 3000.0, NOW, ["tenant"], tenant="vision")
    # bob's attempt 2 runs 1300 -> NOW; alice's later job 2100 -> NOW
    assert by(r, "tenant") == {("vision",): 1600 + 400 + 2 * 1200 + 400}
    assert r.total.gpu_s == 1600 + 400 + 2400 + 400
    assert r.total.busy_gpu_s is None and r.idle == []  # nothing was sampled


def test_an_empty_period_reports_nothing_and_a_later_one_only_what_still_runs(history):
    r = usage_report(history.engine, 0.0, 50.0, 7000.0, ["tenant"])
    assert r.groups == [] and r.total.gpu_s == 0
    r = usage_report(history.engine, 5000.0, 6000.0, 7000.0, ["user"])
    assert by(r, "user") == {("alice",): 1000, ("bob",): 2000}  # the two still running

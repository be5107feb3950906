"""The health tables on SQLite and on a real PostgreSQL (own throwaway database)."""

from __future__ import annotations

import pytest

from gpufleet.health.remediation import Phase, Remediation, StepRecord
from gpufleet.health.tickets import TicketRef
from gpufleet.health.types import CheckRecord, NodeHealth, Status
from gpufleet.store import Store, make_engine, migrate
from gpufleet.store.health import HealthRepo, group_runs
from tests.conftest import DATABASES, database_url


@pytest.fixture(params=DATABASES)
def repos(request, tmp_path):
    """Two repositories on two engines over ONE database (as two server processes)."""
    with database_url(request.param, tmp_path, "health") as url:
        engines = [make_engine(url), make_engine(url)]
        migrate(engines[0])
        try:
            yield HealthRepo(Store(engines[0])), HealthRepo(Store(engines[1]))
        finally:
            for e in engines:
                e.dispose()


def run(node, run_id, at, *statuses):
    recs = tuple(CheckRecord(node, f"c{i}", at + i * 0.001, st, f"m{i}", {"gpus": {"0": {"temp_c": 40}}}, 0.01, run_id)
                 for i, st in enumerate(statuses))
    return NodeHealth(node, at, run_id, recs)


def test_results_latest_and_history(repos):
    repo, _ = repos
    repo.add_results(run("dgx1", "r1", 100.0, Status.OK, Status.OK))
    repo.add_results(run("dgx1", "r2", 200.0, Status.OK, Status.FAIL))
    repo.add_results(run("desk", "r3", 150.0, Status.WARN))
    latest = repo.latest("dgx1")
    assert latest.run_id == "r2" and latest.status is Status.FAIL and [r.check for r in latest.records] == ["c0", "c1"]
    assert latest.records[0].facts == {"gpus": {"0": {"temp_c": 40}}}
    assert [r.run_id for r in repo.results("dgx1")] == ["r2", "r2", "r1", "r1"]
    assert [r.node for r in repo.results(status="fail")] == ["dgx1"]
    assert len(repo.results(since=150.0)) == 3
    assert [h.run_id for h in group_runs(repo.results())] == ["r2", "r3", "r1"]
    assert repo.latest("nowhere") is None
    assert repo.prune_results(before=160.0) == 3


def test_remediation_roundtrip(repos):
    repo, other = repos
    rem = Remediation("dgx1", "health: xid", True, 3, started_at=10.0, updated_at=10.0)
    repo.save_remediation(rem)
    assert rem.id is not None and other.open_remediation("dgx1").phase is Phase.DRAIN
    rem.steps.append(StepRecord(1, Phase.DRAIN, True, "drained", 11.0, 0.1, {"a": 1}))
    rem.phase, rem.round, rem.ended_at = Phase.ESCALATED, 3, 99.0
    rem.ticket = TicketRef("jira", "LAB-1", "http://j/LAB-1")
    repo.save_remediation(rem)
    back = other.remediations("dgx1")[0]
    assert back.to_dict() == rem.to_dict()
    assert other.open_remediation("dgx1") is None


def test_schedule_claim_is_compare_and_set_across_processes(repos):
    a, b = repos
    a.add_schedule("nightly", "0 3 * * *", "UTC", ["gpufleet", "health", "run"], None, 1.0, "admin")
    with pytest.raises(Exception, match="exists"):
        b.add_schedule("nightly", "0 3 * * *", "UTC", ["x"], None, 1.0)
    assert a.claim_slot("nightly", 3600.0, None, 3601.0) is True
    assert b.claim_slot("nightly", 3600.0, None, 3601.0) is False  # the other process lost the race
    a.record_outcome("nightly", 3600.0, "ok", 1.5)
    (s,) = b.schedules()
    assert (s["last_slot"], s["last_outcome"], s["last_duration_s"], s["created_by"]) == (3600.0, "ok", 1.5, "admin")
    assert b.claim_slot("nightly", 7200.0, 3600.0, 7201.0) is True
    b.remove_schedule("nightly")
    assert a.schedules() == []

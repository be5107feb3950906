"""The control loop's gate before the scheduler (plain data in and out): dependencies hold jobs
back or doom them, an array's %N lets at most N of its jobs run."""

from __future__ import annotations

import pytest

from gpufleet.control.gating import gate
from gpufleet.domain import JobState
from tests.scheduler.builders import make_job, make_running

S = JobState


def in_group(job, gid):
    job.extra["group_id"] = gid
    return job


@pytest.mark.parametrize("deps,held,doomed", [
    ([("afterok", 1, S.RUNNING)], "Dependency: waiting for job 1 (afterok:1, RUNNING)", None),
    ([("afterok", 1, S.SUCCEEDED)], None, None),
    ([("afterok", 1, S.FAILED)], None, "DependencyNeverSatisfied: job 1 ended FAILED (afterok:1)"),
    ([("afternotok", 1, S.SUCCEEDED)], None, "DependencyNeverSatisfied: job 1 ended SUCCEEDED (afternotok:1)"),
    ([("afternotok", 1, S.TIMEOUT)], None, None),
    ([("afterany", 1, S.CANCELLED), ("afterok", 2, S.PENDING)],
     "Dependency: waiting for job 2 (afterok:2, PENDING)", None),
    ([("afterok", 2, S.PENDING), ("afterok", 3, S.FAILED)], None,
     "DependencyNeverSatisfied: job 3 ended FAILED (afterok:3)"),  # one that can never be met decides
    ([("afterany", 9, None)], None, "DependencyNeverSatisfied: job 9 does not exist (afterany:9)"),
])
def test_dependencies(deps, held, doomed):
    job = make_job()
    g = gate([job], [], {job.id: deps}, {})
    assert g.held.get(job.id) == held and g.doomed.get(job.id) == doomed
    assert (job in g.eligible) is (held is None and doomed is None)


def test_array_limit_counts_running_members_and_admits_in_order():
    running = [in_group(make_running(on="n1"), 7)]
    pending = [in_group(make_job(), 7) for _ in range(3)] + [in_group(make_job(), 8), make_job()]
    g = gate(pending, running, {}, {7: 2})
    assert g.eligible == [pending[0], pending[3], pending[4]]  # one slot left in group 7; 8 has no limit
    assert g.held == {p.id: "JobArrayTaskLimit: 2 of group 7 running (%2)" for p in pending[1:3]}


def test_a_job_waiting_for_a_dependency_takes_no_array_slot():
    a, b = in_group(make_job(), 7), in_group(make_job(), 7)
    g = gate([a, b], [], {a.id: [("afterok", 1, S.RUNNING)]}, {7: 1})
    assert g.eligible == [b] and a.id in g.held

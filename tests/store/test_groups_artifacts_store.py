"""Job groups, dependencies and artifact records in the store, on SQLite and a real PostgreSQL:
a group is written with its jobs in one transaction, dependencies come back with their targets'
states in one query, artifact usage/expiry/oldest and policies."""

from __future__ import annotations

import pytest

from gpufleet.domain import Job, JobSpec, JobState
from gpufleet.domain.artifact import Artifact, ArtifactPolicy
from gpufleet.store import Store
from gpufleet.store import groups
from gpufleet.store.artifacts import ArtifactRepo


@pytest.fixture
def store(db_engine):
    return Store(db_engine)


def job(**kw) -> Job:
    return Job(id=0, spec=JobSpec(command=("true",), **kw), submitted_at=1.0, extra={})


def test_group_with_its_jobs_and_dependencies(store):
    first = job()
    store.add_jobs([first], 1.0, "admin")
    members = [job(dependency=(("afterok", first.id), ("afterany", 99999))) for _ in range(2)]
    for i, m in enumerate(members):
        m.extra["group_index"] = i
    g = {"kind": "array", "name": "t", "tenant": "default", "user": "admin", "created_at": 1.0, "spec": {},
         "axes": {"array": "0-2%1"}, "cells": [{"index": i, "cell": {}, "job_id": None, "reason": ""} for i in range(2)]
         + [{"index": 2, "cell": {}, "job_id": None, "reason": "no node"}], "max_running": 1, "dependency": []}
    store.add_jobs(members, 1.0, "admin", group=g)
    row = groups.get_group(store.engine, g["id"])
    assert [c["job_id"] for c in row["cells"]] == [members[0].id, members[1].id, None]
    assert groups.group_of_job(store.engine, members[1].id) == g["id"]
    assert groups.array_limits(store.engine, [g["id"]]) == {g["id"]: 1}
    assert {j.extra.get("group_id") for j in store.active_jobs()} == {None, g["id"]}
    deps = groups.dependencies(store.engine, [m.id for m in members])
    assert deps[members[0].id] == [("afterok", first.id, JobState.PENDING), ("afterany", 99999, None)]
    assert [x["id"] for x in groups.list_groups(store.engine, "default")] == [g["id"]]
    assert groups.list_groups(store.engine, "speech") == []


def art(path: str, size: int, at: float, tenant="vision", expires=None, job_id=1) -> Artifact:
    return Artifact(job_id=job_id, attempt=1, rank=0, path=path, size=size, sha256="0" * 64, sha1="0" * 40,
                    store="local", location=path, tenant=tenant, user="alice", created_at=at, expires_at=expires)


def test_artifact_records_usage_expiry_and_policies(store):
    j = job(tenant="default")
    store.add_jobs([j], 1.0, "admin")
    repo = ArtifactRepo(store.engine)
    a = repo.add(art("a", 10, 1.0, expires=5.0, job_id=j.id))
    repo.add(art("a", 12, 2.0, job_id=j.id))  # collected again: replaces the first
    b = repo.add(art("b", 30, 3.0, tenant="speech", job_id=j.id))
    assert [x.size for x in repo.for_job(j.id)] == [12, 30]
    assert repo.usage() == {"vision": 12, "speech": 30} and repo.bytes_used("vision") == 12
    assert repo.expired(10.0) == [] and a.id
    repo.mark_deleted([b.id], 4.0)
    assert repo.usage() == {"vision": 12} and [x.path for x in repo.oldest("vision")] == ["a"]
    assert len(repo.for_job(j.id, live=False)) == 2
    repo.put_policy(ArtifactPolicy("vision", 100, 60.0))
    repo.put_policy(ArtifactPolicy("vision", 200, None))
    assert repo.policy("vision") == ArtifactPolicy("vision", 200, None) and repo.policy("x") is None

"""Artifacts through the API: collected when an attempt ends (every attempt, every rank) into the
store with sha256 and size, listed, downloaded, quota and expiry applied by gc (fake engine with
files per run, the local store in the data directory, fake clock)."""

from __future__ import annotations

import hashlib

SECONDS = "GPUFLEET_FAKE_SECONDS"


def run_with_files(api, files: dict[int, dict[str, bytes]], headers=None, **spec):
    spec.setdefault("artifacts", ["out/*.json", "logs/**"])
    spec.setdefault("env", {SECONDS: "1"})
    job_id = api.submit(headers=headers, **spec).json()["id"]
    api.server.executor.world.files[(job_id, 1)] = files
    api.cycle()
    api.clock.advance(2)
    api.cycle()
    api.server.ctx.artifacts.flush()  # collected by a worker thread
    assert api.job(job_id)["state"] == "SUCCEEDED"
    return job_id


def test_collected_at_the_end_listed_with_sha256_and_downloaded(api):
    files = {0: {"out/r.json": b'{"v": 1}\n', "out/skip.txt": b"no", "logs/a/b.log": b"x" * 5000},
             1: {"out/r.json": b'{"v": 2}\n'}}
    job_id = run_with_files(api, files, nodes=2, gpus=1, gpu_model="rtx4090")
    body = api.get(f"/api/v1/jobs/{job_id}/artifacts", headers=api.admin).json()
    got = {(a["rank"], a["path"]): a for a in body["artifacts"]}
    assert set(got) == {(0, "out/r.json"), (0, "logs/a/b.log"), (1, "out/r.json")}
    assert got[(0, "logs/a/b.log")]["size"] == 5000
    assert got[(1, "out/r.json")]["sha256"] == hashlib.sha256(b'{"v": 2}\n').hexdigest()
    r = api.get(f"/api/v1/jobs/{job_id}/artifacts/file", params={"path": "out/r.json", "rank": 1}, headers=api.admin)
    assert r.status_code == 200 and r.content == b'{"v": 2}\n'
    assert r.headers["X-Checksum-Sha256"] == hashlib.sha256(r.content).hexdigest()
    r = api.get(f"/api/v1/jobs/{job_id}/artifacts/file", params={"path": "out/r.json"}, headers=api.admin)
    assert r.content == b'{"v": 1}\n'  # rank 0 unless asked
    assert api.get(f"/api/v1/jobs/{job_id}/artifacts/file", params={"path": "out/skip.txt"},
                   headers=api.admin).status_code == 404
    kept = api.server.settings.home / "artifacts" / "default" / str(job_id) / "attempt-1" / "rank-1" / "out" / "r.json"
    assert kept.read_bytes() == b'{"v": 2}\n'


def test_every_attempt_keeps_its_own_artifacts(api):
    job_id = api.submit(artifacts=["*.txt"], env={SECONDS: "10"}, gpus=8, gpu_model="a100").json()["id"]
    world = api.server.executor.world
    world.files[(job_id, 1)] = {0: {"a.txt": b"first"}}
    world.files[(job_id, 2)] = {0: {"a.txt": b"second"}}
    api.cycle()
    api.post("/api/v1/nodes/dgx1/drain", json={"reason": "test"}, headers=api.admin)
    api.server.store.set_action(job_id, "requeue", "test requeue")
    api.cycle()
    api.cycle()
    api.post("/api/v1/nodes/dgx1/resume", headers=api.admin)
    api.cycle()
    api.clock.advance(11)
    api.cycle()
    api.server.ctx.artifacts.flush()
    rows = api.get(f"/api/v1/jobs/{job_id}/artifacts", headers=api.admin).json()["artifacts"]
    assert [(a["attempt"], a["path"]) for a in rows] == [(1, "a.txt"), (2, "a.txt")]
    latest = api.get(f"/api/v1/jobs/{job_id}/artifacts/file", params={"path": "a.txt"}, headers=api.admin)
    assert latest.content == b"second"
    first = api.get(f"/api/v1/jobs/{job_id}/artifacts/file", params={"path": "a.txt", "attempt": 1}, headers=api.admin)
    assert first.content == b"first"


def test_quota_refuses_what_does_not_fit_and_gc_applies_expiry_then_quota(api):
    r = api.put("/api/v1/artifacts/policies/default", json={"max_bytes": "10K", "retention": "1h"}, headers=api.admin)
    assert r.status_code == 200 and r.json() == {"tenant": "default", "max_bytes": 10240, "retention_s": 3600}
    a = run_with_files(api, {0: {"out/a.json": b"a" * 6000}})
    b = run_with_files(api, {0: {"out/b.json": b"b" * 6000}})  # over the quota: not stored
    assert len(api.get(f"/api/v1/jobs/{a}/artifacts", headers=api.admin).json()["artifacts"]) == 1
    assert api.get(f"/api/v1/jobs/{b}/artifacts", headers=api.admin).json()["artifacts"] == []
    assert api.post("/api/v1/artifacts/gc", headers=api.admin).json()["deleted"] == 0  # nothing expired
    api.clock.advance(3601)
    assert api.post("/api/v1/artifacts/gc", headers=api.admin).json() == {"deleted": 1, "bytes": 6000, "failed": 0}
    assert api.get(f"/api/v1/jobs/{a}/artifacts", headers=api.admin).json()["artifacts"] == []
    assert not list((api.server.settings.home / "artifacts").rglob("a.json"))
    # a lowered quota: gc removes the oldest until the tenant fits
    api.put("/api/v1/artifacts/policies/default", json={"max_bytes": "100K"}, headers=api.admin)
    c = run_with_files(api, {0: {"out/c.json": b"c" * 3000}})
    d = run_with_files(api, {0: {"out/d.json": b"d" * 3000}})
    api.put("/api/v1/artifacts/policies/default", json={"max_bytes": 4000}, headers=api.admin)
    assert api.post("/api/v1/artifacts/gc", headers=api.admin).json()["deleted"] == 1
    assert api.get(f"/api/v1/jobs/{c}/artifacts", headers=api.admin).json()["artifacts"] == []
    assert len(api.get(f"/api/v1/jobs/{d}/artifacts", headers=api.admin).json()["artifacts"]) == 1
    pol = api.get("/api/v1/artifacts/policies", headers=api.admin).json()["policies"]
    assert {"tenant": "default", "max_bytes": 4000, "retention_s": 3600, "used_bytes": 3000} in pol


def test_bad_policy_input_names_the_field(api):
    for body, field in (({"max_bytes": "lots"}, "max_bytes"), ({"retention": "soon"}, "retention")):
        r = api.put("/api/v1/artifacts/policies/default", json=body, headers=api.admin)
        assert r.status_code == 422 and r.json()["field"] == field
    assert api.put("/api/v1/artifacts/policies/nope", json={}, headers=api.admin).json()["field"] == "tenant"
    r = api.submit(artifacts=["/etc/*"])
    assert r.status_code == 422 and r.json()["field"] == "artifacts"

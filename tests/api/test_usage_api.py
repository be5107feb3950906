"""GET /api/v1/usage and /usage/export through the API (fake engine, fake clock): a job's GPU-hours,
a still-running one cut at now, tenants seeing only their own, bad input naming the field, and the
sacct export replayed by the simulator's importer."""

from __future__ import annotations

import pytest

from gpufleet.sim.importers import load_trace


def ran(api, headers, gpus, seconds, model="a100"):
    """A job of `gpus` GPUs that runs `seconds` on the fake clock and exits 0."""
    job_id = api.submit(headers=headers, gpus=gpus, gpu_model=model).json()["id"]
    api.cycle()
    api.clock.advance(seconds)
    api.server.executor.finish(job_id)
    api.cycle()
    assert api.job(job_id)["state"] == "SUCCEEDED"
    return job_id


@pytest.fixture
def two_tenants(api):
    alice, bob = api.token("alice", "vision"), api.token("bob", "speech")
    t0 = api.clock()
    ran(api, alice, 2, 3600)                                   # 2 GPU-hours of a100 for vision
    ran(api, bob, 1, 1800, "rtx4090")                          # 0.5 for speech
    running = api.submit(headers=bob, gpus=1).json()["id"]     # still running: 1 x 900 s so far
    api.cycle()
    api.clock.advance(900)
    return alice, bob, t0, running


def usage(api, headers, **params):
    r = api.get("/api/v1/usage", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_usage_per_tenant_and_model_with_quota_share(api, two_tenants):
    alice, bob, t0, _ = two_tenants
    body = usage(api, api.admin, **{"from": t0, "to": "now", "by": ["tenant", "gpu_model"]})
    got = {(g["key"]["tenant"], g["key"]["gpu_model"]): g["gpu_hours"] for g in body["groups"]}
    assert got == {("vision", "a100"): 2.0, ("speech", "rtx4090"): 0.5, ("speech", "a100"): 0.25}
    assert body["total"]["gpu_hours"] == 2.75
    vision = next(g for g in body["groups"] if g["key"]["tenant"] == "vision")
    length_h = (body["end"] - body["start"]) / 3600
    assert vision["quota_share"] == pytest.approx(2.0 / (4 * length_h))  # vision: a100 quota 4
    assert vision["share"] == pytest.approx(2.0 / 2.75)
    assert any("no busy GPU data" in n for n in body["notes"])


def test_a_tenant_sees_its_own_usage_only(api, two_tenants):
    alice, bob, t0, _ = two_tenants
    mine = usage(api, bob, **{"from": t0, "by": "user"})
    assert {g["key"]["user"] for g in mine["groups"]} == {"bob"}
    assert mine["total"]["gpu_hours"] == 0.75
    assert api.get("/api/v1/usage", params={"tenant": "vision"}, headers=bob).status_code == 403
    assert api.get("/api/v1/usage", params={"tenant": "nope"}, headers=bob).status_code == 403  # same answer
    assert api.get("/api/v1/usage/export", params={"tenant": "vision"}, headers=bob).status_code == 403
    text = api.get("/api/v1/usage/export", params={"from": t0}, headers=bob).text
    assert "alice" not in text and "|bob|speech|" in text


@pytest.mark.parametrize("params,field", [
    ({"by": "label:"}, "by"), ({"by": "label:a b"}, "by"), ({"by": "colour"}, "by"),
    ({"from": "yesterday"}, "from"), ({"to": "2026-13-01"}, "to"), ({"from": "now", "to": "-1d"}, "to"),
])
def test_bad_input_is_422_naming_the_field(api, params, field):
    r = api.get("/api/v1/usage", params=params, headers=api.admin)
    assert r.status_code == 422 and r.json()["field"] == field, r.text
    r = api.get("/api/v1/usage/export", params={"format": "csv"}, headers=api.admin)
    assert r.status_code == 422 and r.json()["field"] == "format"


def test_sacct_export_replays_in_the_simulator(api, two_tenants, tmp_path):
    alice, bob, t0, running = two_tenants
    text = api.get("/api/v1/usage/export", params={"from": t0}, headers=api.admin).text
    lines = text.splitlines()
    assert lines[0].startswith("JobID|JobName|User|Account|State|Submit|Start|End|Elapsed|")
    assert len(lines) == 4 and f"{running}|" in lines[3] and "|RUNNING|" in lines[3]
    path = tmp_path / "lab.sacct"
    path.write_text(text)
    trace = load_trace(path, "sacct")
    got = sorted((j.gpus, j.duration_s, j.tenant, j.gpu_model) for j in trace.jobs)
    assert got == [(1, 1800.0, "speech", "rtx4090"), (2, 3600.0, "vision", "a100")]  # running: skipped
    assert trace.skipped == 1

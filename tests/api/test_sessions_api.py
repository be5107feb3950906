"""WebSocket /api/v1/jobs/{id}/pty (api/routers/sessions.py): who may open a terminal in a job.
Tenant isolation: another tenant's job is not found, another user's of the same tenant refused;
the owner gets past the checks to the engine (the fake engine has no sessions: said so)."""

from __future__ import annotations

import json

import pytest


def refusal(api, job_id, headers):
    with api.http.websocket_connect(f"/api/v1/jobs/{job_id}/pty", headers=headers) as ws:
        return json.loads(ws.receive_text())


@pytest.fixture
def alices_job(api):
    alice = api.token("alice", "vision")
    job = api.submit(headers=alice, command=["sleep", "60"], env={"GPUFLEET_FAKE_SECONDS": "60"}).json()["id"]
    api.cycle()
    assert api.job(job)["state"] == "RUNNING"
    return job, alice


def test_a_foreign_tenant_cannot_open_anothers_pty(api, alices_job):
    job, _ = alices_job
    msg = refusal(api, job, api.token("bob", "speech"))
    assert msg["status"] == 404 and "not found" in msg["error"]  # not even revealed


def test_another_user_of_the_same_tenant_is_refused(api, alices_job):
    job, _ = alices_job
    msg = refusal(api, job, api.token("carol", "vision"))
    assert msg["status"] == 403 and "alice" in msg["error"]


def test_no_token_is_refused(api, alices_job):
    assert refusal(api, alices_job[0], {})["status"] == 401


def test_the_owner_reaches_the_engine(api, alices_job):
    job, alice = alices_job
    msg = refusal(api, job, alice)
    assert (msg["status"], msg["field"]) == (422, "job") and "not available on the fake engine" in msg["error"]
    assert refusal(api, job, api.admin)["status"] == 422  # an admin may too

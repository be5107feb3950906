"""Attempts through the API (fake engine, fake clock): a requeued job runs again, GET /jobs/{id}
lists its attempts, /logs?attempt=N serves each run's own output, unknown attempts are 422."""

from __future__ import annotations

from gpufleet.domain import JobState, NodeState, transition
from tests.api.test_bad_input_api import fields_of

BIG = 2**63


def requeued_then_done(api) -> int:
    env = {"GPUFLEET_FAKE_OUTPUT": "run $GPUFLEET_ATTEMPT restarts $GPUFLEET_RESTART_COUNT",
           "GPUFLEET_FAKE_RESTARTED_SECONDS": "5"}
    job_id = api.submit(env=env).json()["id"]
    api.cycle()
    assert api.job(job_id)["state"] == "RUNNING"
    api.server.ctx.store.set_action(job_id, "requeue", "health check failed", JobState.RUNNING)
    api.cycle()  # signals it
    api.cycle()  # observes it stopped: requeued, and placed again at once (attempt 2)
    return job_id


def logs(api, job_id, **params):
    return api.get(f"/api/v1/jobs/{job_id}/logs", params=params, headers=api.admin)


def test_a_requeued_job_has_two_attempts_each_with_its_own_logs(api):
    job_id = requeued_then_done(api)
    assert api.job(job_id)["state"] == "RUNNING"
    running = logs(api, job_id)
    assert running.content == b"run 2 restarts 1\n" and running.headers["X-Gpufleet-Attempt"] == "2"
    api.clock.advance(6)
    api.cycle()
    job = api.job(job_id)
    assert job["state"] == "SUCCEEDED" and job["restarts"] == 1
    a1, a2 = job["attempts"]
    assert (a1["n"], a1["state"], a2["n"], a2["state"], a2["exit_code"]) == (1, "PENDING", 2, "SUCCEEDED", 0)
    assert "health check failed" in a1["reason"] and a1["nodes"] and a1["ended_at"] is not None
    assert [(e["new"], e["attempt"]) for e in job["events"]][-3:] == [("PENDING", 1), ("RUNNING", 2),
                                                                     ("SUCCEEDED", 2)]
    first = logs(api, job_id, attempt=1)
    assert first.content == b"run 1 restarts 0\n" and first.headers["X-Gpufleet-Complete"] == "1"
    assert first.headers["X-Gpufleet-Attempt"] == "1"
    latest = logs(api, job_id)
    assert latest.content == logs(api, job_id, attempt=2).content == b"run 2 restarts 1\n"


def test_between_attempts_the_latest_logs_are_the_previous_run(api):
    store = api.server.ctx.store
    job_id = api.submit(gpus=8, gpu_model="a100", env={"GPUFLEET_FAKE_OUTPUT": "run $GPUFLEET_ATTEMPT"}).json()["id"]
    api.cycle()
    store.set_action(job_id, "requeue", "node down", JobState.RUNNING)
    api.cycle()
    dgx = store.get_node("dgx1")
    store.save_node(dgx, transition(dgx, NodeState.DRAIN, "maintenance", api.clock()))
    api.cycle()  # requeued; the only a100 node is drained: it waits
    job = api.job(job_id)
    assert (job["state"], [a["n"] for a in job["attempts"]]) == ("PENDING", [1])
    r = logs(api, job_id)
    assert r.status_code == 200 and r.content == b"run 1\n" and r.headers["X-Gpufleet-Attempt"] == "1"
    assert r.headers["X-Gpufleet-Complete"] == "1"
    assert logs(api, job_id, attempt=2).status_code == 422  # not started yet


def test_an_attempt_that_does_not_exist_is_422_naming_attempt(api):
    job_id = requeued_then_done(api)
    for bad in (3, 0, -1, BIG):
        r = logs(api, job_id, attempt=bad)
        assert r.status_code == 422, (bad, r.text)
        assert "attempt" in fields_of(r), r.text
    api.submit(gpus=8, gpu_model="a100")  # takes dgx1 (or waits for it)
    blocked = api.submit(gpus=8, gpu_model="a100").json()["id"]  # cannot run before it
    api.cycle()
    r = logs(api, blocked, attempt=1)
    assert r.status_code == 422 and "has not run" in r.json()["message"], r.text
    r = logs(api, blocked)
    assert r.status_code == 200 and "has not started" in r.headers["X-Gpufleet-Note"]

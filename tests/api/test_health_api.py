"""Health through the real API, store and control loop (fake executor, fake NVML), REAL Ansible,
a real burn-in process and a real HTTP receiver for the ticket: the issue's end-to-end story."""

from __future__ import annotations

import sys
import time

import pytest
from fastapi.testclient import TestClient

from gpufleet.api.app import create_app
from gpufleet.main import build
from gpufleet.services.health import build_health_service
from gpufleet.services.schedules import ScheduleService
from gpufleet.settings import load_settings
from tests.api.conftest import Api
from tests.conftest import EXAMPLE_LAB, ROOT
from tests.health.receiver import Receiver

pytestmark = pytest.mark.e2e


@pytest.fixture
def lab(tmp_path, clock):
    with Receiver(routes={("POST", "/tickets"): lambda r: (201, {"id": "OPS-1"})}) as rx:
        settings = load_settings(home=tmp_path, executor="fake", inventory=str(EXAMPLE_LAB))
        server = build(settings)
        api = Api(server, clock)
        markers = tmp_path / "markers"
        markers.mkdir()
        cfg = {
            "interval": "1m", "nvml": "fake", "checks": {"disk": {"enabled": False}, "memory": {"enabled": False}},
            "remediation": {"max_rounds": 2, "playbook": str(ROOT / "deploy/ansible/remediate.yml"),
                            "connection_local": True, "extravars": {"gpufleet_marker_dir": str(markers)},
                            "burn_in": {"command": [sys.executable, "-c", "import sys; print('burn-in', sys.argv[1])", "{node}"],
                                        "timeout": "1m"}},
            "ticket": {"kind": "webhook", "url": f"{rx.url}/tickets"},
        }
        svc = build_health_service(server.ctx, cfg, home=tmp_path)
        app = create_app(server.ctx, health_service=svc, schedule_service=ScheduleService(server.ctx, svc.repo))
        api.http = TestClient(app)
        api.svc, api.rx, api.markers = svc, rx, markers
        yield api
        svc.close()
        server.executor.close()


def node(api, name):
    return api.get(f"/api/v1/nodes/{name}", headers=api.admin).json()


def wait_for(predicate, timeout=120.0, step=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if step:
            step()
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_xid_drains_requeues_heals_and_resumes(lab):
    r = lab.post("/api/v1/health/run", json={}, headers=lab.admin)
    assert r.status_code == 200 and all(h["status"] == "ok" for h in r.json())
    job_id = lab.submit(command=["train"], gpus=2, gpu_model="a100", env={"GPUFLEET_FAKE_SECONDS": "100000"}).json()["id"]
    lab.cycle()
    assert lab.job(job_id)["nodes"] == ["dgx1"]

    assert lab.post("/api/v1/health/faults", json={"node": "dgx1", "fault": "xid", "gpu": 3, "xid": 79},
                    headers=lab.admin).status_code == 204
    lab.svc.tick()  # one health interval
    dgx = node(lab, "dgx1")
    assert dgx["state"] == "drain" and "XID 79 (GPU has fallen off the bus)" in dgx["reason"]
    lab.cycle()  # the loop acts on the requeue decision
    lab.cycle()
    job = lab.job(job_id)
    assert job["state"] == "PENDING" and job["nodes"] in ([], None)  # requeued, nothing lands on dgx1

    lab.svc.workers.wait(timeout=180)
    rems = lab.get("/api/v1/health/remediations?node=dgx1", headers=lab.admin).json()
    assert rems[0]["outcome"] == "resumed", rems
    assert [s["phase"] for s in rems[0]["steps"]] == ["drain", "wait_idle", "runbook", "burn_in", "recheck", "resume"]
    assert "burn-in dgx1" in rems[0]["steps"][3]["message"]
    assert (lab.markers / "dgx1.round1").exists()
    assert node(lab, "dgx1")["state"] == "up"
    lab.cycle()
    assert lab.job(job_id)["state"] == "RUNNING" and lab.job(job_id)["nodes"] == ["dgx1"]

    show = lab.get("/api/v1/health/nodes/dgx1", headers=lab.admin).json()
    assert show["latest"]["status"] == "ok" and sum(show["failures_per_week"].values()) == 1
    assert any(r["check"] == "xid" and r["status"] == "fail" for r in show["history"])
    summary = {n["node"]: n for n in lab.get("/api/v1/health/nodes", headers=lab.admin).json()}
    assert sum(summary["dgx1"]["failures_per_week"].values()) == 1 and summary["desk-001"]["status"] == "ok"


def test_persistent_fault_escalates_to_a_ticket(lab):
    lab.svc.tick()
    lab.post("/api/v1/health/faults", json={"node": "desk-002", "fault": "missing_gpu", "gpu": 0}, headers=lab.admin)
    lab.svc.tick()
    lab.svc.workers.wait(timeout=180)
    (rem,) = lab.get("/api/v1/health/remediations?node=desk-002", headers=lab.admin).json()
    assert rem["outcome"] == "escalated" and rem["round"] == 2 and rem["ticket"]["id"] == "OPS-1"
    assert node(lab, "desk-002")["state"] == "drain"
    (ticket,) = [r for r in lab.rx.requests if r.path == "/tickets"]
    assert ticket.body["node"] == "desk-002" and "missing 1x rtx4090" in ticket.body["reason"]
    lab.svc.tick()  # stays drained, no second incident
    assert len(lab.get("/api/v1/health/remediations?node=desk-002", headers=lab.admin).json()) == 1


def test_errors_and_permissions(lab):
    user = lab.token("carol", "vision")
    assert lab.post("/api/v1/health/run", json={}, headers=user).status_code == 403
    assert lab.post("/api/v1/health/run", json={"nodes": ["nope"]}, headers=lab.admin).status_code == 404
    r = lab.post("/api/v1/health/faults", json={"node": "dgx1", "fault": "meteor"}, headers=lab.admin)
    assert r.status_code == 422 and r.json()["field"] == "fault"
    assert lab.get("/api/v1/health/nodes/nope", headers=lab.admin).status_code == 404


def test_schedules_api_and_recurring_runner(lab, tmp_path):
    out = tmp_path / "ran"
    body = {"name": "touch", "cron": "*/5 * * * *",
            "command": [sys.executable, "-c", f"open({str(out)!r}, 'a').write('x')"]}
    r = lab.post("/api/v1/schedules", json=body, headers=lab.admin)
    assert r.status_code == 201, r.text
    assert lab.post("/api/v1/schedules", json=body, headers=lab.admin).status_code == 409
    bad = lab.post("/api/v1/schedules", json={**body, "name": "x", "cron": "every day"}, headers=lab.admin)
    assert bad.status_code == 422 and bad.json()["field"] == "cron"
    runner = lab.http.app.state.schedules.runner()
    lab.clock.advance(5 * 60)
    assert len(runner.tick()) == 1 and runner.tick() == []
    runner2 = lab.http.app.state.schedules.runner()  # as after a restart
    assert runner2.tick() == []
    assert out.read_text() == "x"
    (s,) = lab.get("/api/v1/schedules", headers=lab.admin).json()
    assert s["last_outcome"] == "ok" and s["next_slot"] > s["last_slot"]
    assert lab.delete("/api/v1/schedules/touch", headers=lab.admin).status_code == 204
    assert lab.get("/api/v1/schedules", headers=lab.admin).json() == []

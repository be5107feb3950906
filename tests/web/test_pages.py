"""Every page and action of the dashboard, through a signed-in TestClient (fake engine, fake clock)."""

from __future__ import annotations

import re

import pytest


def test_queue_lists_pending_and_running_with_reasons_and_filters(lab):
    admin = lab.server.admin_token
    alice = lab.token("alice", "vision")
    running = lab.submit(alice, gpus=8, gpu_model="a100", tenant="vision", name="big")
    lab.cycle()
    blocked = lab.submit(admin, gpus=8, gpu_model="a100", name="waits")
    desk = lab.submit(admin, gpus=1, gpu_model="rtx4090", name="small")
    lab.cycle()
    b = lab.browser(admin)
    page = b.get("/queue").text
    for j in (running, blocked, desk):
        assert f'href="/jobs/{j}"' in page
    reason = lab.ctx.store.get_job(blocked).reason
    assert reason and reason in page  # the full reason, not cut
    only = b.get("/queue?tenant=vision").text
    assert f'href="/jobs/{running}"' in only and f'href="/jobs/{blocked}"' not in only
    assert f'href="/jobs/{blocked}"' not in b.get("/queue?user=alice").text
    by_model = b.get("/queue?model=rtx4090").text
    assert f'href="/jobs/{desk}"' in by_model and f'href="/jobs/{running}"' not in by_model
    assert f'href="/jobs/{running}"' in b.get("/queue?state=running").text
    assert f'href="/jobs/{running}"' not in b.get("/queue?state=pending").text


def test_queue_pages_are_bounded(lab, monkeypatch):
    from gpufleet.services import dashboard

    admin = lab.server.admin_token
    ids = [lab.submit(admin, gpus=8, gpu_model="a100") for _ in range(5)]
    b = lab.browser(admin)
    monkeypatch.setattr(dashboard, "PAGE", 2)
    first = b.get("/queue").text
    shown = [int(x) for x in re.findall(r'href="/jobs/(\d+)"', first)]
    assert shown == ids[::-1][:2]
    older = re.search(r'href="(\?[^"]*before=\d+[^"]*)" id="older"', first).group(1).replace("&amp;", "&")
    assert [int(x) for x in re.findall(r'href="/jobs/(\d+)"', b.get("/queue" + older).text)] == ids[::-1][2:4]


def test_bad_filter_is_422_naming_the_field(lab):
    b = lab.browser(lab.server.admin_token)
    r = b.get("/queue?state=bogus")
    assert r.status_code == 422 and "error: state: unknown state" in r.text
    r = b.get("/queue?before=x")
    assert r.status_code == 422 and "error: before:" in r.text


def test_job_detail_shows_attempts_events_and_streams_logs(lab):
    admin = lab.server.admin_token
    job = lab.submit(admin, gpus=1, command=["echo", "hello"])
    lab.cycle()
    b = lab.browser(admin)
    page = b.get(f"/jobs/{job}").text
    assert 'id="attempts"' in page and "<td>1</td>" in page  # attempt 1
    assert "PENDING" in page and "RUNNING" in page  # the events
    assert f'hx-get="/jobs/{job}/logs?offset=0"' in page
    assert b.get(f"/jobs/{job}/logs?offset=0").status_code == 200
    assert b.get(f"/jobs/{job}/logs?offset=-1").status_code == 422


def test_logs_fragment_escapes_output_and_follows_offsets(lab, monkeypatch):
    from gpufleet.executors.base import LogChunk

    admin = lab.server.admin_token
    job = lab.submit(admin)
    lab.cycle()
    monkeypatch.setattr(lab.server.executor, "logs",
                        lambda j, offset=0, rank=0, attempt=None: LogChunk(b"<script>x</script>\n", offset + 19, False))
    b = lab.browser(admin)
    r = b.get(f"/jobs/{job}/logs?offset=5")
    assert "<script>" not in r.text and "&lt;script&gt;" in r.text
    assert f'hx-get="/jobs/{job}/logs?offset=24"' in r.text
    monkeypatch.setattr(lab.server.executor, "logs",
                        lambda j, offset=0, rank=0, attempt=None: LogChunk(b"", offset, True))
    assert "hx-get" not in b.get(f"/jobs/{job}/logs?offset=24").text  # done: no more polling


def test_cancel_own_job_and_not_another_tenants(lab):
    alice = lab.token("alice", "vision")
    bob = lab.token("bob", "speech")
    mine = lab.submit(alice, tenant="vision", gpus=8, gpu_model="a100")
    theirs = lab.submit(bob, tenant="speech", gpus=8, gpu_model="a100")
    b = lab.browser(alice)
    assert 'id="cancel"' in b.get(f"/jobs/{mine}").text
    r = b.post(f"/jobs/{mine}/cancel")
    assert r.status_code == 303 and r.headers["location"] == f"/jobs/{mine}"
    assert f"job {mine} cancelled" in b.get(f"/jobs/{mine}").text  # the flash message
    assert lab.ctx.store.get_job(mine).state.value == "CANCELLED"
    assert b.post(f"/jobs/{theirs}/cancel").status_code == 404
    assert lab.ctx.store.get_job(theirs).state.value == "PENDING"


def test_admin_cancels_any_running_job(lab):
    alice = lab.token("alice", "vision")
    job = lab.submit(alice, tenant="vision")
    lab.cycle()
    b = lab.browser(lab.server.admin_token)
    b.get(f"/jobs/{job}")
    assert b.post(f"/jobs/{job}/cancel").status_code == 303
    lab.cycle()
    lab.cycle()
    assert lab.ctx.store.get_job(job).state.value == "CANCELLED"


def test_nodes_by_rack_and_kind_with_gpu_holders(lab):
    admin = lab.server.admin_token
    job = lab.submit(admin, gpus=2, gpu_model="a100")
    lab.cycle()
    page = lab.browser(admin).get("/nodes").text
    assert page.index("r01") < page.index("r02") < page.index("no rack")
    assert "server" in page and "desktop" in page and "embedded" in page
    assert page.count(f'href="/jobs/{job}"') == 2  # two GPUs held by the job
    assert "driver 560.35" in page


def test_drain_and_resume_as_admin(lab):
    b = lab.browser(lab.server.admin_token)
    b.get("/nodes")
    r = b.post("/nodes/desk-001/drain", {"reason": "fan noise"})
    assert r.status_code == 303
    node = lab.ctx.store.get_node("desk-001")
    assert node.state.value == "drain" and node.reason == "fan noise"
    page = b.get("/nodes").text
    assert "fan noise" in page and 'id="resume-desk-001"' in page
    assert b.post("/nodes/desk-001/resume").status_code == 303
    assert lab.ctx.store.get_node("desk-001").state.value == "up"


def test_drain_needs_a_reason_and_an_admin(lab):
    b = lab.browser(lab.server.admin_token)
    b.get("/nodes")
    r = b.post("/nodes/desk-001/drain", {"reason": " "})
    assert r.status_code == 422 and "error: reason:" in r.text
    user = lab.browser(lab.token("alice", "vision"))
    assert 'id="drain-desk-001"' not in user.get("/nodes").text
    assert user.post("/nodes/desk-001/drain", {"reason": "mine now"}).status_code == 403
    assert lab.ctx.store.get_node("desk-001").state.value == "up"


def test_booking_create_requested_approve_and_cancel(lab):
    alice = lab.browser(lab.token("alice", "vision"))
    alice.get("/bookings")
    r = alice.post("/bookings", {"start": "+1h", "duration": "4h", "nodes": "desk-001", "name": "demo"})
    assert r.status_code == 303
    page = alice.get("/bookings").text
    assert "approved" in page and "demo" in page
    ok = lab.ctx.store.bookings(approval=None)[0]
    r = alice.post("/bookings", {"start": "+1h", "duration": "3d", "nodes": "desk-002"})
    assert r.status_code == 303
    page = alice.get("/bookings").text
    assert "requested" in page and "waits for an admin" in page
    requested = [b for b in lab.ctx.store.bookings(approval=None) if b.approval == "requested"][0]
    assert alice.post(f"/bookings/{requested.id}/approve").status_code == 403
    admin = lab.browser(lab.server.admin_token)
    admin.get("/bookings")
    assert admin.post(f"/bookings/{requested.id}/approve").status_code == 303
    assert lab.ctx.store.get_booking(requested.id).approval == "approved"
    assert alice.post(f"/bookings/{ok.id}/cancel").status_code == 303
    assert ok.id not in [b.id for b in lab.ctx.store.bookings(approval=None)]


@pytest.mark.parametrize("data,field", [
    ({"start": "soon", "duration": "1h", "nodes": "desk-001"}, "start"),
    ({"start": "+1h", "duration": "1h", "nodes": "nope"}, "nodes"),
    ({"start": "+1h", "duration": "0", "nodes": "desk-001"}, "duration"),
    ({"start": "+1h", "duration": "1h", "gpus": "x"}, "gpus"),
    ({"start": "+1h", "duration": "1h"}, "nodes"),
])
def test_bad_booking_is_422_naming_the_field_and_stores_nothing(lab, data, field):
    b = lab.browser(lab.token("alice", "vision"))
    b.get("/bookings")
    r = b.post("/bookings", data)
    assert r.status_code == 422 and f"error: {field}:" in r.text
    assert lab.ctx.store.bookings(approval=None) == []


def test_usage_health_and_performance_pages(lab):
    admin = lab.server.admin_token
    lab.submit(admin, gpus=2, gpu_model="a100")
    lab.cycle()
    lab.clock.advance(3600)
    lab.cycle()
    b = lab.browser(admin)
    usage = b.get("/usage?from=-1d&by=tenant&by=gpu_model")
    assert usage.status_code == 200 and 'id="usage"' in usage.text and "a100" in usage.text
    assert b.get("/usage?by=bogus").status_code == 422
    health = b.get("/health")
    assert health.status_code == 200 and 'id="remediations"' in health.text and "dgx1" in health.text
    assert b.get("/health?node=dgx1").status_code == 200
    assert b.get("/health?node=nope").status_code == 404
    assert 'id="perf-note"' in b.get("/performance").text


def test_usage_page_shows_busy_idle_and_top_idle_holders_by_label(lab):
    from gpufleet.control.busy import BusySampler
    from gpufleet.health.fake_nvml import FakeNvmlFleet

    fleet = FakeNvmlFleet(lab.ctx.store.nodes())  # every GPU at 0 %: all idle
    lab.server.busy = BusySampler(fleet, lab.ctx.store, lab.server.metrics.add_busy)
    admin = lab.server.admin_token
    job = lab.submit(admin, gpus=2, gpu_model="a100", label={"purpose": "dev"})
    lab.cycle()
    for _ in range(6):
        lab.clock.advance(600)
        lab.cycle()
    page = lab.browser(admin).get("/usage?from=-1d&by=label:purpose").text
    assert ">dev<" in page and "Top idle holders" in page and f'href="/jobs/{job}"' in page
    assert "not sampled" not in page

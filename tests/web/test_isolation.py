"""Tenant isolation in the dashboard, one row per page and action (like tests/api's ISOLATION):
bob (tenant speech, not admin) walks every page and tries every action on what belongs to alice
(tenant vision). Nothing of alice's shows (her job ids, names, users, booking), nothing changes."""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import pytest

from gpufleet.services import results

SECRET = "alice-secret-run"
# (method, path, form, expected status); {job} alice's job, {booking} alice's booking
WEB_ISOLATION = [
    ("GET", "/queue", None, 200),
    ("GET", "/queue?tenant=vision", None, 200),
    ("GET", "/queue?user=alice", None, 200),
    ("GET", "/queue?state=SUCCEEDED", None, 200),
    ("GET", "/jobs/{job}", None, 404),
    ("GET", "/jobs/{job}?attempt=1", None, 404),
    ("GET", "/jobs/{job}/logs", None, 404),
    ("POST", "/jobs/{job}/cancel", {}, 404),
    ("GET", "/nodes", None, 200),
    ("POST", "/nodes/dgx1/drain", {"reason": "mine"}, 403),
    ("POST", "/nodes/dgx1/resume", {}, 403),
    ("GET", "/bookings", None, 200),
    ("POST", "/bookings", {"start": "+1h", "duration": "1h", "nodes": "desk-001"}, 422),  # clashes
    ("POST", "/bookings", {"start": "+1h", "duration": "1h", "nodes": "desk-002", "tenant": "vision"}, 422),
    ("POST", "/bookings/{booking}/cancel", {}, 404),
    ("POST", "/bookings/{booking}/approve", {}, 403),
    ("POST", "/bookings/{booking}/reject", {}, 403),
    ("GET", "/usage?from=-1d", None, 200),
    ("GET", "/usage?from=-1d&by=user", None, 200),
    ("GET", "/usage?tenant=vision", None, 403),
    ("GET", "/health", None, 200),
    ("GET", "/performance", None, 200),
    ("GET", "/performance?series={series}", None, 200),  # alice's series: no trend, no points
    ("GET", "/performance?series={series}&tenant=vision", None, 200),
]
SERIES = f"{SECRET}/images_per_s/batch=256/A100-SXM4-80GB/550.54"


def _alice_world(lab):
    alice = lab.token("alice", "vision")
    job = lab.submit(alice, tenant="vision", gpus=2, gpu_model="a100", name=SECRET)
    lab.cycle()
    lab.clock.advance(600)
    lab.cycle()
    r = lab.api.post("/api/v1/bookings", json={"start": "+1h", "duration": "20h", "nodes": ["desk-001"],
                                                "name": "alice-booking"},
                     headers={"Authorization": f"Bearer {alice}"})
    assert r.status_code == 201, r.text
    lines = [json.dumps({"benchmark": SECRET, "metric": "images_per_s", "value": 2800.0 - (60 if i > 8 else 0) + i % 3,
                         "unit": "img/s", "params": {"batch": 256}, "node": f"perfnode{i % 3}", "sku": "A100-SXM4-80GB",
                         "driver": "550.54", "timestamp": 1_790_000_000 + i * 3600}) for i in range(16)]
    assert results.import_lines(lab.ctx, lab.ctx.store.get_user("alice"), lines) == 16
    return job, r.json()["id"]


def _snapshot(lab):
    s = lab.ctx.store
    return ([(j.id, j.state, j.extra.get("pending_action")) for j in s.list_jobs(limit=100)],
            [(n.name, n.state) for n in s.nodes()],
            [(b.id, b.approval) for b in s.bookings(approval=None)])


@pytest.mark.parametrize("method,path,data,status", WEB_ISOLATION, ids=[f"{m} {p}" for m, p, *_ in WEB_ISOLATION])
def test_foreign_tenant_sees_and_changes_nothing(lab, method, path, data, status):
    job, booking = _alice_world(lab)
    bob = lab.browser(lab.token("bob", "speech"))
    before = _snapshot(lab)
    url = path.format(job=job, booking=booking, series=quote(SERIES))
    r = bob.get(url) if method == "GET" else bob.post(url, data)
    assert r.status_code == status, r.text[:500]
    text = r.text
    if "{series}" in path:  # the heading repeats the series asked for; nothing else may name it
        text = re.sub(r"<h1>.*?</h1>", "", text, flags=re.S)
        assert "No valid results in this series" in text
    for leak in (SECRET, "alice-booking", f'href="/jobs/{job}"', ">alice<", ">vision<", "<polyline", "perfnode"):
        assert leak not in text, leak
    if method == "POST" and status == 422 and "desk-001" in str(data):
        assert "by another tenant" in r.text
    after = _snapshot(lab)
    if not (method == "POST" and status < 400):
        assert after == before


def test_foreign_tenant_sees_taken_gpus_but_not_whose(lab):
    job, _ = _alice_world(lab)
    page = lab.browser(lab.token("bob", "speech")).get("/nodes").text
    assert page.count('<span class="gpu other"') == 2 and f"/jobs/{job}" not in page


def test_admin_sees_everything(lab):
    job, booking = _alice_world(lab)
    admin = lab.browser(lab.server.admin_token)
    assert SECRET in admin.get("/queue").text
    assert SECRET in admin.get(f"/jobs/{job}").text
    assert "alice-booking" in admin.get("/bookings").text
    assert SECRET in admin.get("/performance").text
    assert "<polyline" in admin.get(f"/performance?series={quote(SERIES)}").text

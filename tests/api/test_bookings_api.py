"""Bookings are a shared resource: non-admin bookings beyond the tenant's limits wait for an
admin's approval and are not in force until then; conflicts do not reveal other tenants' ids."""

from gpufleet.domain import BookingLimits, parse_booking_limits

import pytest

from gpufleet.domain import ValidationError

H = 3600


def book(api, headers, **body):
    body.setdefault("start", "now")
    body.setdefault("duration", "1h")
    return api.post("/api/v1/bookings", json=body, headers=headers)


@pytest.fixture
def limits(api):
    api.server.ctx.booking_limits = {
        "*": BookingLimits(max_duration_s=4 * H, max_horizon_s=7 * 86400, node_hours_per_week=10),
        "speech": BookingLimits(max_duration_s=None, max_horizon_s=None, node_hours_per_week=None),
    }


@pytest.mark.parametrize("body,limit", [
    ({"duration": "5h", "nodes": ["desk-001"]}, "max_duration"),
    ({"start": "+7d", "duration": "1h", "nodes": ["desk-001"]}, "max_horizon"),
    ({"duration": "4h", "nodes": ["desk-001", "desk-002", "orin1"]}, "node_hours_per_week"),
])
def test_beyond_a_limit_is_requested_not_in_force(api, limits, body, limit):
    alice = api.token("alice", "vision")
    r = book(api, alice, **body)
    assert r.status_code == 201, r.text
    b = r.json()
    assert b["approval"] == "requested" and limit in b["note"]
    assert api.server.store.bookings() == []  # the scheduler and the engines see nothing
    job = api.submit(headers=alice, booking=b["id"])
    assert job.status_code == 422 and "requested" in job.json()["message"]
    listed = api.get("/api/v1/bookings", headers=alice).json()
    assert [(x["id"], x["approval"]) for x in listed] == [(b["id"], "requested")]


def test_within_limits_is_in_force_and_node_hours_add_up(api, limits):
    alice = api.token("alice", "vision")
    first = book(api, alice, duration="4h", nodes=["desk-001", "desk-002"]).json()  # 8 node-hours
    assert first["approval"] == "approved"
    second = book(api, alice, start="+5h", duration="2h", nodes=["orin1"]).json()  # 10: still ok
    assert second["approval"] == "approved"
    third = book(api, alice, start="+8h", duration="1h", nodes=["orin1"]).json()  # 11: beyond
    assert third["approval"] == "requested" and "node_hours_per_week" in third["note"]


def test_admins_and_unbounded_tenants_are_not_limited(api, limits):
    assert book(api, api.admin, tenant="vision", duration="3d", nodes=["dgx1"]).json()["approval"] == "approved"
    bob = api.token("bob", "speech")
    assert book(api, bob, duration="3d", start="+10d", nodes=["desk-001"]).json()["approval"] == "approved"


def test_admin_approves_or_rejects(api, limits):
    alice = api.token("alice", "vision")
    b = book(api, alice, duration="5h", nodes=["desk-001"]).json()
    assert api.post(f"/api/v1/bookings/{b['id']}/approve", headers=alice).status_code == 403
    r = api.post(f"/api/v1/bookings/{b['id']}/approve", headers=api.admin)
    assert r.status_code == 200 and r.json()["approval"] == "approved"
    assert [x.id for x in api.server.store.bookings()] == [b["id"]]
    assert api.submit(headers=alice, booking=b["id"]).status_code == 201
    assert api.post(f"/api/v1/bookings/{b['id']}/approve", headers=api.admin).status_code == 409
    c = book(api, alice, start="+6h", duration="5h", nodes=["desk-002"]).json()
    r = api.post(f"/api/v1/bookings/{c['id']}/reject", headers=api.admin)
    assert r.status_code == 200 and r.json()["approval"] == "rejected"
    assert api.post(f"/api/v1/bookings/{c['id']}/approve", headers=api.admin).status_code == 409
    actions = [r["action"] for r in api.get("/api/v1/audit", headers=api.admin).json()]
    assert {"book-request", "book-approve", "book-reject"} <= set(actions)


def test_approval_checks_the_nodes_are_still_free(api, limits):
    alice = api.token("alice", "vision")
    b = book(api, alice, duration="5h", nodes=["desk-001"]).json()
    assert book(api, api.admin, tenant="speech", nodes=["desk-001"]).json()["approval"] == "approved"
    r = api.post(f"/api/v1/bookings/{b['id']}/approve", headers=api.admin)
    assert r.status_code == 422 and r.json()["field"] == "nodes"


def test_a_conflict_does_not_reveal_another_tenants_booking_id(api):
    alice = api.token("alice", "vision")
    bob = api.token("bob", "speech")
    theirs = book(api, bob, nodes=["desk-001"]).json()
    r = book(api, alice, nodes=["desk-001"])
    assert r.status_code == 422 and r.json()["field"] == "nodes"
    assert f"booking {theirs['id']}" not in r.json()["message"] and "another tenant" in r.json()["message"]
    r = book(api, bob, nodes=["desk-001"])  # one's own booking is named
    assert f"booking {theirs['id']}" in r.json()["message"]


def test_settings_parse_with_per_tenant_overrides():
    lim = parse_booking_limits({"max_duration": "8h", "node_hours_per_week": 40,
                                "tenants": {"vision": {"node_hours_per_week": None}}})
    assert lim["*"] == BookingLimits(8 * H, 14 * 86400, 40.0)
    assert lim["vision"] == BookingLimits(8 * H, 14 * 86400, None)
    for bad, field in [({"max_duration": "forever"}, "bookings.max_duration"),
                       ({"node_hours": 3}, "bookings.node_hours"),
                       ({"tenants": {"v": {"node_hours_per_week": -1}}}, "bookings.tenants.v.node_hours_per_week")]:
        with pytest.raises(ValidationError) as e:
            parse_booking_limits(bad)
        assert e.value.field == field


def test_submitting_with_another_tenants_booking_reads_like_no_booking(api):
    """The answer for another tenant's booking id is the answer for an id that does not exist."""
    alice = api.token("alice", "vision")
    bob = api.token("bob", "speech")
    theirs = book(api, bob, nodes=["desk-001"]).json()
    foreign = api.submit(headers=alice, booking=theirs["id"])
    missing = api.submit(headers=alice, booking=theirs["id"] + 1000)
    assert foreign.status_code == missing.status_code == 422
    assert foreign.json()["field"] == missing.json()["field"] == "booking"
    assert foreign.json()["message"].replace(str(theirs["id"]), "N") == \
        missing.json()["message"].replace(str(theirs["id"] + 1000), "N")

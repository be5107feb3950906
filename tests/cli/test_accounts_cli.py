"""token list/revoke/create --expires, user set, booking approve/reject through the real CLI."""

import json

from gpufleet.domain import BookingLimits


def test_token_lifecycle_and_user_set(gf_server):
    cli = gf_server.cli
    r = cli("token", "create", "--user", "alice", "--tenant", "vision", "--expires", "30d", "--note", "ci",
            "--json")
    assert r.returncode == 0, r.stderr
    t = json.loads(r.stdout)
    rows = json.loads(cli("token", "list", "--json").stdout)
    mine = next(x for x in rows if x["id"] == t["id"])
    assert mine["note"] == "ci" and mine["expires_at"] and mine["user"] == "alice"
    table = cli("token", "list").stdout
    assert "LAST USED" in table and "alice" in table
    r = cli("token", "create", "--user", "alice", "--tenant", "speech")
    assert r.returncode == 2 and r.stderr.startswith("error: tenant:") and "user set" in r.stderr
    r = cli("user", "set", "alice", "--tenant", "speech", token=t["token"])
    assert r.returncode == 1 and "admin" in r.stderr  # 403: not an admin
    assert cli("user", "set", "alice", "--tenant", "speech").stdout.strip() == "alice tenant=speech admin=no"
    assert cli("token", "revoke", str(t["id"]), token=t["token"]).returncode == 0  # one's own
    r = cli("jobs", token=t["token"])
    assert r.returncode == 1 and "revoked" in r.stderr


def test_booking_request_then_approve(gf_server):
    cli = gf_server.cli
    gf_server.server.ctx.booking_limits = {"*": BookingLimits(max_duration_s=3600)}
    alice = json.loads(cli("token", "create", "--user", "alice", "--tenant", "vision", "--json").stdout)["token"]
    r = cli("book", "--nodes", "desk-001", "--duration", "2h", token=alice)
    assert r.returncode == 0, r.stderr
    bid = int(r.stdout.split()[0])
    assert "requested, not in force" in r.stderr and "max_duration" in r.stderr
    assert "requested" in cli("bookings", token=alice).stdout
    assert cli("booking", "approve", str(bid), token=alice).returncode == 1  # 403
    r = cli("booking", "approve", str(bid))
    assert r.returncode == 0 and r.stdout.startswith(f"{bid} approved")
    rows = json.loads(cli("bookings", "--json", token=alice).stdout)
    assert [(b["id"], b["approval"]) for b in rows] == [(bid, "approved")]

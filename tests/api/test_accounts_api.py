"""Token lifecycle (list, revoke, expiry, last use) and `user set` through the API."""


def token_of(api, user, tenant=None, **extra):
    body = {"user": user, **({"tenant": tenant} if tenant else {}), **extra}
    r = api.post("/api/v1/tokens", json=body, headers=api.admin)
    assert r.status_code == 201, r.text
    t = r.json()
    return t, {"Authorization": f"Bearer {t['token']}"}


def test_list_shows_lifecycle_and_never_secrets(api):
    t, alice = token_of(api, "alice", "vision", note="laptop", expires="30d")
    assert t["expires_at"] == api.clock() + 30 * 86400
    rows = api.get("/api/v1/tokens", headers=api.admin).json()
    mine = next(r for r in rows if r["id"] == t["id"])
    assert mine["user"] == "alice" and mine["tenant"] == "vision" and mine["note"] == "laptop"
    assert mine["created_at"] == api.clock() and mine["revoked_at"] is None and mine["last_used_at"] is None
    assert all("token" not in r for r in rows)
    assert {r["user"] for r in rows} >= {"admin", "alice"}  # the admin sees every token
    own = api.get("/api/v1/tokens", headers=alice).json()
    assert [r["id"] for r in own] == [t["id"]]  # a user sees their own


def test_revoked_token_stops_working_at_once(api):
    t, alice = token_of(api, "alice", "vision")
    assert api.get("/api/v1/jobs", headers=alice).status_code == 200  # now cached for 10 s
    r = api.post(f"/api/v1/tokens/{t['id']}/revoke", headers=api.admin)
    assert r.status_code == 200 and r.json()["revoked_at"] == api.clock()
    assert api.get("/api/v1/jobs", headers=alice).status_code == 401  # not after the cache expires


def test_a_user_revokes_their_own_token_only(api):
    t1, alice = token_of(api, "alice", "vision")
    t2, bob = token_of(api, "bob", "speech")
    assert api.post(f"/api/v1/tokens/{t1['id']}/revoke", headers=bob).status_code == 404
    assert api.get("/api/v1/jobs", headers=alice).status_code == 200
    assert api.post(f"/api/v1/tokens/{t2['id']}/revoke", headers=bob).status_code == 200
    assert api.get("/api/v1/jobs", headers=bob).status_code == 401
    actions = [(r["user"], r["action"]) for r in api.get("/api/v1/audit", headers=api.admin).json()]
    assert ("bob", "token-revoke") in actions


def test_expired_token_is_refused(api):
    t, alice = token_of(api, "alice", "vision", expires="1h")
    assert api.get("/api/v1/jobs", headers=alice).status_code == 200
    api.clock.advance(3600)
    api.http.app.state.token_cache.clear()  # as 10 s of wall time would (the cache is capped by expiry)
    assert api.get("/api/v1/jobs", headers=alice).status_code == 401


def test_cache_never_outlives_the_expiry(api):
    t, alice = token_of(api, "alice", "vision", expires="90s")
    api.clock.advance(89.5)  # 0.5 s left: cached for at most that long
    assert api.get("/api/v1/jobs", headers=alice).status_code == 200
    deadline = api.http.app.state.token_cache[t["token"]][0]
    import time
    assert deadline - time.monotonic() <= 0.5


def test_last_used_is_written_at_most_once_a_minute(api):
    t, alice = token_of(api, "alice", "vision")
    store = api.server.store

    def last_used():
        return store.get_token(t["id"]).last_used_at

    cache = api.http.app.state.token_cache
    api.get("/api/v1/jobs", headers=alice)
    first = api.clock()
    assert last_used() == first
    api.clock.advance(30)
    cache.clear()
    api.get("/api/v1/jobs", headers=alice)
    assert last_used() == first  # within the minute: not written again
    api.clock.advance(31)
    cache.clear()
    api.get("/api/v1/jobs", headers=alice)
    assert last_used() == api.clock()


def test_token_create_never_changes_an_existing_user(api):
    token_of(api, "alice", "vision")
    r = api.post("/api/v1/tokens", json={"user": "alice", "tenant": "speech"}, headers=api.admin)
    assert r.status_code == 422 and r.json()["field"] == "tenant"
    r = api.post("/api/v1/tokens", json={"user": "alice", "tenant": "vision", "admin": True}, headers=api.admin)
    assert r.status_code == 422 and r.json()["field"] == "admin"
    assert api.server.store.get_user("alice").tenant == "vision"
    assert not api.server.store.get_user("alice").admin
    t, _ = token_of(api, "alice")  # no tenant: the user's own
    assert t["tenant"] == "vision"
    assert api.post("/api/v1/tokens", json={"user": "carol"}, headers=api.admin).status_code == 422
    assert api.post("/api/v1/tokens", json={"user": "carol", "tenant": "vision", "expires": "soon"},
                    headers=api.admin).json()["field"] == "expires"


def test_user_set_moves_tenant_and_admin_audited_and_at_once(api):
    _, alice = token_of(api, "alice", "vision")
    assert api.get("/api/v1/whoami", headers=alice).json()["tenant"] == "vision"  # cached
    r = api.patch("/api/v1/users/alice", json={"tenant": "speech", "admin": True}, headers=api.admin)
    assert r.status_code == 200 and r.json() == {"name": "alice", "tenant": "speech", "admin": True}
    me = api.get("/api/v1/whoami", headers=alice).json()
    assert (me["tenant"], me["admin"]) == ("speech", True)
    assert api.patch("/api/v1/users/alice", json={"tenant": "ghost"}, headers=api.admin).json()["field"] == "tenant"
    assert api.patch("/api/v1/users/nobody", json={"admin": True}, headers=api.admin).status_code == 404
    rows = api.get("/api/v1/audit?action=user-set", headers=api.admin).json()
    assert rows[0]["target"] == "user/alice" and rows[0]["detail"]["was_tenant"] == "vision"


def test_users_listing(api):
    _, alice = token_of(api, "alice", "vision")
    assert [u["name"] for u in api.get("/api/v1/users", headers=alice).json()] == ["alice"]
    names = {u["name"] for u in api.get("/api/v1/users", headers=api.admin).json()}
    assert {"admin", "alice"} <= names

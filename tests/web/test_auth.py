"""Sign-in, the session cookie, CSRF on every action, sign-out, revocation."""

from __future__ import annotations

import pytest

from tests.web.conftest import CSRF

PAGES = ["/", "/queue", "/jobs/1", "/jobs/1/logs", "/nodes", "/bookings", "/usage", "/health", "/performance"]
# every action the dashboard has (what CSRF must guard); {job} / {booking} filled in per test
ACTIONS = [("/jobs/{job}/cancel", {}), ("/nodes/dgx1/drain", {"reason": "x"}), ("/nodes/dgx1/resume", {}),
           ("/bookings", {"start": "+1h", "duration": "1h", "nodes": "desk-002"}),
           ("/bookings/{booking}/cancel", {}), ("/bookings/{booking}/approve", {}),
           ("/bookings/{booking}/reject", {}), ("/logout", {})]


@pytest.mark.parametrize("path", PAGES)
def test_pages_need_sign_in(lab, path):
    r = lab.browser().http.get(path)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/login")


def test_sign_in_sets_an_opaque_strict_httponly_cookie(lab):
    token = lab.server.admin_token
    b = lab.browser()
    r = b.sign_in(token)
    cookie = r.headers["set-cookie"]
    assert "gpufleet_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert token not in cookie
    assert r.headers["location"] == "/queue"
    assert b.get("/queue").status_code == 200


def test_bad_token_is_refused_and_no_session(lab):
    b = lab.browser()
    page = b.http.get("/login")
    r = b.http.post("/login", data={"token": "nope", "csrf": CSRF.search(page.text).group(1)})
    assert r.status_code == 401 and "token: unknown, revoked or expired" in r.text
    assert "gpufleet_session" not in r.headers.get("set-cookie", "")
    assert b.http.get("/queue").status_code == 303


def test_sign_in_needs_the_login_form_token(lab):
    b = lab.browser()
    b.http.get("/login")
    r = b.http.post("/login", data={"token": lab.server.admin_token, "csrf": "forged"})
    assert r.status_code == 403
    assert b.http.get("/queue").status_code == 303


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil"])
def test_no_open_redirect_after_sign_in(lab, target):
    b = lab.browser()
    page = b.http.get("/login", params={"next": target})
    r = b.http.post("/login", data={"token": lab.server.admin_token, "next": target,
                                     "csrf": CSRF.search(page.text).group(1)})
    assert r.headers["location"] == "/queue"


@pytest.mark.parametrize("path,data", ACTIONS, ids=[p for p, _ in ACTIONS])
@pytest.mark.parametrize("how", ["missing", "wrong", "other-session"])
def test_every_action_refuses_a_bad_csrf_token(lab, path, data, how):
    admin = lab.server.admin_token
    job = lab.submit(admin, gpus=1)
    b = lab.browser(admin)
    booking = lab.api.post("/api/v1/bookings", json={"start": "+1h", "duration": "1h", "nodes": ["desk-001"]},
                           headers=lab.admin_headers).json()["id"]
    other = lab.browser(admin)
    sent = {"missing": None, "wrong": "x" * 43, "other-session": other.csrf}[how]
    body = dict(data, **({"csrf": sent} if sent is not None else {}))
    r = b.http.post(path.format(job=job, booking=booking), data=body)
    assert r.status_code == 403, r.text
    # nothing happened
    assert lab.ctx.store.get_job(job).state.value == "PENDING"
    assert lab.ctx.store.get_node("dgx1").state.value == "up"
    assert len(lab.ctx.store.bookings(approval=None)) == 1
    assert b.get("/queue").status_code == 200  # still signed in


def test_htmx_header_carries_csrf(lab):
    admin = lab.server.admin_token
    job = lab.submit(admin)
    b = lab.browser(admin)
    r = b.http.post(f"/jobs/{job}/cancel", headers={"X-CSRF-Token": b.csrf})
    assert r.status_code == 303
    assert lab.ctx.store.get_job(job).state.value == "CANCELLED"


def test_sign_out_ends_the_session(lab):
    b = lab.browser(lab.server.admin_token)
    old = b.http.cookies.get("gpufleet_session")
    assert b.post("/logout").status_code == 303
    b.http.cookies.set("gpufleet_session", old)  # a copied cookie is worthless after sign-out
    assert b.http.get("/queue").status_code == 303


def test_revoking_the_token_ends_its_sessions(lab):
    token = lab.token("alice", "vision")
    b = lab.browser(token)
    assert b.get("/queue").status_code == 200
    tid = max(t["id"] for t in lab.api.get("/api/v1/tokens", headers=lab.admin_headers).json()
              if t["user"] == "alice")
    assert lab.api.post(f"/api/v1/tokens/{tid}/revoke", headers=lab.admin_headers).status_code == 200
    assert b.http.get("/queue").status_code == 303


@pytest.mark.parametrize("path", ["/login", "/queue", "/jobs/1/logs"])
def test_pages_forbid_inline_scripts_and_framing(lab, path):
    lab.submit(lab.server.admin_token)
    b = lab.browser(lab.server.admin_token)
    r = b.get(path)
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "form-action 'self'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "onsubmit=" not in r.text and "<script>" not in r.text

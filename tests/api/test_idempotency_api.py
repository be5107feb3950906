"""Idempotent submission: the same user + Idempotency-Key returns the same job, even when two
requests race; bad keys are 422 naming the header."""

import threading

import httpx
import pytest

from gpufleet.client import Client
from gpufleet.services import jobs as jobs_svc


def post(api, body, key, headers=None, path="/api/v1/jobs"):
    return api.post(path, json=body, headers={**(headers or api.admin), "Idempotency-Key": key})


def test_same_key_same_job(api):
    r1 = post(api, {"command": ["true"]}, "k-1")
    r2 = post(api, {"command": ["true"]}, "k-1")
    assert (r1.status_code, r2.status_code) == (201, 200)
    assert r1.json()["id"] == r2.json()["id"]
    assert len(api.get("/api/v1/jobs?all=true", headers=api.admin).json()) == 1
    assert post(api, {"command": ["true"]}, "k-2").json()["id"] != r1.json()["id"]


def test_keys_are_per_user(api):
    alice = api.token("alice", "vision")
    bob = api.token("bob", "vision")
    a = post(api, {"command": ["true"]}, "shared", alice).json()
    b = post(api, {"command": ["true"]}, "shared", bob)
    assert b.status_code == 201 and b.json()["id"] != a["id"] and b.json()["user"] == "bob"


def test_batch_key_covers_every_item(api):
    body = [{"command": ["true"]}, {"command": ["false"]}]
    r1 = post(api, body, "batch-1", path="/api/v1/jobs/batch")
    r2 = post(api, body, "batch-1", path="/api/v1/jobs/batch")
    assert (r1.status_code, r2.status_code) == (201, 200)
    assert [j["id"] for j in r1.json()] == [j["id"] for j in r2.json()]
    assert len(api.get("/api/v1/jobs?all=true", headers=api.admin).json()) == 2


@pytest.mark.parametrize("key", ["x" * 129, "has space", "semi;colon", "a#1", "new\\nline", ""])
def test_bad_keys_are_422_naming_the_header(api, key):
    r = post(api, {"command": ["true"]}, key)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "Idempotency-Key"
    assert api.get("/api/v1/jobs?all=true", headers=api.admin).json() == []


def test_a_key_too_long_for_a_batch_is_422(api):
    r = post(api, [{"command": ["true"]}] * 10, "x" * 127, path="/api/v1/jobs/batch")
    assert r.status_code == 422 and r.json()["field"] == "Idempotency-Key"


def test_concurrent_submissions_with_one_key_make_one_job(api, monkeypatch):
    """Both requests pass the 'key unused?' check before either stores: the loser's insert hits the
    unique index and it returns the winner's job."""
    store = api.server.store
    barrier = threading.Barrier(2, timeout=10)
    real = store.jobs_by_key
    calls = {"n": 0}

    def racing_lookup(user, keys):
        calls["n"] += 1
        found = real(user, keys)
        if calls["n"] <= 2:
            barrier.wait()  # both lookups miss, then both insert
        return found

    monkeypatch.setattr(store, "jobs_by_key", racing_lookup)
    results = []

    def go():
        results.append(post(api, {"command": ["true"]}, "race"))

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(r.status_code for r in results) == [200, 201]
    assert len({r.json()["id"] for r in results}) == 1
    assert len(api.get("/api/v1/jobs?all=true", headers=api.admin).json()) == 1


class FlakyTransport(httpx.BaseTransport):
    """Hands requests to the app, but the first response is 'lost': the client sees a connection
    error after the server stored the job (a crash or a dropped connection at the worst moment)."""

    def __init__(self, app_client):
        self.app_client = app_client
        self.keys = []
        self.dropped = False

    def handle_request(self, request):
        self.keys.append(request.headers.get("Idempotency-Key"))
        r = self.app_client.request(request.method, request.url.path, content=request.read(),
                                    headers=dict(request.headers))
        if not self.dropped:
            self.dropped = True
            raise httpx.ReadError("connection reset", request=request)
        return httpx.Response(r.status_code, headers=r.headers, content=r.content)


def test_sdk_sends_a_fresh_key_and_reuses_it_on_retry(api, monkeypatch):
    import gpufleet.client.http as http

    monkeypatch.setattr(http, "RETRY_PAUSE_S", 0.0)
    transport = FlakyTransport(api.http)
    c = Client("http://testserver", api.server.admin_token)
    c._http = httpx.Client(base_url="http://testserver/api/v1", transport=transport,
                           headers={"Authorization": f"Bearer {api.server.admin_token}"})
    job = c.submit({"command": ["true"]})
    assert len(transport.keys) == 2 and transport.keys[0] == transport.keys[1] and len(transport.keys[0]) == 36
    assert len(api.get("/api/v1/jobs?all=true", headers=api.admin).json()) == 1
    assert api.job(job.id)["id"] == job.id
    c.submit({"command": ["true"]})
    assert transport.keys[2] != transport.keys[0]  # a new submission, a new key
    again = c.submit({"command": ["true"]}, idempotency_key="mine")
    assert c.submit({"command": ["true"]}, idempotency_key="mine").id == again.id


def test_service_replay_skips_validation(api):
    """A retry after the booking it named ended still returns the job (it was valid when made)."""
    user = api.server.store.user_for_token(api.server.admin_token)
    j = jobs_svc.submit(api.server.ctx, user, {"command": ["true"]}, key="once")
    api.server.executor.abilities = api.server.executor.abilities  # unchanged engine
    again = jobs_svc.submit(api.server.ctx, user, {"command": ["true"], "gpus": 999}, key="once")
    assert again.id == j.id and again.extra["replayed"]

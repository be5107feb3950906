from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from gpufleet.api.app import create_app
from gpufleet.main import build
from gpufleet.settings import load_settings
from tests.conftest import EXAMPLE_LAB


class Api:
    """A TestClient with the admin token, plus the server behind it (loop, executor, clock)."""

    def __init__(self, server, clock):
        self.server = server
        self.clock = clock
        server.ctx.clock = clock
        server.loop.clock = clock
        server.executor.clock = clock
        self.http = TestClient(create_app(server.ctx, metrics=lambda: (b"ok 1\n", "text/plain")))
        self.admin = {"Authorization": f"Bearer {server.admin_token}"}

    def __getattr__(self, name):
        return getattr(self.http, name)

    def submit(self, headers=None, **spec):
        spec.setdefault("command", ["true"])
        return self.http.post("/api/v1/jobs", json=spec, headers=headers or self.admin)

    def job(self, job_id, headers=None):
        return self.http.get(f"/api/v1/jobs/{job_id}", headers=headers or self.admin).json()

    def cycle(self):
        return self.server.loop.cycle()

    def token(self, user, tenant, admin=False):
        r = self.http.post("/api/v1/tokens", json={"user": user, "tenant": tenant, "admin": admin},
                           headers=self.admin)
        assert r.status_code == 201, r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}


@pytest.fixture
def api(tmp_path, clock):
    settings = load_settings(home=tmp_path, executor="fake", inventory=str(EXAMPLE_LAB))
    server = build(settings)
    yield Api(server, clock)
    server.executor.close()

"""A real app (fake engine, the example lab, a fake clock) and a browser-like TestClient that signs in."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from gpufleet.api.app import create_app
from gpufleet.main import build
from gpufleet.settings import load_settings
from tests.conftest import EXAMPLE_LAB

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Browser:
    """One signed-in user: cookies kept, the CSRF token read from the last page."""

    def __init__(self, app, token: str | None = None):
        self.http = TestClient(app, follow_redirects=False)
        self.csrf = ""
        if token:
            self.sign_in(token)

    def sign_in(self, token: str):
        page = self.http.get("/login")
        r = self.http.post("/login", data={"token": token, "csrf": CSRF.search(page.text).group(1)})
        assert r.status_code == 303, r.text
        self.get("/queue")
        return r

    def get(self, url: str, **kw):
        r = self.http.get(url, **kw)
        if (m := CSRF.search(r.text)):
            self.csrf = m.group(1)
        return r

    def post(self, url: str, data: dict | None = None, csrf: bool = True):
        body = dict(data or {})
        if csrf:
            body["csrf"] = self.csrf
        return self.http.post(url, data=body)


class Lab:
    def __init__(self, server, clock):
        self.server = server
        self.ctx = server.ctx
        server.ctx.clock = clock
        server.loop.clock = clock
        server.executor.clock = clock
        self.clock = clock
        self.app = create_app(server.ctx, health_service=server.health)
        self.api = TestClient(self.app)
        self.admin_headers = {"Authorization": f"Bearer {server.admin_token}"}

    def token(self, user: str, tenant: str, admin: bool = False) -> str:
        r = self.api.post("/api/v1/tokens", json={"user": user, "tenant": tenant, "admin": admin},
                          headers=self.admin_headers)
        assert r.status_code == 201, r.text
        return r.json()["token"]

    def browser(self, token: str | None = None) -> Browser:
        return Browser(self.app, token)

    def submit(self, token: str, **spec) -> int:
        spec.setdefault("command", ["true"])
        r = self.api.post("/api/v1/jobs", json=spec, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def cycle(self):
        return self.server.loop.cycle()


@pytest.fixture
def lab(tmp_path, clock):
    settings = load_settings(home=tmp_path, executor="fake", inventory=str(EXAMPLE_LAB))
    server = build(settings)
    yield Lab(server, clock)
    server.executor.close()

"""Who may read /metrics: its series name every tenant (queue, usage, restarts, lost GPU-hours), so
by default only the scrape token (<home>/metrics.token, for Prometheus) and admins may."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from gpufleet.api.app import create_app
from gpufleet.domain import ValidationError
from gpufleet.settings import load_settings

SCRAPE = "gfm_scrape-secret"


@pytest.fixture
def scraped(api):
    app = create_app(api.server.ctx, metrics=lambda: (b"gpufleet_queue_length 1\n", "text/plain"),
                     metrics_token=SCRAPE)
    return TestClient(app), api


@pytest.mark.parametrize("who,status", [
    (None, 401),
    ("Bearer nope", 401),
    ("Bearer " + SCRAPE + "x", 401),
    ("bob", 403),  # a tenant's user: not the other tenants' numbers
    ("admin", 200),
    ("Bearer " + SCRAPE, 200),
])
def test_metrics_want_the_scrape_token_or_an_admin(scraped, who, status):
    http, api = scraped
    if who == "bob":
        headers = api.token("bob", "speech")
    elif who == "admin":
        headers = api.admin
    else:
        headers = {"Authorization": who} if who else {}
    r = http.get("/metrics", headers=headers)
    assert r.status_code == status, r.text
    assert (b"gpufleet_queue_length" in r.content) == (status == 200)


def test_metrics_auth_none_leaves_it_open(api):
    http = TestClient(create_app(api.server.ctx, metrics=lambda: (b"ok 1\n", "text/plain"), metrics_token=None))
    assert http.get("/metrics").status_code == 200


def test_metrics_auth_setting_is_checked(tmp_path):
    assert load_settings(home=tmp_path).metrics_auth == "token"
    with pytest.raises(ValidationError) as e:
        load_settings(home=tmp_path, metrics_auth="open")
    assert e.value.field == "metrics_auth"

"""`gpufleet health` / `gpufleet schedule` commands against a real HTTP server (uvicorn thread)."""

from __future__ import annotations

import json
import sys

import pytest
import typer
from typer.testing import CliRunner

from gpufleet.api.app import create_app
from gpufleet.cli import health as health_cli
from gpufleet.main import build
from gpufleet.services.health import build_health_service
from gpufleet.services.schedules import ScheduleService
from gpufleet.settings import load_settings
from tests.cli.conftest import serving
from tests.conftest import EXAMPLE_LAB

cli = typer.Typer()
cli.add_typer(health_cli.health_app, name="health")
cli.add_typer(health_cli.schedule_app, name="schedule")


@pytest.fixture
def served(tmp_path, monkeypatch):
    server = build(load_settings(home=tmp_path, executor="fake", inventory=str(EXAMPLE_LAB)))
    svc = build_health_service(server.ctx, {"nvml": "fake", "remediation": {"enabled": False},
                                            "checks": {"disk": {"enabled": False}}})
    app = create_app(server.ctx, health_service=svc, schedule_service=ScheduleService(server.ctx, svc.repo))
    with serving(app) as url:
        monkeypatch.setenv("GPUFLEET_URL", url)
        monkeypatch.setenv("GPUFLEET_TOKEN", server.admin_token)
        yield svc
    svc.close()
    server.executor.close()


def gf(*args: str):
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


def test_health_run_inject_show_nodes(served):
    assert "all 8 checks pass" in gf("health", "run", "dgx1")
    gf("health", "inject", "dgx1", "overheat", "--gpu", "2")
    out = gf("health", "run", "dgx1")
    assert "thermal" in out and "FAIL" in out and "GPU 2: 90 C" in out
    detail = json.loads(gf("health", "show", "dgx1", "--json"))
    assert detail["latest"]["status"] == "fail" and len(detail["history"]) == 16
    assert sum(detail["failures_per_week"].values()) == 1
    table_out = gf("health", "nodes")
    assert "dgx1" in table_out and "FAIL" in table_out
    rows = {n["node"]: n for n in json.loads(gf("health", "nodes", "--json"))}
    assert rows["desk-001"]["status"] is None and rows["dgx1"]["status"] == "fail"


def test_schedule_add_list_remove(served):
    out = gf("schedule", "add", "nightly", "--cron", "0 3 * * *", "--", sys.executable, "-m", "gpufleet", "--help")
    assert "next run" in out
    (s,) = json.loads(gf("schedule", "list", "--json"))
    assert s["command"] == [sys.executable, "-m", "gpufleet", "--help"] and s["last_outcome"] is None
    assert "nightly" in gf("schedule", "list")
    gf("schedule", "remove", "nightly")
    assert json.loads(gf("schedule", "list", "--json")) == []

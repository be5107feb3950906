"""gpufleet usage (table, --json, --csv, bad input) and usage export -> gpufleet sim --format sacct."""

from __future__ import annotations

import csv
import io
import json

import pytest

from gpufleet.domain import Allocation, JobSpec, Job, JobState, transition


def history(server, clock) -> float:
    """Two finished jobs written through the store on the fake clock: 2 a100 x 1 h (vision),
    1 rtx4090 x 30 min (speech)."""
    store = server.ctx.store
    t0 = clock()
    for tenant, node, gpus, secs in (("vision", "dgx1", (0, 1), 3600), ("speech", "desk-001", (0,), 1800)):
        job = Job(0, JobSpec(command=("true",), gpus=len(gpus), tenant=tenant), user="admin", submitted_at=t0)
        store.add_jobs([job], t0, "admin")
        job.allocation = (Allocation(node, gpus),)
        assert store.save_job(job, JobState.PENDING, transition(job, JobState.RUNNING, "placed", t0 + 60))
        assert store.save_job(job, JobState.RUNNING, transition(job, JobState.SUCCEEDED, "done", t0 + 60 + secs))
    clock.advance(7200)
    return t0


def test_usage_table_json_csv(gf_server, clock):
    t0 = history(gf_server.server, clock)
    cli = gf_server.cli
    r = cli("usage", "--from", str(t0), "--by", "tenant,gpu_model")
    assert r.returncode == 0, r.stderr
    assert "GPU-H" in r.stdout and "OF-QUOTA" in r.stdout and "TOTAL" in r.stdout and "2.50" in r.stdout
    assert "vision" in r.stdout and "rtx4090" in r.stdout and "note:" in r.stderr
    body = json.loads(cli("usage", "--from", str(t0), "--by", "kind", "--json").stdout)
    assert {g["key"]["kind"]: g["gpu_hours"] for g in body["groups"]} == {"server": 2.0, "desktop": 0.5}
    rows = list(csv.reader(io.StringIO(cli("usage", "--from", str(t0), "--csv").stdout)))
    assert rows[0][:2] == ["tenant", "gpu_hours"]
    assert {r[0]: float(r[1]) for r in rows[1:]} == {"speech": 0.5, "vision": 2.0, "TOTAL": 2.5}


def test_usage_bad_input_is_one_line_exit_2(gf_server):
    for args, field in ((("--by", "label:no key"), "by"), (("--from", "soon"), "from"),
                        (("--json", "--csv"), "csv")):
        r = gf_server.cli("usage", *args)
        assert r.returncode == 2, r.stderr
        assert r.stderr.startswith(f"error: {field}:") and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_export_sacct_replays_with_gpufleet_sim(gf_server, clock, tmp_path):
    t0 = history(gf_server.server, clock)
    out = tmp_path / "lab.sacct"
    r = gf_server.cli("usage", "export", "--format", "sacct", "--from", str(t0), "-o", str(out))
    assert r.returncode == 0 and "2 jobs written" in r.stderr, r.stderr
    r = gf_server.cli("sim", "--trace", str(out), "--format", "sacct", "--cluster", "examples/lab.yaml", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["jobs"] == 2, result


def test_submit_label_then_usage_by_label_with_busy_and_idle(gf_server, clock):
    """submit --label -> the usage rows carry it; the fake NVML's utilisation, sampled once a
    control cycle every 10 s, gives BUSY-H/IDLE-H and the top idle holders in the table (the last
    10 s before the end have no reading: the busy share of the readings extends over them)."""
    from gpufleet.control.busy import BusySampler
    from gpufleet.executors.fake import ENV_SECONDS
    from gpufleet.health.fake_nvml import FakeNvmlFleet

    server = gf_server.server
    fleet = FakeNvmlFleet(server.ctx.store.nodes())
    server.busy = BusySampler(fleet, server.ctx.store, server.metrics.add_busy)
    for node in server.ctx.store.nodes():
        for g in node.gpus:
            fleet.set_utilization(node.name, g.index, 50)
    t0 = clock()
    cli = gf_server.cli
    for label in ("purpose=training", "purpose=dev"):
        r = cli("submit", "--label", label, "--gpus", "2", "--gpu-model", "a100", "-e", f"{ENV_SECONDS}=100",
                "--", "python", "train.py")
        assert r.returncode == 0, r.stderr
    for _ in range(12):  # 110 s of control cycles
        server.loop.cycle()
        clock.advance(10)
    body = json.loads(cli("usage", "--from", str(t0), "--by", "label:purpose", "--json").stdout)
    got = {g["key"]["label:purpose"]: g for g in body["groups"]}
    assert set(got) == {"training", "dev"}
    for g in got.values():
        assert g["gpu_s"] == 200.0 and g["busy_gpu_s"] == pytest.approx(100.0) and g["idle_gpu_s"] == pytest.approx(100.0)
    assert len(body["idle"]) == 2 and body["notes"] == []
    table = cli("usage", "--from", str(t0), "--by", "label:purpose").stdout
    assert "Top idle holders" in table and "training" in table and "BUSY-H" in table
    value = server.metrics.registry.get_sample_value
    assert value("gpufleet_gpu_busy_seconds_total", {"tenant": "default", "user": body["idle"][0]["user"],
                                                     "gpu_model": "a100"}) == pytest.approx(180.0)  # readings only


def test_submit_bad_label_is_one_line_exit_2(gf_server):
    r = gf_server.cli("submit", "--label", "no key=1", "--", "true")
    assert r.returncode == 2 and r.stderr.startswith("error: label:"), r.stderr

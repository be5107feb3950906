"""gpufleet usage (table, --json, --csv, bad input) and usage export -> gpufleet sim --format sacct."""

from __future__ import annotations

import csv
import io
import json

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

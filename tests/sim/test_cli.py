"""`gpufleet sim` and `gpufleet sim compare`: JSON keys, plots, exit code 2 on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from gpufleet.cli.sim import app

KEYS = {"jobs", "makespan_s", "avg_jct_s", "median_jct_s", "p99_jct_s", "avg_queue_s", "p99_queue_s",
        "max_queue_s", "gpu_utilization", "avg_fragmentation", "preemptions", "per_tenant", "wall_s"}

CLUSTER = """nodes:
  - {name: dgx, count: 2, gpus: 8, gpu_model: a100, nvlink_groups: 2, nodes_per_rack: 2}
tenants:
  - {name: vision, quota: {a100: 8}, weight: 2}
"""
TRACE = """id,submit_s,duration_s,gpus,tenant,time_limit_s
a,0,100,8,vision,
b,5,50,16,speech,
c,10,20,2,speech,30
d,20,400,1,vision,
"""


@pytest.fixture
def files(tmp_path):
    (tmp_path / "cluster.yaml").write_text(CLUSTER)
    (tmp_path / "trace.csv").write_text(TRACE)
    return tmp_path


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_json_has_the_documented_keys_and_a_plot_is_written(files):
    png = files / "out.png"
    r = invoke("--trace", files / "trace.csv", "--cluster", files / "cluster.yaml", "--policy", "las",
               "--backfill", "--json", "--plot", png)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert KEYS <= set(out)
    assert out["jobs"] == 4 and out["policy"] == "las" and out["backfill"] is True
    assert set(out["per_tenant"]) == {"vision", "speech"}
    assert set(out["per_tenant"]["speech"]) >= {"avg_slowdown", "gpu_time_share"}
    assert sum(v["gpu_time_share"] for v in out["per_tenant"].values()) == pytest.approx(1.0)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_prints_one_table_with_ratios_and_one_plot(files):
    png = files / "cmp.png"
    r = invoke("compare", "--trace", files / "trace.csv", "--cluster", files / "cluster.yaml",
               "--policies", "fifo,sjf+backfill,las", "--json", "--plot", png)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert [row["label"] for row in out["runs"]] == ["fifo", "sjf+backfill", "las"]
    assert out["runs"][0]["jct_ratio_vs_baseline"] == 1.0
    assert out["best"] in {"fifo", "sjf+backfill", "las"}
    assert png.stat().st_size > 1000


def test_human_output_mentions_the_policy(files):
    r = invoke("--trace", files / "trace.csv", "--cluster", files / "cluster.yaml", "--no-progress")
    assert r.exit_code == 0, r.output
    assert "fifo" in r.stdout and "per tenant" in r.stdout


@pytest.mark.parametrize("extra, field", [
    (["--policy", "random"], "policy"),
    (["--format", "parquet"], "format"),
    (["--time-limit-model", "guess"], "time_limit_model"),
    (["--tenant-shares", "some"], "tenant_shares"),
    (["--restart", "later"], "restart"),
    (["--cycle-interval", "-5"], "cycle_interval"),
])
def test_bad_flags_exit_2_naming_the_field(files, extra, field):
    r = invoke("--trace", files / "trace.csv", "--cluster", files / "cluster.yaml", "--json", *extra)
    assert r.exit_code == 2
    assert r.stderr.strip().count("\n") == 0 and f"error: {field}" in r.stderr
    assert "Traceback" not in r.output


def test_bad_files_exit_2_naming_the_field(files):
    (files / "bad.csv").write_text("id,submit_s,duration_s,gpus\nx,0,10,-1\n")
    (files / "bad.yaml").write_text("nodes: [{name: n, gpus: lots}]\n")
    (files / "cfg.yaml").write_text("polcy: las\n")
    cases = [
        (["--cluster", files / "cluster.yaml"], "error: trace: required"),
        (["--trace", files / "nope.csv", "--cluster", files / "cluster.yaml"], "error: trace: no such file"),
        (["--trace", files / "bad.csv", "--cluster", files / "cluster.yaml"], "error: trace line 2: gpus"),
        (["--trace", files / "trace.csv", "--cluster", files / "bad.yaml"], "error: cluster"),
        (["--trace", files / "trace.csv", "--cluster", files / "cluster.yaml", "--config", files / "cfg.yaml"],
         "error: config.polcy"),
    ]
    for args, want in cases:
        r = invoke(*args)
        assert r.exit_code == 2, (args, r.output)
        assert r.stderr.startswith(want), (args, r.stderr)


def test_module_entry_point_turns_usage_errors_into_one_line(files):
    r = subprocess.run([sys.executable, "-m", "gpufleet.cli.sim", "--trace", str(files / "trace.csv"),
                        "--cluster", str(files / "cluster.yaml"), "--bogus"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: No such option: --bogus"


FAILURE_KEYS = {"goodput", "training_time_ratio", "lost_gpu_hours", "restarts", "node_faults",
                "time_to_restart_p50_s", "time_to_restart_p99_s", "failures"}


def test_failure_flags_add_goodput_and_restarts_to_the_json(files):
    base = ["--trace", files / "trace.csv", "--cluster", files / "cluster.yaml", "--json"]
    plain = json.loads(invoke(*base).stdout)
    assert FAILURE_KEYS <= set(plain) and plain["failures"] is None and plain["goodput"] == 1.0
    args = [*base, "--failure-rate", "10", "--repair-time", "1m", "--checkpoint-interval", "1m",
            "--checkpoint-cost", "5s", "--restart-cost", "30s", "--seed", "4"]
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["failures"]["rate_per_gpu_hour"] == 10 and out["failures"]["restart_cost_s"] == 30
    assert out["node_faults"] > 0 and 0 < out["goodput"] < 1
    assert json.loads(invoke(*args).stdout)["goodput"] == out["goodput"]  # the seed decides
    (files / "model.yaml").write_text("rate_per_gpu_hour: 0.05\nrepair: {distribution: exponential, mean: 1h}\n"
                                      "checkpoint_interval: 1m\nspares: {per_domain: 0}\nseed: 4\n")
    r = invoke(*base, "--failures", files / "model.yaml", "--no-progress")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["failures"]["repair"]["distribution"] == "exponential"
    human = invoke(*base[:-1], "--failure-rate", "0.05", "--no-progress")
    assert human.exit_code == 0 and "goodput" in human.stdout


@pytest.mark.parametrize("extra, field", [
    (["--failure-rate", "-1"], "failure_rate"),
    (["--failure-rate", "1e-5", "--repair-time", "never"], "repair_time"),
    (["--failure-rate", "1e-5", "--spares", "-1"], "spares"),
    (["--restart-cost", "5m"], "failure_rate"),
    (["--failures", "nope.yaml"], "failures"),
])
def test_bad_failure_flags_exit_2_naming_the_field(files, extra, field):
    r = invoke("--trace", files / "trace.csv", "--cluster", files / "cluster.yaml", "--json", *extra)
    assert r.exit_code == 2, r.output
    assert f"error: {field}" in r.stderr and "Traceback" not in r.output

"""A real `gpufleet serve` (local engine, fake NVML fed from the inventory) and the real CLI:
hardware identity shown and usable as constraints; a perf job refused by the prolog on a node with
a stray process runs elsewhere, and the clean run's JSON Lines results appear in `results show`
with the node's SKU, driver and VBIOS; throttling during a run ends it perf_valid=false, and its
results are kept but marked invalid (never in change-point detection)."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import ServerProc, fake_nvml_serve, stop_all_jobs, wait

INVENTORY = {
    "tenants": [{"name": "default", "quota": {"a100": 4}}],
    "nodes": [{"name": "n1", "gpus": 2, "gpu_model": "a100"}, {"name": "n2", "gpus": 2, "gpu_model": "a100"}],
}


@pytest.fixture
def server(tmp_path):
    s = fake_nvml_serve(tmp_path, INVENTORY)
    yield s
    s.stop()
    stop_all_jobs(tmp_path)


MEASURE = json.dumps({"benchmark": "gemm-bf16", "metric": "tflops", "value": 291.5, "unit": "TFLOP/s",
                      "params": {"m": 8192}, "node": "forged", "sku": "forged"})  # provenance: the server's
REPORT = f"echo '{MEASURE}' > \"$GPUFLEET_RESULTS_DIR/gemm.jsonl\""


def state_of(s: ServerProc, name: str) -> str:
    return next(n["state"] for n in s.cli_json("nodes") if n["name"] == name)


def test_identity_is_shown_and_usable_as_a_constraint(server):
    s = server
    hw = s.cli_json("show-node", "n1")
    gpu = hw["identity"]["gpus"][0]
    assert gpu["name"] == "NVIDIA A100-SXM4-80GB" and gpu["vbios"] == "96.00.89.00.01" and gpu["serial"]
    assert hw["identity"]["cuda_driver"] == "12.6" and hw["labels"]["sku"] == "A100-SXM4-80GB"
    wide = s.cli("nodes", "--wide", env={"COLUMNS": "200"}).stdout
    assert "A100-SXM4-80GB" in wide and "96.00.89.00.01" in wide
    ok = s.submit("--constraint", "sku=A100-SXM4-80GB", "--constraint", "driver>=550", "--", "true")
    assert s.wait_state(ok, {"SUCCEEDED"})["state"] == "SUCCEEDED"
    bad = s.cli("submit", "--constraint", "driver>=600", "--", "true", check=False)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: constraint: driver>=600")
    s.cli("health", "inject", "n1", "vbios", "--gpu", "1", "--version", "96.00.99.00.01")
    changes = wait(lambda: [c for c in s.cli_json("show-node", "n1")["changes"] if "vbios" in c["change"]],
                   what="the VBIOS change event")
    assert "96.00.89.00.01 -> 96.00.99.00.01" in changes[0]["change"] and changes[0]["at"] > 0


def test_stray_process_refuses_the_node_and_the_job_runs_elsewhere(server):
    s = server
    s.cli("node", "drain", "n2", "--reason", "keep out while n1 is tried")
    s.cli("health", "inject", "n1", "stray_process", "--gpu", "1", "--pid", "31337")
    job = s.submit("--perf", "--label", "commit=abc123", "--", "sh", "-c", REPORT)
    j = wait(lambda: (lambda x: x if x["restarts"] >= 1 else None)(s.cli_json("show", str(job))),
             what="the prolog refusal")
    assert j["state"] == "PENDING"
    first = s.cli_json("perf", "show", str(job))[0]
    assert first["perf_valid"] is False and "stray_processes" in first["reason"] and "31337" in first["reason"]
    assert state_of(s, "n1") == "drain"
    s.cli("node", "resume", "n2")
    done = s.wait_state(job, {"SUCCEEDED"})
    assert done["nodes"] == ["n2"] and done["gpus"] == {"n2": [0, 1]}
    runs = s.cli_json("perf", "show", str(job))
    by_attempt = {r["attempt"]: r for r in runs}
    assert by_attempt[1]["perf_valid"] is False and by_attempt[1]["node"] == "n1"
    assert by_attempt[2]["perf_valid"] is True and by_attempt[2]["identity"]["gpus"][0]["sku"] == "A100-SXM4-80GB"
    ident = s.cli_json("show-node", "n2")["identity"]
    [r] = wait(lambda: s.cli_json("results", "show", "--job", str(job))["results"], what="the results")
    assert (r["benchmark"], r["value"], r["attempt"], r["node"], r["perf_valid"]) == ("gemm-bf16", 291.5, 2, "n2", True)
    assert (r["sku"], r["driver"], r["vbios"]) == ("A100-SXM4-80GB", ident["driver"], ident["gpus"][0]["vbios"])
    assert r["commit"] == "abc123" and r["series"] == f"gemm-bf16/tflops/m=8192/A100-SXM4-80GB/{ident['driver']}"
    table = s.cli("results", "show", r["series"], env={"COLUMNS": "250"}).stdout
    assert "n2" in table and "A100-SXM4-80GB" in table and ident["gpus"][0]["vbios"] in table and "abc123" in table


def test_throttling_during_the_run_ends_it_perf_valid_false(server, tmp_path):
    s = server
    go = tmp_path / "go"  # the job runs until the throttle is injected (no race with a loaded machine)
    job = s.submit("--perf", "--perf-sample", "0.2", "--", "sh", "-c",
                   f"while [ ! -e '{go}' ]; do sleep 0.2; done; sleep 1.5; " + REPORT)
    j = s.wait_state(job, {"RUNNING"})
    node = wait(lambda: s.cli_json("show", str(job))["nodes"], what="a node")[0]
    s.cli("health", "inject", node, "throttle", "--gpu", "0", "--reason", "hw_slowdown")
    go.touch()
    s.wait_state(job, {"SUCCEEDED"})
    run = wait(lambda: [r for r in s.cli_json("perf", "show", str(job)) if r["perf_valid"] is not None],
               what="the epilog")[0]
    assert run["perf_valid"] is False and "throttle: GPU 0: hw_slowdown" in run["reason"]
    assert run["conditions"]["samples"] >= 2 and "hw_slowdown" in run["conditions"]["throttle"]
    table = s.cli("perf", "show", str(job), env={"COLUMNS": "200"}).stdout
    assert "hw_slowdown" in table and j["state"] == "RUNNING"
    [r] = wait(lambda: s.cli_json("results", "show", "--job", str(job))["results"], what="the results")
    assert r["perf_valid"] is False and "hw_slowdown" in r["invalid_reason"], (r, s.cli_json("perf", "show", str(job)))
    assert s.cli_json("results", "regressions") == [] and s.cli_json("results", "outliers") == []

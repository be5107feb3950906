"""A perf job through a real `gpufleet serve --executor slurm` on the dev Slurm cluster: the batch
script runs `gpufleet perf prolog|sample|epilog` inside the allocation (the fake NVML: the dev nodes
have no GPU), and the server records the verdict and the job's results with it when the job ends."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import wait, slurm_serve

MEASURE = json.dumps({"benchmark": "gemm-bf16", "metric": "tflops", "value": 291.5, "higher_is_better": True})
REPORT = f"echo '{MEASURE}' > \"$GPUFLEET_RESULTS_DIR/gemm.jsonl\""



@pytest.fixture
def perf_slurm_server(slurm_cluster, tag, tmp_path):  # noqa: F811
    fake = tmp_path / "fake-nvml.json"
    fake.write_text(json.dumps({"gpus": 8, "model": "a100"}))
    server = slurm_serve(tmp_path / "home", tag, perf_fake_nvml=str(fake))
    yield server
    server.stop()


@pytest.mark.slurm
def test_a_perf_job_on_slurm_gets_its_verdict_and_results_recorded(perf_slurm_server):
    s = perf_slurm_server
    job = s.submit("--perf", "--gpu-model", "a100", "--label", "commit=c0ffee", "--", "sh", "-c", f"sleep 1; {REPORT}")
    done = s.wait_state(job, {"SUCCEEDED", "FAILED"}, timeout=120)
    assert done["state"] == "SUCCEEDED", done
    [node] = done["nodes"]
    assert node in ("gpu01", "gpu02", "gpu05") and len(done["gpus"][node]) == 8  # the whole node
    [run] = wait(lambda: [r for r in s.cli_json("perf", "show", str(job)) if r["perf_valid"] is not None],
                 what="the perf verdict")
    assert (run["node"], run["attempt"], run["perf_valid"], run["reason"]) == (node, 1, True, ""), run
    assert run["conditions"]["samples"] >= 16  # 8 GPUs at the prolog's state and at the epilog
    [path] = (s.home / "slurm-logs").glob(f"**/gf{job}.0.d/rank-0/perf.json")  # <log_dir>/<account>/ as owner
    verdict = json.loads(path.read_text())
    assert verdict["conditions"] == run["conditions"]  # what the epilog inside the allocation wrote
    [r] = wait(lambda: s.cli_json("results", "show", "--job", str(job))["results"], what="the results")
    assert (r["benchmark"], r["value"], r["node"], r["perf_valid"], r["commit"]) == (
        "gemm-bf16", 291.5, node, True, "c0ffee")

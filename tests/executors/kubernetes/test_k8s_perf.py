"""Clean-room perf inside a pod on the REAL API server: the fake kubelet's exec mode runs the pod's
wrapped command on this host (this venv's `gpufleet perf prolog|sample|epilog`, the fake NVML), and
the executor reads the verdicts and the results back from the pod log's marker lines."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from gpufleet.control.perf import PerfGuard
from gpufleet.domain import Allocation, Job, JobSpec, JobState
from gpufleet.domain.perf import parse_perf
from gpufleet.executors.base import Phase
from gpufleet.services.results_collect import collect, perf_lookup
from gpufleet.store import Store, make_engine, migrate
from gpufleet.store.hardware import HardwareRepo
from gpufleet.store.results import query_results

from .conftest import EXEC, IMAGE, wait_phase

pytestmark = pytest.mark.k8s
GPUFLEET = str(Path(sys.executable).with_name("gpufleet"))
REPORT = ("sleep 1; echo '{\"benchmark\": \"gemm\", \"metric\": \"tflops\", \"value\": 291.5}' "
          "> \"$GPUFLEET_RESULTS_DIR/r.jsonl\"")


@pytest.fixture
def store(tmp_path):
    s = Store(make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"))
    migrate(s.engine)
    return s


def perf_run(make_executor, tmp_path, store, command: str, **nvml) -> tuple:
    fake = tmp_path / "fake-nvml.json"
    fake.write_text(json.dumps({"gpus": 8, "model": "a100", **nvml}))
    ex = make_executor(pod_annotations=EXEC, default_image=IMAGE, gpufleet_bin=GPUFLEET, perf_fake_nvml=str(fake))
    spec = JobSpec(command=("sh", "-c", command), gpus=8, image=IMAGE, perf=parse_perf({"sample_s": 0.3}))
    job = Job(int(time.time() * 1000) % 1_000_000_000, spec, user="alice", state=JobState.RUNNING,
              allocation=(Allocation("gpu-node-01", tuple(range(8))),), submitted_at=time.time())
    store.add_jobs([job], time.time(), "test")
    job.handle = ex.launch(job)
    return ex, job


def test_a_clean_perf_pod_is_valid_and_its_results_are_collected(make_executor, tmp_path, store):
    ex, job = perf_run(make_executor, tmp_path, store, REPORT)
    assert wait_phase(ex, job, {Phase.SUCCEEDED}, 60).exit_code == 0
    verdicts, notes = ex.perf_verdicts(job, job.attempt)
    assert [(v["node"], v["stage"], v["ok"]) for v in verdicts] == [("gpu-node-01", "epilog", True)], notes
    hardware = HardwareRepo(store)
    assert PerfGuard(None, hardware).record_in_job(job, job.attempt, verdicts) == []
    [run] = hardware.runs(job.id)
    assert run.valid is True and run.conditions["samples"] >= 16
    assert hardware.samples(job.id, job.attempt, "gpu-node-01")
    job.state = JobState.SUCCEEDED
    assert collect(store, ex, job, time.time(), perf_lookup(hardware)) == 1
    [r] = query_results(store.engine)
    assert (r.benchmark, r.value, r.node, r.valid) == ("gemm", 291.5, "gpu-node-01", True)


def test_throttling_during_the_run_makes_it_invalid(make_executor, tmp_path, store):
    ex, job = perf_run(make_executor, tmp_path, store, REPORT,
                       run_faults=[{"fault": "throttle", "gpu": 0, "reason": "hw_thermal_slowdown"}])
    assert wait_phase(ex, job, {Phase.SUCCEEDED}, 60).exit_code == 0
    verdicts, notes = ex.perf_verdicts(job, job.attempt)
    [v] = verdicts
    assert (v["stage"], v["ok"]) == ("epilog", False) and "throttle" in v["reason"], (v, notes)
    hardware = HardwareRepo(store)
    PerfGuard(None, hardware).record_in_job(job, job.attempt, verdicts)
    [run] = hardware.runs(job.id)
    assert run.valid is False and run.reason.startswith("epilog throttle")


def test_a_stray_process_is_refused_and_the_command_never_runs(make_executor, tmp_path, store):
    ran = tmp_path / "ran"
    ex, job = perf_run(make_executor, tmp_path, store, f"touch {ran}",
                       faults=[{"fault": "stray_process", "gpu": 1, "pid": 4242}])
    assert wait_phase(ex, job, {Phase.FAILED}, 60).exit_code == 75
    verdicts, _ = ex.perf_verdicts(job, job.attempt)
    [refused] = PerfGuard(None, HardwareRepo(store)).record_in_job(job, job.attempt, verdicts)
    assert refused.node == "gpu-node-01" and "pid 4242" in refused.reason
    assert not ran.exists()
    assert ex.results(job, job.attempt)[0] == []

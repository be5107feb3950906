"""Results and clean-room perf of jobs on the real local Slurm cluster (scripts/dev-slurm.sh): what
a job wrote into $GPUFLEET_RESULTS_DIR is collected, and the perf steps the batch script runs inside
the allocation (`gpufleet perf prolog|sample|epilog`, this venv's) reach the server's perf runs.

The dev cluster's nodes have no GPU: the perf steps use the fake NVML (`--fake-nvml FILE`, set by
the executor's `perf_fake_nvml`), one virtual node per step built from FILE, faults included."""

from __future__ import annotations

import json
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
from tests.executors.contract import wait_for
from tests.executors.images import require_test_image
from tests.executors.slurm.conftest import sh

pytestmark = pytest.mark.slurm


@pytest.fixture
def store(tmp_path):
    s = Store(make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"))
    migrate(s.engine)
    return s


def job_of(spec: JobSpec, node: str) -> Job:
    job_id = int(time.time() * 1000) % 1_000_000_000
    return Job(job_id, spec, state=JobState.RUNNING, submitted_at=time.time(), allocation=(Allocation(node, (0, 1)),))


def launched(ex, job: Job) -> Job:
    job.handle = ex.launch(job)
    return job


def fake_nvml(log_dir: str, **faults) -> str:
    path = Path(log_dir) / "fake-nvml.json"
    path.write_text(json.dumps({"gpus": 2, "model": "a100", **faults}))
    path.chmod(0o644)
    return str(path)


def test_results_a_slurm_job_writes_are_collected(make_executor, store):
    ex = make_executor()
    line = {"benchmark": "resnet50-train", "metric": "images_per_s", "value": 2874.1, "unit": "img/s",
            "higher_is_better": True, "params": {"batch": 256}}
    cmd = f"echo '{json.dumps(line)}' > \"$GPUFLEET_RESULTS_DIR/bench.jsonl\""
    job = launched(ex, job_of(JobSpec(command=("sh", "-c", cmd), gpus=2, gpu_model="a100"), "gpu02"))
    assert wait_for(ex, job, {Phase.SUCCEEDED}, 30).exit_code == 0
    job.state = JobState.SUCCEEDED
    assert collect(store, ex, job, time.time()) == 1
    [r] = query_results(store.engine)
    assert (r.benchmark, r.metric, r.value, r.node, r.job_id) == ("resnet50-train", "images_per_s", 2874.1,
                                                                   "gpu02", job.id)


def test_perf_job_verdict_from_inside_the_allocation_is_recorded(make_executor, store, log_dir):
    ex = make_executor(perf_fake_nvml=fake_nvml(log_dir))
    spec = JobSpec(command=("sh", "-c", "sleep 1; echo '{\"benchmark\": \"b\", \"metric\": \"m\", \"value\": 1}' "
                                        "> \"$GPUFLEET_RESULTS_DIR/r.jsonl\""),
                   gpus=2, gpu_model="a100", perf=parse_perf({"sample_s": 0.3}))
    job = launched(ex, job_of(spec, "gpu01"))
    store.add_jobs([job], time.time(), "test")  # perf samples belong to a stored job
    assert wait_for(ex, job, {Phase.SUCCEEDED}, 60).exit_code == 0
    verdicts, notes = ex.perf_verdicts(job, job.attempt)
    assert [(v["node"], v["stage"], v["ok"]) for v in verdicts] == [("gpu01", "epilog", True)], notes
    hardware = HardwareRepo(store)
    assert PerfGuard(None, hardware).record_in_job(job, job.attempt, verdicts) == []
    [run] = hardware.runs(job.id)
    assert run.valid is True and run.reason == "" and run.node == "gpu01"
    assert [c.name for c in run.prolog][:2] == ["stray_processes", "persistence"]
    assert run.conditions["samples"] >= 4 and run.conditions["sm_mhz"]["min"] > 0
    assert hardware.samples(job.id, job.attempt, "gpu01")
    job.state = JobState.SUCCEEDED
    assert collect(store, ex, job, time.time(), perf_lookup(hardware)) == 1
    [r] = query_results(store.engine)
    assert r.valid is True and r.conditions["samples"] == run.conditions["samples"]


def test_perf_prolog_refusal_inside_the_allocation_skips_the_command(make_executor, store, log_dir):
    ex = make_executor(perf_fake_nvml=fake_nvml(log_dir, faults=[{"fault": "stray_process", "gpu": 1, "pid": 4242}]))
    spec = JobSpec(command=("sh", "-c", "touch \"$GPUFLEET_RESULTS_DIR/ran\""), gpus=2, gpu_model="a100",
                   perf=parse_perf(True))
    job = launched(ex, job_of(spec, "gpu02"))
    store.add_jobs([job], time.time(), "test")
    assert wait_for(ex, job, {Phase.FAILED}, 60).exit_code == 75
    verdicts, _ = ex.perf_verdicts(job, job.attempt)
    [refused] = PerfGuard(None, HardwareRepo(store)).record_in_job(job, job.attempt, verdicts)
    assert refused.node == "gpu02" and "pid 4242" in refused.reason
    [run] = HardwareRepo(store).runs(job.id)
    assert run.valid is False and run.reason.startswith("prolog stray_processes: GPU 1")
    assert ex.results(job, job.attempt) == ([], [])  # the command never ran


def test_results_written_inside_a_podman_image_are_collected(make_executor, store):
    ex = make_executor()
    image = require_test_image()
    assert ex.container_runtime() == "podman"  # the dev cluster has no pyxis
    cmd = "echo '{\"benchmark\": \"in-image\", \"metric\": \"m\", \"value\": 2}' > \"$GPUFLEET_RESULTS_DIR/r.jsonl\""
    spec = JobSpec(command=("sh", "-c", cmd), gpus=2, gpu_model="a100", image=image, pull="never")
    job = launched(ex, job_of(spec, "gpu02"))
    assert wait_for(ex, job, {Phase.SUCCEEDED}, 60).exit_code == 0
    files, notes = ex.results(job, job.attempt)
    assert [f.name for f in files] == ["r.jsonl"] and b'"in-image"' in files[0].data, notes


@pytest.mark.parametrize("api", ["cli", "rest"])
def test_a_perf_job_holds_its_node_exclusively(make_executor, slurm_cluster, log_dir, api):
    rest = {"api": "rest", "rest_url": "unix:" + slurm_cluster["rest_socket"],
            "rest_user": slurm_cluster["rest_user"]} if api == "rest" else {}
    ex = make_executor(perf_fake_nvml=fake_nvml(log_dir), **rest)
    job = job_of(JobSpec(command=("sleep", "30"), gpus=1, gpu_model="l4", perf=parse_perf(True)), "gpu04")
    job.allocation = (Allocation("gpu04", (0,)),)
    launched(ex, job)
    try:
        wait_for(ex, job, {Phase.RUNNING}, 30)
        shown = sh("scontrol", "show", "job", job.handle)
        assert "OverSubscribe=NO" in shown, shown
    finally:
        ex.cancel(job)
    wait_for(ex, job, {Phase.CANCELLED}, 30)

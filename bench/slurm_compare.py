#!/usr/bin/env python3
"""gpufleet on Slurm vs plain sbatch, on the local dev cluster (scripts/dev-slurm.sh up), in one run.

Starts a real `gpufleet serve --executor slurm` (SQLite, temp home) and prints one JSON object:

- submission rate: N trivial 1-GPU jobs, (a) `sbatch` in a loop, (b) through the gpufleet API in
  batches (POST /jobs/batch, what `gpufleet submit` uses for many jobs) and (c) one POST per job.
  Also reported: how fast gpufleet hands the jobs to Slurm, and the makespan until all N ended,
  for both paths.
- submit->running latency: M jobs one at a time on an idle cluster, sbatch and gpufleet samples
  interleaved (so background load hits both alike). "Running" is when the job's command starts:
  each job writes its own start timestamp; latency = that - the client's clock before submitting.

- CPU beside wall: the gpufleet server's CPU over the burst, its children's (sbatch, squeue)
  included, against the CPU of the sbatch/squeue processes of the plain path.

    python bench/slurm_compare.py [--jobs 200] [--latency-jobs 50] [--batch 50]
        [--launch-concurrency N] [--watch-interval S] [--skip-latency]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.e2e.conftest import BIN, free_port  # noqa: E402

ACCOUNT = "default"  # gpufleet's default tenant -> Slurm account; sbatch uses the same one
STAMP = "date +%s.%N > {dir}/{prefix}.${var}"


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def sh(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True, timeout=120).stdout


def slurm_jobs(name_prefix: str) -> list[dict]:
    return [j for j in json.loads(sh("squeue", "--json"))["jobs"] if j["name"].startswith(name_prefix)]


def wait_until(pred, timeout: float, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(every)
    return False


def cluster_idle() -> bool:
    return not sh("squeue", "-h", "-t", "pending,running,completing", "-o", "%i").strip()


# ------------------------------------------------------------------------------------------- server


def cpu_s(p: psutil.Process) -> float:
    """The server's CPU, with its waited-for children's (sbatch, squeue, sinfo)."""
    t = p.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def start_server(home: Path, tag: str, settings: dict) -> tuple[subprocess.Popen, httpx.Client]:
    config = home / "server.yaml"
    top = {k: v for k, v in settings.items() if k != "slurm"}
    config.write_text(yaml.safe_dump({"executor": "slurm", **top,
                                      "slurm": {"tag": tag, "log_dir": str(home / "slurm-logs"),
                                                **settings.get("slurm", {})}}))
    port = free_port()
    log = open(home / "server.log", "w")
    proc = subprocess.Popen([str(BIN), "serve", "--port", str(port), "--config", str(config)],
                            env={**os.environ, "GPUFLEET_HOME": str(home)}, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(url + "/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return proc.poll() is not None

    if not wait_until(up, 60, 0.1) or proc.poll() is not None:
        raise SystemExit(f"gpufleet serve did not start; see {home / 'server.log'}")
    token = (home / "admin.token").read_text().strip()
    return proc, httpx.Client(base_url=url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=120)


def gf_spec(stamp_dir: Path | None, name: str) -> dict:
    cmd = STAMP.format(dir=stamp_dir, prefix="gf", var="GPUFLEET_JOB_ID") if stamp_dir else "true"
    return {"command": ["sh", "-c", cmd], "gpus": 1, "name": name}


def sbatch(stamp_dir: Path | None, name: str) -> int:
    cmd = STAMP.format(dir=stamp_dir, prefix="sb", var="SLURM_JOB_ID") if stamp_dir else "true"
    out = sh("sbatch", "--parsable", f"--job-name={name}", f"--account={ACCOUNT}", "--gres=gpu:1",
             "--output=/dev/null", f"--wrap={cmd}")
    return int(out.strip().split(";")[0])


def read_stamp(path: Path, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = path.read_text().strip()
            if text:
                return float(text)
        except OSError:
            pass
        time.sleep(0.002)
    raise SystemExit(f"no start stamp at {path} after {timeout}s")


# ------------------------------------------------------------------------------------------ phases


def rate_sbatch(n: int) -> dict:
    t0 = time.perf_counter()
    for i in range(n):
        sbatch(None, f"sbrate-{i}")
    submit = time.perf_counter() - t0
    wait_until(lambda: not slurm_jobs("sbrate-") or all(
        j["job_state"] not in ("PENDING", "RUNNING", "COMPLETING") for j in slurm_jobs("sbrate-")), 600)
    return {"submit_per_s": n / submit, "makespan_s": time.perf_counter() - t0}


def rate_gpufleet(c: httpx.Client, n: int, batch: int) -> dict:
    t0 = time.perf_counter()
    ids: list[int] = []
    for start in range(0, n, batch):
        body = [gf_spec(None, f"gfrate-{i}") for i in range(start, min(n, start + batch))]
        ids += [j["id"] for j in c.post("/jobs/batch", json=body).raise_for_status().json()]
    accepted = time.perf_counter() - t0

    def states() -> list[dict]:
        out, params = [], {"all": True, "limit": 1000}
        while True:  # follow the keyset pages
            r = c.get("/jobs", params=params).raise_for_status()
            out += r.json()
            if "next" not in r.links:
                return out
            params["after"] = httpx.URL(r.links["next"]["url"]).params["after"]

    # polled as often as the sbatch path polls squeue (0.2 s): a tighter loop of full job lists
    # costs the server more CPU than the burst itself and slows what it measures
    wait_until(lambda: all(j["handle"] or j["state"] not in ("PENDING", "RUNNING")
                           for j in states() if j["id"] in set(ids)), 600, 0.2)
    in_slurm = time.perf_counter() - t0
    wait_until(lambda: all(j["state"] not in ("PENDING", "RUNNING") for j in states() if j["id"] in set(ids)), 600)
    done = time.perf_counter() - t0
    bad = [j for j in states() if j["id"] in set(ids) and j["state"] != "SUCCEEDED"]
    return {"submit_per_s": n / accepted, "to_slurm_per_s": n / in_slurm, "makespan_s": done, "not_succeeded": len(bad)}


def rate_gpufleet_single(c: httpx.Client, n: int) -> float:
    """One POST per job (what a loop of `gpufleet submit` does, minus the CLI's process start)."""
    t0 = time.perf_counter()
    for i in range(n):
        c.post("/jobs", json=gf_spec(None, f"gfone-{i}")).raise_for_status()
    return n / (time.perf_counter() - t0)


def latencies(c: httpx.Client, m: int, stamps: Path) -> tuple[list[float], list[float]]:
    sb, gf = [], []
    for i in range(m):
        wait_until(cluster_idle, 60, 0.05)
        t0 = time.time()
        job_id = sbatch(stamps, f"sblat-{i}")
        sb.append(read_stamp(stamps / f"sb.{job_id}") - t0)
        wait_until(cluster_idle, 60, 0.05)
        t0 = time.time()
        job = c.post("/jobs", json=gf_spec(stamps, f"gflat-{i}")).raise_for_status().json()
        gf.append(read_stamp(stamps / f"gf.{job['id']}") - t0)
    return sb, gf


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--latency-jobs", type=int, default=50)
    ap.add_argument("--keep", action="store_true", help="keep the server's temp home (logs, database)")
    ap.add_argument("--launch-concurrency", type=int, default=None, help="the server's (default: its own)")
    ap.add_argument("--watch-interval", type=float, default=None, help="slurm.watch_interval_s (default: its own)")
    ap.add_argument("--skip-latency", action="store_true", help="only the burst (rate and makespan)")
    a = ap.parse_args()
    settings: dict = {}
    if a.launch_concurrency is not None:
        settings["launch_concurrency"] = a.launch_concurrency
    if a.watch_interval is not None:
        settings["slurm"] = {"watch_interval_s": a.watch_interval}
    if shutil.which("sbatch") is None or subprocess.run(["scontrol", "ping"], capture_output=True).returncode:
        raise SystemExit("no Slurm cluster answers: run scripts/dev-slurm.sh up first")
    home = Path(tempfile.mkdtemp(prefix="gf-slurm-bench-"))
    stamps = home / "stamps"
    stamps.mkdir(mode=0o1777)
    proc, c = start_server(home, f"bench{os.getpid()}", settings)
    server = psutil.Process(proc.pid)
    try:
        # warm up both paths (Slurm account, executor caches, first scheduling cycle)
        c.post("/jobs", json=gf_spec(stamps, "warmup")).raise_for_status()
        sbatch(stamps, "warmup")
        wait_until(cluster_idle, 60)
        sb_lat, gf_lat = latencies(c, a.latency_jobs, stamps) if not a.skip_latency else ([1.0], [1.0])
        wait_until(cluster_idle, 120)
        c0 = sum(os.times()[2:4])
        sb_rate = rate_sbatch(a.jobs)
        sb_rate["children_cpu_s"] = sum(os.times()[2:4]) - c0  # the sbatch and squeue processes
        wait_until(cluster_idle, 600)
        s0, b0 = cpu_s(server), time.process_time()
        gf_rate = rate_gpufleet(c, a.jobs, a.batch)
        gf_rate["server_cpu_s"] = cpu_s(server) - s0
        gf_rate["bench_cpu_s"] = time.process_time() - b0
        wait_until(cluster_idle, 600)
        single = rate_gpufleet_single(c, min(a.jobs, 100))
    finally:
        c.close()
        proc.terminate()
        proc.wait(30)
        for j in slurm_jobs("gf") + slurm_jobs("sb"):
            if j["job_state"] in ("PENDING", "RUNNING"):
                subprocess.run(["scancel", str(j["job_id"])], capture_output=True)
    print(json.dumps({
        "engine": "slurm 22.05 (scripts/dev-slurm.sh: 4 fake nodes, 22 GPUs)", "db": "sqlite",
        "jobs": a.jobs, "batch": a.batch, "latency_jobs": a.latency_jobs,
        "sbatch_submit_per_s": round(sb_rate["submit_per_s"], 1),
        "gpufleet_submit_per_s": round(gf_rate["submit_per_s"], 1),
        "submit_rate_ratio": round(gf_rate["submit_per_s"] / sb_rate["submit_per_s"], 3),
        "gpufleet_submit_single_post_per_s": round(single, 1),
        "gpufleet_to_slurm_per_s": round(gf_rate["to_slurm_per_s"], 1),
        "sbatch_makespan_s": round(sb_rate["makespan_s"], 2),
        "gpufleet_makespan_s": round(gf_rate["makespan_s"], 2),
        "makespan_ratio": round(gf_rate["makespan_s"] / sb_rate["makespan_s"], 3),
        "gpufleet_burst_server_cpu_s": round(gf_rate["server_cpu_s"], 2),
        "gpufleet_burst_bench_cpu_s": round(gf_rate["bench_cpu_s"], 2),
        "sbatch_burst_cpu_s": round(sb_rate["children_cpu_s"], 2),
        "gpufleet_not_succeeded": gf_rate["not_succeeded"],
        "sbatch_latency_p50_s": round(pct(sb_lat, 50), 4),
        "gpufleet_latency_p50_s": round(pct(gf_lat, 50), 4),
        "latency_overhead_ratio": round(pct(gf_lat, 50) / pct(sb_lat, 50), 3),
        "sbatch_latency_p99_s": round(pct(sb_lat, 99), 4),
        "gpufleet_latency_p99_s": round(pct(gf_lat, 99), 4),
        "latency_p99_ratio": round(pct(gf_lat, 99) / pct(sb_lat, 99), 3),
        "sbatch_latency_mean_s": round(statistics.mean(sb_lat), 4),
        "gpufleet_latency_mean_s": round(statistics.mean(gf_lat), 4),
        "note": "latency = the job's own start stamp minus the client clock before submit; samples "
                "interleaved on an idle cluster. gpufleet_submit_per_s = API acceptance in batches; "
                "gpufleet_to_slurm_per_s = until every job had a Slurm job id (gpufleet queues jobs "
                "itself until GPUs are free).",
        "latency_skipped": a.skip_latency,
        "settings": settings,
        "server_home": str(home) if a.keep else None,
    }, indent=2))
    if not a.keep:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()

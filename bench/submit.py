#!/usr/bin/env python3
"""Submissions/s through the API and submit->running latency on the local executor.

Starts a real `gpufleet serve` (SQLite, local executor, fake GPUs) in a temp home and prints one
JSON object. Baselines measured in the same run: plain HTTP round trips to /healthz (the floor of
any API call) and a bare fork/exec of the same command (the floor of any launch).

    python bench/submit.py [--jobs 500] [--latency-jobs 50] [--gpus 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.e2e.conftest import BIN, free_port  # noqa: E402


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def start_server(home: Path, gpus: int) -> tuple[subprocess.Popen, str, dict]:
    port = free_port()
    env = {**os.environ, "GPUFLEET_HOME": str(home)}
    proc = subprocess.Popen([str(BIN), "serve", "--port", str(port), "--fake-gpus", str(gpus)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    token = (home / "admin.token").read_text().strip()
    return proc, url, {"Authorization": f"Bearer {token}"}


def rate(n: int, fn) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - t0)


def latency(c: httpx.Client, n: int) -> list[float]:
    out = []
    for _ in range(n):
        job = c.post("/api/v1/jobs", json={"command": ["true"], "gpus": 1}).json()
        while True:
            j = c.get(f"/api/v1/jobs/{job['id']}").json()
            if j["started_at"] is not None and j["handle"]:
                # started_at: decision written; the shim records the child's real start
                out.append(_child_started(j) - j["submitted_at"])
                break
            time.sleep(0.002)
    return out


def _child_started(j: dict) -> float:
    pid_file = Path(j["handle"]) / "rank-0" / "pid.json" if j["handle"] else None
    for _ in range(500):
        try:
            data = json.loads(pid_file.read_text())
            return float(data.get("started_at") or data.get("child_started_at") or j["started_at"])
        except (OSError, ValueError, TypeError):
            time.sleep(0.002)
    return j["started_at"]


def spawn_baseline(n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(["true"])
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--latency-jobs", type=int, default=50)
    ap.add_argument("--gpus", type=int, default=8)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, headers = start_server(Path(tmp), a.gpus)
        try:
            with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
                healthz = rate(200, lambda i: c.get("/healthz"))
                lat = latency(c, a.latency_jobs)
                # the rate phase measures API + store + scheduler cycles, not process spawning:
                # drain the node so the queue grows instead of launching hundreds of `true`s
                node = c.get("/api/v1/nodes").json()[0]["name"]
                c.post(f"/api/v1/nodes/{node}/drain", json={"reason": "bench: queue only"})
                one = rate(a.jobs, lambda i: c.post("/api/v1/jobs", json={"command": ["true"], "gpus": 1}))
                body = [{"command": ["true"], "gpus": 1}] * a.batch
                batched = rate(max(1, a.jobs // a.batch), lambda i: c.post("/api/v1/jobs/batch", json=body)) * a.batch
        finally:
            proc.terminate()
            proc.wait(10)
    base = spawn_baseline(a.latency_jobs)
    print(json.dumps({
        "executor": "local", "db": "sqlite",
        "note": "rate phase: node drained, jobs queue (scheduler cycles run); latency phase: idle node",
        "submit_per_s": round(one, 1),
        "submit_batched_per_s": round(batched, 1),
        "healthz_per_s_baseline": round(healthz, 1),
        "submit_vs_healthz_ratio": round(one / healthz, 3),
        "submit_to_running_p50_s": round(pct(lat, 50), 4),
        "submit_to_running_p99_s": round(pct(lat, 99), 4),
        "bare_spawn_p50_s_baseline": round(pct(base, 50), 4),
        "latency_vs_bare_spawn_ratio": round(pct(lat, 50) / pct(base, 50), 1),
        "latency_jobs": a.latency_jobs, "submit_jobs": a.jobs,
    }, indent=2))


if __name__ == "__main__":
    main()

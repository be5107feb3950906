#!/usr/bin/env python3
"""The control plane at lab scale (issue 16): API latency and control-loop cycle time with a large
store and inventory, while the loop runs.

Loads `--jobs` jobs into a real `gpufleet serve` (fake executor, `--nodes` 8-GPU nodes from an
inventory file; SQLite in a temp home, or `--db postgresql+psycopg://…` — a fresh database is made
and dropped): the finished ones written through the store before the server starts (all
CANCELLED, so `?state=CANCELLED` matches them all), one running 8-GPU job per node submitted
through the API and placed by the loop, then `--pending` 8-GPU jobs that cannot fit. Then, with the
loop cycling over that queue, it times list / filtered list / show / submit / nodes requests and
reads the loop's own cycle histogram from /metrics. One JSON object on stdout.

CPU time beside wall time: the server's CPU seconds per phase (from /proc) and per request.

    python bench/api_scale.py [--nodes 10000] [--jobs 100000] [--pending 10000] [--samples 50]
    python bench/api_scale.py --nodes 1250 --jobs 20000 --pending 10000   # the issue's 2nd cycle row
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gpufleet.domain import Job, JobSpec, JobState, Tenant, transition  # noqa: E402
from gpufleet.store import Store, make_engine, migrate  # noqa: E402
from gpufleet.store.rows import JobRow  # noqa: E402
from tests.e2e.conftest import BIN, free_port  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mb(pid: int) -> float:
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024 if m else 0.0


@contextmanager
def database(db: str | None, home: Path):
    if not db:
        yield f"sqlite:///{home / 'gpufleet.db'}"
        return
    name = f"gpufleet_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(db, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield db.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def preload_finished(url: str, n: int) -> float:
    """n CANCELLED jobs through the store (as years of history would be); returns seconds."""
    t0 = time.perf_counter()
    engine = make_engine(url)
    migrate(engine)
    store = Store(engine)
    store.put_tenant(Tenant("default", {}))
    for start in range(0, n, 5000):
        jobs = [Job(0, JobSpec(command=("true",), gpus=8), submitted_at=1.0) for _ in range(min(5000, n - start))]
        store.add_jobs(jobs, 1.0, "admin")
        items = []
        for job in jobs:
            change = transition(job, JobState.CANCELLED, "bench: history", 2.0)
            items.append((job, JobState.PENDING, change))
        store.save_jobs(items)
    engine.dispose()
    return time.perf_counter() - t0


def count(url: str, state: JobState) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return c.execute(select(func.count()).select_from(JobRow).where(JobRow.state == state.value)).scalar_one()
    finally:
        engine.dispose()


def submit_many(c: httpx.Client, n: int, batch: int = 200) -> None:
    body = {"command": ["true"], "gpus": 8}
    for start in range(0, n, batch):
        r = c.post("/api/v1/jobs/batch", json=[body] * min(batch, n - start))
        r.raise_for_status()


def cycle_stats(c: httpx.Client) -> tuple[float, float]:
    text_ = c.get("/metrics").text
    total = float(re.search(r"^gpufleet_scheduling_cycle_seconds_sum (\S+)$", text_, re.M).group(1))
    n = float(re.search(r"^gpufleet_scheduling_cycle_seconds_count (\S+)$", text_, re.M).group(1))
    return total, n


def mean_cycle_ms(c: httpx.Client, seconds: float) -> float:
    s0, n0 = cycle_stats(c)
    deadline = time.monotonic() + seconds
    while True:
        time.sleep(1.0)
        s1, n1 = cycle_stats(c)
        if time.monotonic() >= deadline and n1 > n0:
            return round((s1 - s0) / (n1 - n0) * 1000, 1)
        if time.monotonic() >= deadline + 120:
            return float("nan")


def timed(c: httpx.Client, pid: int, n: int, request) -> dict:
    lat = []
    cpu0 = cpu_s(pid)
    for i in range(n):
        t0 = time.perf_counter()
        r = request(i)
        lat.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
    cpu = cpu_s(pid) - cpu0
    return {"p50_ms": round(pct(lat, 50), 1), "p99_ms": round(pct(lat, 99), 1),
            "server_cpu_ms_per_request": round(cpu / n * 1000, 1), "bytes": len(r.content)}


def wait_for(url: str, state: JobState, n: int, timeout: float) -> float:
    t0 = time.perf_counter()
    while count(url, state) < n:
        if time.perf_counter() - t0 > timeout:
            raise SystemExit(f"timed out waiting for {n} {state.value} jobs (have {count(url, state)})")
        time.sleep(2)
    return time.perf_counter() - t0


def run(a: argparse.Namespace, home: Path, url: str) -> dict:
    out: dict = {"db": "postgresql" if a.db else "sqlite", "nodes": a.nodes, "jobs": a.jobs, "pending": a.pending}
    finished = a.jobs - a.pending - a.nodes
    out["preload_finished_s"] = round(preload_finished(url, finished), 1)
    inv = home / "inventory.yaml"
    inv.write_text(f"nodes:\n  - {{name: n, count: {a.nodes}, kind: server, gpus: 8, gpu_model: a100}}\n")
    port = free_port()
    env = {**os.environ, "GPUFLEET_HOME": str(home)}
    proc = subprocess.Popen([str(BIN), "serve", "--port", str(port), "--executor", "fake", "--db", url,
                             "--inventory", str(inv)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        token = (home / "admin.token").read_text().strip()
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=300) as c:
            submit_many(c, a.nodes)
            out["place_running_s"] = round(wait_for(url, JobState.RUNNING, a.nodes, 1800), 1)
            out["cycle_10k_nodes_ms"] = mean_cycle_ms(c, a.window)  # every node busy, queue empty
            submit_many(c, a.pending)
            out["cycle_10k_pending_ms"] = mean_cycle_ms(c, a.window)
            ids = [j["id"] for j in c.get("/api/v1/jobs", params={"state": "PENDING", "limit": 1000}).json()]
            n = a.samples
            phases = {
                "list": lambda i: c.get("/api/v1/jobs"),
                "list_filtered": lambda i: c.get("/api/v1/jobs", params={"state": "CANCELLED"}),
                "show": lambda i: c.get(f"/api/v1/jobs/{random.choice(ids)}"),
                "submit": lambda i: c.post("/api/v1/jobs", json={"command": ["true"], "gpus": 8}),
                "nodes": lambda i: c.get("/api/v1/nodes"),
            }
            cpu0, t0 = cpu_s(proc.pid), time.perf_counter()
            for name, request in phases.items():
                r = timed(c, proc.pid, n, request)
                out[f"{name}_p50_ms"], out[f"{name}_p99_ms"] = r["p50_ms"], r["p99_ms"]
                out[f"{name}_server_cpu_ms"], out[f"{name}_bytes"] = r["server_cpu_ms_per_request"], r["bytes"]
            wall = time.perf_counter() - t0
            out["api_phase_wall_s"] = round(wall, 1)
            out["api_phase_server_cpu_s"] = round(cpu_s(proc.pid) - cpu0, 1)
            out["rss_mb"] = round(rss_mb(proc.pid), 1)
    finally:
        proc.terminate()
        proc.wait(60)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--jobs", type=int, default=100_000, help="all jobs stored, finished + running + pending")
    ap.add_argument("--pending", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=50, help="requests per API measure")
    ap.add_argument("--window", type=float, default=15.0, help="seconds over which the cycle mean is taken")
    ap.add_argument("--db", help="PostgreSQL URL (a fresh database is created and dropped); default SQLite")
    a = ap.parse_args()
    if a.jobs < a.pending + a.nodes:
        ap.error("--jobs must be at least --pending + --nodes")
    t0, c0 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as tmp, database(a.db, Path(tmp)) as url:
        out = run(a, Path(tmp), url)
    out["bench_wall_s"] = round(time.perf_counter() - t0, 1)
    out["bench_client_cpu_s"] = round(time.process_time() - c0, 1)
    for k in ("list", "list_filtered", "show", "submit", "nodes"):
        out[f"{k}_p99_ms"] = out.pop(f"{k}_p99_ms")  # keep the keys together at the end
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

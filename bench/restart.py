#!/usr/bin/env python3
"""Time to restart a faulted gang on the local engine (issue 17): node fault -> all ranks of the
new attempt running, against a cold start (submit -> all ranks running) measured in the same run.

Starts a real `gpufleet serve` (SQLite, local engine, fake NVML, health every second)
with --nodes one-GPU nodes. Each round submits a 2-node gang whose ranks write a marker when they
start, waits until both run, injects an XID on one of its nodes (the health loop drains it; a long
burn-in keeps it drained), and waits for both ranks of attempt 2. One JSON object:

    python bench/restart.py [--rounds 8] [--nodes 12]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.e2e.conftest import ServerProc, fake_nvml_serve, stop_all_jobs, wait  # noqa: E402

RANK = 'touch "$MARKS/$GPUFLEET_JOB_ID-a$GPUFLEET_ATTEMPT-r$GPUFLEET_NODE_RANK"; exec sleep 600'


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def ranks_running(marks: Path, job: int, attempt: int, ranks: int = 2) -> float | None:
    """When the last rank of that attempt started (its marker's mtime), once all have."""
    files = [marks / f"{job}-a{attempt}-r{r}" for r in range(ranks)]
    return max(f.stat().st_mtime for f in files) if all(f.exists() for f in files) else None


def server_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def start(home: Path, nodes: int) -> ServerProc:
    inv = {"tenants": [{"name": "default", "quota": {"a100": nodes}}],
           "nodes": [{"name": f"n{i}", "gpus": 1, "gpu_model": "a100"} for i in range(nodes)]}
    # a long burn-in keeps every faulted node drained
    return fake_nvml_serve(home, inv, {"max_rounds": 1, "burn_in": {"command": ["sleep", "3600"], "timeout": "2h"}})


def one_round(s: ServerProc, marks: Path) -> tuple[float, float]:
    t_submit = time.time()
    job = s.submit("--nodes", "2", "--gpus", "1", "--env", f"MARKS={marks}", "--", "sh", "-c", RANK)
    cold = wait(lambda: ranks_running(marks, job, 1), 60, "attempt 1 running") - t_submit
    bad = s.cli_json("show", str(job))["nodes"][1]
    t_fault = time.time()
    s.cli("health", "inject", bad, "xid", "--gpu", "0", "--xid", "79")
    restart = wait(lambda: ranks_running(marks, job, 2), 60, "attempt 2 running") - t_fault
    s.cli("cancel", str(job))
    s.wait_state(job, {"CANCELLED"}, timeout=30)
    return cold, restart


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--nodes", type=int, default=12)
    a = ap.parse_args()
    if a.nodes < a.rounds + 2:
        sys.exit("--nodes must be at least --rounds + 2 (every round drains one node)")
    with tempfile.TemporaryDirectory() as tmp:
        home, marks = Path(tmp), Path(tmp) / "marks"
        marks.mkdir(mode=0o777)
        os.chmod(marks, 0o1777)  # the job's account writes there
        s = start(home, a.nodes)
        cpu0, t0 = server_cpu_s(s.proc.pid), time.time()
        try:
            rounds = [one_round(s, marks) for _ in range(a.rounds)]
            server_cpu = server_cpu_s(s.proc.pid) - cpu0
        finally:
            s.stop()
            stop_all_jobs(home)
    cold, restart = [r[0] for r in rounds], [r[1] for r in rounds]
    print(json.dumps({
        "rounds": a.rounds, "health_interval_s": 1,
        "restart_p50_s": round(pct(restart, 50), 3), "restart_p99_s": round(pct(restart, 99), 3),
        "cold_start_p50_s": round(pct(cold, 50), 3), "cold_start_p99_s": round(pct(cold, 99), 3),
        "restart_vs_cold_p50": round(pct(restart, 50) / pct(cold, 50), 2),
        "wall_s": round(time.time() - t0, 1), "server_cpu_s": round(server_cpu, 2),
        "bench_cpu_s": round(resource.getrusage(resource.RUSAGE_SELF).ru_utime
                             + resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime, 2),
    }))


if __name__ == "__main__":
    main()

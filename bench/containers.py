#!/usr/bin/env python3
"""Container start overhead on the local engine: the same tiny job as a bare process and in the
test image (podman, crun), N jobs each, interleaved in ONE run, through LocalExecutor itself.

Per job: start = launch() -> its first output line is in output.log (the command runs), total =
launch() -> the executor reports it ended (exit.json written by the shim). CPU = user+sys of the
reaped shims and what they waited for (podman; conmon and crun are daemonized by podman and are
not counted). Prints one JSON object (p50/p99 in ms).

    python bench/containers.py [--jobs 50] [--image localhost/gpufleet-test:latest]
    (needs root or rootless podman and the image of scripts/dev-images.sh)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from gpufleet.domain import Allocation, Job, JobSpec, JobState  # noqa: E402
from gpufleet.executors.base import Phase  # noqa: E402
from gpufleet.executors.local import LocalExecutor  # noqa: E402


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def one(ex: LocalExecutor, job_id: int, image: str | None) -> tuple[float, float, float]:
    spec = JobSpec(command=("sh", "-c", "echo started"), image=image, pull="never")
    job = Job(job_id, spec, state=JobState.RUNNING, allocation=(Allocation("n1", (0,)),))
    cpu0 = children_cpu()
    t0 = time.perf_counter()
    job.handle = ex.launch(job)
    log = Path(job.handle) / "rank-0" / "output.log"
    start = None
    while True:
        if start is None:
            try:
                if b"started" in log.read_bytes():
                    start = time.perf_counter() - t0
            except FileNotFoundError:
                pass
        obs = ex.poll([job])
        if obs and obs[0].phase.ended:
            assert obs[0].phase is Phase.SUCCEEDED, obs
            total = time.perf_counter() - t0
            break
        time.sleep(0.002)
    if start is None:
        start = total
    ex.poll([job])  # reaps the shim: its CPU (and podman's) is in RUSAGE_CHILDREN now
    deadline = time.monotonic() + 5
    while ex._children and time.monotonic() < deadline:  # noqa: SLF001 - the bench waits for the reap
        time.sleep(0.005)
        ex.poll([job])
    return start, total, children_cpu() - cpu0


def summary(rows: list[tuple[float, float, float]]) -> dict[str, float]:
    start, total, cpu = ([r[i] for r in rows] for i in range(3))
    ms = lambda v: round(v * 1000, 1)  # noqa: E731
    return {"start_p50_ms": ms(pct(start, 50)), "start_p99_ms": ms(pct(start, 99)),
            "total_p50_ms": ms(pct(total, 50)), "total_p99_ms": ms(pct(total, 99)),
            "cpu_per_job_ms": ms(statistics.mean(cpu))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=50)
    ap.add_argument("--image", default="localhost/gpufleet-test:latest")
    a = ap.parse_args()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        ex = LocalExecutor(Path(tmp) / "run", grace_s=1.0)
        one(ex, 1, a.image)  # warm: page cache, podman's storage
        one(ex, 2, None)
        bare, boxed = [], []
        for i in range(a.jobs):  # interleaved: the same machine load for both
            bare.append(one(ex, 100 + 2 * i, None))
            boxed.append(one(ex, 101 + 2 * i, a.image))
        ex.close()
    b, c = summary(bare), summary(boxed)
    print(json.dumps({
        "bench": "containers", "jobs_each": a.jobs, "image": a.image, "host": platform.node(),
        "cpus": os.cpu_count(), "bare": b, "container": c,
        "overhead_start_p50_ms": round(c["start_p50_ms"] - b["start_p50_ms"], 1),
        "overhead_start_p99_ms": round(c["start_p99_ms"] - b["start_p99_ms"], 1),
        "overhead_total_p50_ms": round(c["total_p50_ms"] - b["total_p50_ms"], 1),
        "wall_s": round(time.perf_counter() - wall0, 2), "cpu_s_bench_process": round(time.process_time() - cpu0, 2),
    }, indent=1))


if __name__ == "__main__":
    main()

"""The numbers a replay answers with (the `--json` object).

JCT = end - submit. Queue time = JCT - time spent running (so waits after a preemption count).
Slowdown is the bounded slowdown max(1, JCT / max(duration, 10 s)) (Feitelson), so that 1-second
jobs do not dominate the averages. Utilization and fragmentation are time averages over the
makespan (first submit to last end).

Failure replays (sim/failures.py): `goodput` = useful GPU-time / allocated GPU-time, where
allocated = useful + lost (progress a fault took back to the last checkpoint) + restart costs +
checkpoint writes; `training_time_ratio` = useful GPU-time of the succeeded jobs / their GPUs x
(end - first start), the "effective training time" that counts waiting for a replacement too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpufleet.sim.recorder import Recorder

SLOWDOWN_FLOOR_S = 10.0


def summarize(rec: Recorder) -> dict[str, Any]:
    end = np.asarray(rec.end, dtype=float)
    done = ~np.isnan(end)
    submit = np.asarray(rec.submit, dtype=float)[done]
    end = end[done]
    run = np.asarray(rec.run_s, dtype=float)[done]
    dur = np.asarray(rec.duration, dtype=float)[done]
    jct = end - submit
    queue = np.maximum(0.0, jct - run)
    t0 = float(submit.min()) if submit.size else 0.0
    makespan = float(end.max() - t0) if end.size else 0.0
    capacity = rec.total_gpus * makespan
    states = np.asarray(rec.state, dtype=object)[done]
    return {
        "jobs": int(done.sum()),
        "unfinished": rec.unfinished,
        "succeeded": int((states == "SUCCEEDED").sum()),
        "timeouts": int((states == "TIMEOUT").sum()),
        "failed": int((states == "FAILED").sum()),
        "makespan_s": makespan,
        "avg_jct_s": _mean(jct),
        "median_jct_s": _pct(jct, 50),
        "p99_jct_s": _pct(jct, 99),
        "avg_queue_s": _mean(queue),
        "median_queue_s": _pct(queue, 50),
        "p99_queue_s": _pct(queue, 99),
        "max_queue_s": float(queue.max()) if queue.size else 0.0,
        "avg_queue_len": rec.queue_s / makespan if makespan else 0.0,
        "max_queue_len": max(rec.queue_len, default=0),
        "gpu_utilization": rec.busy_gpu_s / capacity if capacity else 0.0,
        "avg_fragmentation": rec.frag_s / makespan if makespan else 0.0,
        "preemptions": rec.preemptions,
        **resilience(rec, done, end, dur),
        "per_tenant": per_tenant(rec, done, jct, queue, dur),
        "cycles": rec.cycles,
        "scheduler_s": rec.scheduler_s,
        "wall_s": rec.wall_s,
    }


def resilience(rec: Recorder, done, end, dur) -> dict[str, Any]:
    ttr = np.asarray(rec.time_to_restart, dtype=float)
    ok = np.asarray(rec.state, dtype=object)[done] == "SUCCEEDED"
    gpus = np.asarray(rec.gpus, dtype=float)[done][ok]
    first = np.asarray(rec.first_start, dtype=float)[done][ok]
    held = float((gpus * (end[ok] - first)).sum())
    return {
        "goodput": rec.useful_gpu_s / rec.alloc_gpu_s if rec.alloc_gpu_s else 1.0,
        "training_time_ratio": float((gpus * dur[ok]).sum()) / held if held else 1.0,
        "allocated_gpu_hours": rec.alloc_gpu_s / 3600,
        "useful_gpu_hours": rec.useful_gpu_s / 3600,
        "lost_gpu_hours": rec.lost_gpu_s / 3600,
        "restart_gpu_hours": rec.restart_gpu_s / 3600,
        "checkpoint_gpu_hours": rec.checkpoint_gpu_s / 3600,
        "node_faults": rec.node_faults,
        "restarts": rec.restarts,
        "spare_replacements": rec.spare_replacements,
        "time_to_restart_p50_s": _pct(ttr, 50) if ttr.size else None,
        "time_to_restart_p99_s": _pct(ttr, 99) if ttr.size else None,
    }


def per_tenant(rec: Recorder, done, jct, queue, dur) -> dict[str, dict[str, float]]:
    tenants = np.asarray(rec.tenant, dtype=object)[done]
    gpus = np.asarray(rec.gpus, dtype=float)[done]
    run = np.asarray(rec.run_s, dtype=float)[done]
    gpu_s = gpus * run
    total = float(gpu_s.sum()) or 1.0
    slow = slowdown(jct, dur)
    out: dict[str, dict[str, float]] = {}
    for name in sorted(set(tenants.tolist())):
        m = tenants == name
        out[name] = {
            "jobs": int(m.sum()),
            "avg_jct_s": _mean(jct[m]),
            "avg_queue_s": _mean(queue[m]),
            "max_queue_s": float(queue[m].max()),
            "avg_slowdown": _mean(slow[m]),
            "gpu_time_share": float(gpu_s[m].sum()) / total,
        }
    return out


def slowdown(jct, dur):
    return np.maximum(1.0, jct / np.maximum(dur, SLOWDOWN_FLOOR_S))


def jct_values(rec: Recorder) -> np.ndarray:
    end = np.asarray(rec.end, dtype=float)
    done = ~np.isnan(end)
    return end[done] - np.asarray(rec.submit, dtype=float)[done]


def _mean(a) -> float:
    return float(a.mean()) if a.size else 0.0


def _pct(a, q: float) -> float:
    return float(np.percentile(a, q)) if a.size else 0.0

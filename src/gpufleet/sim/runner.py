"""One replay end to end: trace + cluster + scheduler config -> numbers (and what plots need)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpufleet.domain import ValidationError
from gpufleet.scheduler import SchedulerConfig
from gpufleet.sim.cluster import Cluster, load_cluster, with_trace_tenants
from gpufleet.sim.failures import FailureModel
from gpufleet.sim.engine import RESTART_MODES, Progress, SchedulerFn, Simulation, SimOptions
from gpufleet.sim.importers import load_trace
from gpufleet.sim.metrics import summarize
from gpufleet.sim.recorder import Recorder
from gpufleet.sim.timelimit import parse_time_limit_model
from gpufleet.sim.trace import Trace


@dataclass(slots=True)
class SimResult:
    label: str
    summary: dict[str, Any]
    recorder: Recorder


def prepare(trace_path: str | Path, cluster_path: str | Path, fmt: str = "auto",
            time_limit_model: str | None = None, tenant_shares: str = "weight") -> tuple[Trace, Cluster]:
    """Read the trace and the cluster once; both can be replayed under many configs."""
    model = parse_time_limit_model(time_limit_model)
    cluster = load_cluster(cluster_path)
    trace = load_trace(trace_path, fmt, model)
    return trace, with_trace_tenants(cluster, trace.tenants, tenant_shares)


def replay(trace: Trace, cluster: Cluster, config: SchedulerConfig, restart: str = "resume",
           progress: Progress | None = None, scheduler: SchedulerFn | None = None,
           label: str | None = None, cycle_interval_s: float = 0.0,
           failures: FailureModel | None = None) -> SimResult:
    if restart not in RESTART_MODES:
        raise ValidationError("restart", f"must be one of {list(RESTART_MODES)}, got {restart!r}")
    if not cycle_interval_s >= 0:
        raise ValidationError("cycle_interval", f"must be >= 0 seconds, got {cycle_interval_s!r}")
    opts = SimOptions(config=config, restart=restart, cycle_interval_s=cycle_interval_s, failures=failures)
    sim = Simulation(trace, cluster, opts, scheduler)
    rec = sim.run(progress)
    summary = summarize(rec)
    summary = {**describe(trace, cluster, config, restart, sim), **summary}
    return SimResult(label or policy_label(config), summary, rec)


def describe(trace: Trace, cluster: Cluster, config: SchedulerConfig, restart: str,
             sim: Simulation) -> dict[str, Any]:
    jobs = sim.trace
    span = (jobs[-1].submit_s - jobs[0].submit_s) if len(jobs) > 1 else 0.0
    demand = sum(j.duration_s * j.gpus for j in jobs)
    gpus = cluster.total_gpus
    return {
        "policy": config.policy,
        "backfill": config.backfill,
        "config": dataclasses.asdict(config),
        "trace_source": trace.source,
        "trace_jobs": len(trace.jobs),
        "rejected": len(sim.rejected),
        "cluster_nodes": len(cluster.nodes),
        "cluster_gpus": gpus,
        "tenants": len(cluster.tenants),
        # offered load: GPU-seconds asked for / GPU-seconds the cluster has over the arrival span
        "offered_load": demand / (gpus * span) if gpus and span else 0.0,
        "restart": restart,
        "cycle_interval_s": sim.opt.cycle_interval_s,
        "failures": sim.opt.failures.describe() if sim.opt.failures is not None else None,
    }


def policy_label(config: SchedulerConfig) -> str:
    return config.policy + ("+backfill" if config.backfill else "")

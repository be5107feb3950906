"""Builders for small simulator cases: traces, clusters, one-call replays."""

from __future__ import annotations

from gpufleet.domain import Gpu, Node
from gpufleet.scheduler import SchedulerConfig
from gpufleet.sim import Cluster, Trace, TraceJob, replay, with_trace_tenants
from gpufleet.sim.engine import Simulation, SimOptions


def job(jid: str, submit: float, duration: float, gpus: int = 1, **kw) -> TraceJob:
    kw.setdefault("time_limit_s", int(max(1, duration)))  # exact estimates unless a test says otherwise
    return TraceJob(id=jid, submit_s=submit, duration_s=duration, gpus=gpus, **kw)


def cluster(nodes: int = 1, gpus: int = 8, model: str = "a100", groups: int = 2, racks: int = 0) -> Cluster:
    out = []
    for k in range(nodes):
        labels = {"rack": f"r{k // racks + 1:02d}"} if racks else {}
        size = gpus // groups if groups else gpus
        out.append(Node(name=f"n{k + 1:02d}", labels=labels,
                        gpus=tuple(Gpu(i, model, f"GPU-{k}-{i}", 81920, i // size) for i in range(gpus))))
    return Cluster(out, {})


def sim(jobs: list[TraceJob], cl: Cluster | None = None, **config) -> Simulation:
    cl = cl or cluster()
    trace = Trace(jobs)
    cl = with_trace_tenants(cl, trace.tenants)
    restart = config.pop("restart", "resume")
    config.setdefault("backfill", False)
    return Simulation(trace, cl, SimOptions(SchedulerConfig(**config), restart=restart))


def run(jobs: list[TraceJob], cl: Cluster | None = None, **config):
    """Replay and return (simulation, {trace id: (first start, end, state)})."""
    s = sim(jobs, cl, **config)
    rec = s.run()
    by_id = {tj.id: (rec.first_start[i], rec.end[i], rec.state[i]) for i, tj in enumerate(s.trace)}
    return s, by_id


def summary(jobs: list[TraceJob], cl: Cluster | None = None, **config) -> dict:
    cl = cl or cluster()
    trace = Trace(jobs)
    cl = with_trace_tenants(cl, trace.tenants)
    config.setdefault("backfill", False)
    return replay(trace, cl, SchedulerConfig(**config)).summary

"""Every Prometheus metric gpufleet exposes, on ONE dedicated CollectorRegistry (never the global).

    metrics = Metrics()                                   # main.py: one per server
    app.mount("/metrics", metrics.asgi_app())             # or: body, ctype = metrics.render()
    control loop:  metrics.update_fleet(jobs, nodes, now, unhealthy_nodes)   # every cycle (gauges,
                                                                   # and gpufleet_gpu_seconds_total)
                   metrics.observe_cycle(seconds)
                   metrics.observe_interruptions(report.interruptions)  # before update_fleet
                   metrics.add_busy(tenant, user, model, s)   # control/busy.py (gpufleet_gpu_busy_seconds_total)
    health loop:   metrics.observe_health(node_health)
    remediation:   metrics.observe_remediation(rem)       # from Remediator(on_change=...)
    recurring:     metrics.observe_schedule_run(name, outcome)

Fleet gauges (jobs, queue, GPUs) are computed into an immutable snapshot by `update_fleet` and
emitted by a custom collector at scrape time, so a scrape never sees a half-cleared gauge.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gpufleet.domain import Job, JobState, Node, NodeState

RESTART_BUCKETS = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600)
CYCLE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STATUS_VALUE = {"ok": 0, "warn": 1, "fail": 2}


@dataclass(frozen=True)
class FleetSnapshot:
    jobs: dict[tuple[str, str], int] = field(default_factory=dict)  # (state, tenant) -> count
    queue_length: int = 0
    oldest_pending_age_s: float = 0.0
    gpus_total: dict[tuple[str, str], int] = field(default_factory=dict)  # (node, model) -> count
    gpus_allocated: dict[tuple[str, str], int] = field(default_factory=dict)
    gpus_healthy: dict[tuple[str, str], int] = field(default_factory=dict)
    nodes: dict[str, int] = field(default_factory=dict)  # state -> count


def fleet_snapshot(jobs: Iterable[Job], nodes: Iterable[Node], now: float,
                   unhealthy: Iterable[str] = ()) -> FleetSnapshot:
    """Pure: the gauge values for these jobs and nodes. A GPU is healthy when its node is UP and
    not in `unhealthy` (nodes whose latest health run failed)."""
    jobs = list(jobs)
    bad = set(unhealthy)
    active = [j for j in jobs if not j.state.terminal]
    pending = [j for j in active if j.state is JobState.PENDING]
    held = {(a.node, g) for j in active if j.state is JobState.RUNNING for a in j.allocation for g in a.gpus}
    total: Tally = Tally()
    allocated: Tally = Tally()
    healthy: Tally = Tally()
    node_states: Tally = Tally()
    for n in nodes:
        node_states[n.state.value] += 1
        ok = n.state is NodeState.UP and n.name not in bad
        for g in n.gpus:
            key = (n.name, g.model)
            total[key] += 1
            allocated[key] += (n.name, g.index) in held
            healthy[key] += ok
    return FleetSnapshot(
        jobs=dict(Tally((j.state.value, j.tenant) for j in active)),
        queue_length=len(pending),
        oldest_pending_age_s=max((now - j.submitted_at for j in pending), default=0.0),
        gpus_total=dict(total), gpus_allocated=dict(allocated), gpus_healthy=dict(healthy),
        nodes=dict(node_states),
    )


class _FleetCollector(Collector):
    def __init__(self, metrics: Metrics):
        self._metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        s = self._metrics.snapshot
        jobs = GaugeMetricFamily("gpufleet_jobs", "Active jobs by state and tenant", labels=["state", "tenant"])
        for (state, tenant), n in sorted(s.jobs.items()):
            jobs.add_metric([state, tenant], n)
        yield jobs
        yield GaugeMetricFamily("gpufleet_queue_length", "Pending jobs", value=s.queue_length)
        yield GaugeMetricFamily("gpufleet_oldest_pending_age_seconds", "Age of the oldest pending job",
                                value=s.oldest_pending_age_s)
        for name, helptext, values in (
            ("gpufleet_gpus_total", "GPUs by node and model", s.gpus_total),
            ("gpufleet_gpus_allocated", "GPUs held by running jobs", s.gpus_allocated),
            ("gpufleet_gpus_healthy", "GPUs on UP nodes whose latest health run passed", s.gpus_healthy),
        ):
            fam = GaugeMetricFamily(name, helptext, labels=["node", "model"])
            for (node, model), n in sorted(values.items()):
                fam.add_metric([node, model], n)
            yield fam
        nodes = GaugeMetricFamily("gpufleet_nodes", "Nodes by state", labels=["state"])
        for state in NodeState:
            nodes.add_metric([state.value], s.nodes.get(state.value, 0))
        yield nodes

    def describe(self) -> Iterator[Any]:
        return iter(())


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()
        self._snapshot = FleetSnapshot()
        self.registry.register(_FleetCollector(self))
        r = self.registry
        self.cycle_seconds = Histogram("gpufleet_scheduling_cycle_seconds", "Scheduling cycle duration",
                                       buckets=CYCLE_BUCKETS, registry=r)
        self.health_checks = Counter("gpufleet_health_checks", "Health check results",
                                     ["check", "status"], registry=r)
        self.health_status = Gauge("gpufleet_health_check_status",
                                   "Latest result per node and check: 0 ok, 1 warn, 2 fail", ["node", "check"], registry=r)
        self.health_runs_seconds = Histogram("gpufleet_health_run_seconds", "Duration of one node's health run",
                                             registry=r)
        self.remediation_outcomes = Counter("gpufleet_remediation_outcomes", "Finished remediations by outcome",
                                            ["outcome"], registry=r)
        self.remediation_steps = Counter("gpufleet_remediation_steps", "Remediation steps by phase and result",
                                         ["phase", "result"], registry=r)
        self.schedule_runs = Counter("gpufleet_schedule_runs", "Recurring schedule runs by outcome",
                                     ["schedule", "outcome"], registry=r)
        self.gpu_seconds = Counter("gpufleet_gpu_seconds", "GPU-seconds allocated to running jobs "
                                   "(counted each control cycle; `gpufleet usage` has the exact figures)",
                                   ["tenant", "user", "gpu_model"], registry=r)
        self.gpu_busy_seconds = Counter("gpufleet_gpu_busy_seconds", "GPU-seconds sampled busy (NVML "
                                        "utilisation) on the nodes this server samples", ["tenant", "user", "gpu_model"],
                                        registry=r)
        self.job_restarts = Counter("gpufleet_job_restarts", "Runs restarted as a new attempt, by cause "
                                    "(node_fault, hang, lost, failure)", ["tenant", "cause"], registry=r)
        self.lost_gpu_hours = Counter("gpufleet_lost_gpu_hours", "GPU-hours of work lost to interrupted runs "
                                      "(since the attempt started or its newest checkpoint)", ["tenant"], registry=r)
        self.restart_seconds = Histogram("gpufleet_restart_seconds", "From a run's interruption to its new "
                                         "attempt running", ["tenant"], buckets=RESTART_BUCKETS, registry=r)
        self._restarting: dict[int, tuple[str, float]] = {}  # job -> (tenant, interrupted at)
        self._gpu_counted: dict[tuple[int, int], float] = {}  # (job, attempt) -> counted up to
        self._counted_steps: dict[tuple[str, float], int] = {}
        self._finished: set[tuple[str, float]] = set()

    @property
    def snapshot(self) -> FleetSnapshot:
        with self._lock:
            return self._snapshot

    def update_fleet(self, jobs: Iterable[Job], nodes: Iterable[Node], now: float,
                     unhealthy: Iterable[str] = ()) -> None:
        jobs, nodes = list(jobs), list(nodes)
        snap = fleet_snapshot(jobs, nodes, now, unhealthy)
        with self._lock:
            self._snapshot = snap
            self._count_gpu_seconds(jobs, nodes, now)
            self._time_restarts(jobs)

    def observe_interruptions(self, interruptions: Iterable[Any]) -> None:
        """control/loop.py's Interruption records of one cycle."""
        for i in interruptions:
            if i.lost_gpu_s > 0:
                self.lost_gpu_hours.labels(i.tenant).inc(i.lost_gpu_s / 3600)
            if i.restarted:
                self.job_restarts.labels(i.tenant, i.cause).inc()
                with self._lock:
                    self._restarting[i.job_id] = (i.tenant, i.at)

    def _time_restarts(self, jobs: list[Job]) -> None:
        """Time-to-restart of the restarted jobs whose new attempt runs now; forget those that
        ended or left the active list without running again."""
        waiting, self._restarting = self._restarting, {}
        for j in jobs:
            if j.id not in waiting:
                continue
            tenant, at = waiting.pop(j.id)
            if j.state is JobState.RUNNING and j.started_at is not None:
                self.restart_seconds.labels(tenant).observe(max(0.0, j.started_at - at))
            elif not j.state.terminal:
                self._restarting[j.id] = (tenant, at)

    def _count_gpu_seconds(self, jobs: list[Job], nodes: list[Node], now: float) -> None:
        """Add the GPU-seconds each running attempt held since the last cycle (to its end when it
        ended this cycle), per tenant, user and GPU model."""
        models = {n.name: {g.index: g.model for g in n.gpus} for n in nodes}
        seen: dict[tuple[int, int], float] = {}
        for j in jobs:
            if j.started_at is None or not j.allocation:
                continue
            key = (j.id, j.attempt)
            upto = j.ended_at if j.state.terminal and j.ended_at is not None else now
            since = max(j.started_at, self._gpu_counted.get(key, j.started_at))
            if upto > since:
                per = Tally(models.get(a.node, {}).get(g, "unknown") for a in j.allocation for g in a.gpus)
                for model, gpus in per.items():
                    self.gpu_seconds.labels(j.tenant, j.user, model).inc(gpus * (upto - since))
            seen[key] = max(since, upto)  # an ended one is kept while reported: never counted twice
        self._gpu_counted = seen

    def add_busy(self, tenant: str, user: str, gpu_model: str, seconds: float) -> None:
        """Busy GPU-seconds sampled by control/busy.py (BusySampler.on_busy)."""
        if seconds > 0:
            self.gpu_busy_seconds.labels(tenant, user, gpu_model).inc(seconds)

    def observe_cycle(self, seconds: float) -> None:
        self.cycle_seconds.observe(seconds)

    def observe_health(self, health: Any) -> None:
        """A NodeHealth (gpufleet.health.types)."""
        for r in health.records:
            self.health_checks.labels(r.check, r.status.value).inc()
            self.health_status.labels(health.node, r.check).set(STATUS_VALUE[r.status.value])
        self.health_runs_seconds.observe(sum(r.duration_s for r in health.records))

    def observe_remediation(self, rem: Any) -> None:
        """A Remediation (gpufleet.health.remediation); safe to call on every change."""
        key = (rem.node, rem.started_at)
        with self._lock:
            if key in self._finished:
                return
            seen = self._counted_steps.get(key, 0)
            new = rem.steps[seen:]
            self._counted_steps[key] = len(rem.steps)
            if rem.done:
                self._counted_steps.pop(key, None)
                self._finished.add(key)
        for step in new:
            self.remediation_steps.labels(step.phase.value, "ok" if step.ok else "failed").inc()
        if rem.done:
            self.remediation_outcomes.labels(rem.outcome).inc()

    def observe_schedule_run(self, name: str, outcome: str) -> None:
        self.schedule_runs.labels(name, outcome.split(":", 1)[0]).inc()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def asgi_app(self) -> Any:
        from prometheus_client import make_asgi_app

        return make_asgi_app(registry=self.registry)

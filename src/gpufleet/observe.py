"""Logging set-up and the Prometheus registry the server exposes at /metrics."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from gpufleet.control.loop import CycleReport
    from gpufleet.main import Server


def configure_logging(fmt: str = "auto") -> None:
    json_lines = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    form = ('{"ts":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}'
            if json_lines else "%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.basicConfig(level=logging.INFO, format=form, stream=sys.stderr, force=True)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def metrics_for(server: "Server") -> tuple[Callable[[], tuple[bytes, str]], Callable[["CycleReport"], None]]:
    reg = CollectorRegistry()
    jobs = Gauge("gpufleet_jobs", "Jobs by state and tenant", ["state", "tenant"], registry=reg)
    queue = Gauge("gpufleet_queue_length", "Pending jobs", registry=reg)
    oldest = Gauge("gpufleet_oldest_pending_seconds", "Age of the oldest pending job", registry=reg)
    gpus = Gauge("gpufleet_gpus", "GPUs by node, model and status", ["node", "model", "status"], registry=reg)
    cycle = Histogram("gpufleet_schedule_cycle_seconds", "Control cycle duration", registry=reg,
                      buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))

    def on_cycle(report: "CycleReport") -> None:
        cycle.observe(report.duration_s)

    def collect() -> tuple[bytes, str]:
        store, now = server.store, server.ctx.clock()
        active = store.active_jobs()
        jobs.clear()
        counts: dict[tuple[str, str], int] = {}
        for j in active:
            counts[(j.state.value, j.tenant)] = counts.get((j.state.value, j.tenant), 0) + 1
        for (state, tenant), n in counts.items():
            jobs.labels(state, tenant).set(n)
        pend = [j for j in active if j.state.value == "PENDING"]
        queue.set(len(pend))
        oldest.set(max((now - j.submitted_at for j in pend), default=0))
        held = {(a.node, g) for j in active for a in j.allocation for g in a.gpus}
        gpus.clear()
        for n in store.nodes():
            for g in n.gpus:
                status = "allocated" if (n.name, g.index) in held else "free"
                gpus.labels(n.name, g.model, status).inc()
        return generate_latest(reg), CONTENT_TYPE_LATEST

    return collect, on_cycle

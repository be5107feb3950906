"""The health and recurring loops: each a thread that ticks its service until `stop` is set."""

from __future__ import annotations

import threading
from typing import Any

from gpufleet.observability.logs import loop_context, loop_logger

log = loop_logger("health")
rlog = loop_logger("recurring")


def run_health(service: Any, stop: threading.Event, interval_s: float | None = None) -> None:
    """Every health interval: `service.tick()` (checks every node, stores results, starts
    remediation). `service` is a gpufleet.services.health.HealthService."""
    interval = interval_s if interval_s is not None else service.settings.interval_s
    try:
        resumed = service.start()
        if resumed:
            log.info("continuing unfinished remediations", count=resumed)
    except Exception:
        log.exception("could not resume stored remediations")
    while not stop.is_set():
        try:
            for h in service.tick():
                if h.status.value != "ok":
                    with loop_context(node=h.node):
                        log.warning("node unhealthy", status=h.status.value, run_id=h.run_id,
                                    reason=h.reason or "; ".join(r.message for r in h.records if r.status.value != "ok"))
        except Exception:
            log.exception("health tick failed; retrying next interval")
        stop.wait(interval)


def run_recurring(service: Any, stop: threading.Event, interval_s: float = 5.0) -> None:
    """Every few seconds: run the schedules whose slot has come (never twice per slot).
    `service` is a gpufleet.services.schedules.ScheduleService."""
    try:
        for name in service.start():
            rlog.warning("last run interrupted by a restart; not re-run", schedule=name)
    except Exception:
        rlog.exception("could not check interrupted schedules")
    runner = service.runner()
    while not stop.is_set():
        try:
            for fired in runner.tick():
                rlog.info("schedule ran", schedule=fired.name, slot=fired.slot, outcome=fired.outcome)
        except Exception:
            rlog.exception("recurring tick failed; retrying")
        stop.wait(interval_s)

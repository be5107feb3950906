"""The health and recurring loops: each a thread that ticks its service until `stop` is set."""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger("gpufleet.control.health")


def run_health(service: Any, stop: threading.Event, interval_s: float | None = None) -> None:
    """Every health interval: `service.tick()` (checks every node, stores results, starts
    remediation). `service` is a gpufleet.services.health.HealthService."""
    interval = interval_s if interval_s is not None else service.settings.interval_s
    try:
        resumed = service.start()
        if resumed:
            log.info("continuing %d unfinished remediation(s)", resumed)
    except Exception:
        log.exception("could not resume stored remediations")
    while not stop.is_set():
        try:
            for h in service.tick():
                if h.status.value != "ok":
                    log.warning("node %s health %s: %s", h.node, h.status.value,
                                h.reason or "; ".join(r.message for r in h.records if r.status.value != "ok"))
        except Exception:
            log.exception("health tick failed; retrying next interval")
        stop.wait(interval)


def run_recurring(service: Any, stop: threading.Event, interval_s: float = 5.0) -> None:
    """Every few seconds: run the schedules whose slot has come (never twice per slot).
    `service` is a gpufleet.services.schedules.ScheduleService."""
    try:
        for name in service.start():
            log.warning("schedule %s: its last run was interrupted by a restart (not re-run)", name)
    except Exception:
        log.exception("could not check interrupted schedules")
    runner = service.runner()
    while not stop.is_set():
        try:
            for fired in runner.tick():
                log.info("schedule %s slot %s: %s", fired.name, fired.slot, fired.outcome)
        except Exception:
            log.exception("recurring tick failed; retrying")
        stop.wait(interval_s)

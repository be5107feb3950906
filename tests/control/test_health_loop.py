"""The health and recurring loop threads: tick until stopped, survive a failing tick, log with node context."""

from __future__ import annotations

import threading
import time

from gpufleet.control.health_loop import run_health, run_recurring
from gpufleet.control.recurring import Fired
from gpufleet.health.types import CheckRecord, NodeHealth, Status


class FakeHealthService:
    def __init__(self):
        self.ticks = 0
        self.started = 0

    def start(self):
        self.started += 1
        return 2

    def tick(self):
        self.ticks += 1
        if self.ticks == 2:
            raise RuntimeError("store briefly unavailable")
        rec = CheckRecord("dgx1", "xid", 0, Status.FAIL, "GPU 3: XID 79", {}, 0, "r")
        return [NodeHealth("dgx1", 0, "r", (rec,))]


class FakeScheduleService:
    def __init__(self):
        self.fired = 0

    def start(self):
        return ["nightly"]

    def runner(self):
        svc = self

        class R:
            def tick(self):
                svc.fired += 1
                return [Fired("nightly", 0.0, "ok")]
        return R()


def run_until(target, service, condition, **kw):
    stop = threading.Event()
    t = threading.Thread(target=target, args=(service, stop), kwargs=kw, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    t.join(5)
    assert not t.is_alive()


def test_health_loop_ticks_survives_errors_and_stops():
    svc = FakeHealthService()
    run_until(run_health, svc, lambda: svc.ticks >= 4, interval_s=0.01)
    assert svc.started == 1 and svc.ticks >= 4


def test_recurring_loop_marks_interrupted_then_ticks():
    svc = FakeScheduleService()
    run_until(run_recurring, svc, lambda: svc.fired >= 3, interval_s=0.01)
    assert svc.fired >= 3

"""Slurm has no watch API: `EndWatch` stands in for one (Ability.WATCH of the Slurm executor).

While any job of ours is in Slurm's queue, a thread looks every `interval_s` which of them are
still there with a cheap call (`squeue -h -o %i`: ~7 ms of CPU on the dev cluster, against ~70
for the `squeue --json` a control cycle's poll runs) and calls the listeners (the control loop's
wake) when one left: the loop then observes it and refills its GPUs at once, instead of at its next
interval. The set it looks at: jobs this process submitted, plus what each poll saw not ended (jobs
adopted after a restart); an id leaves it once seen gone or ended.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Iterable

from gpufleet.executors.base import Observation

log = logging.getLogger(__name__)
UNAVAILABLE_PAUSE_S = 5.0


class EndWatch:
    def __init__(self, live_ids: Callable[[], set[int]], interval_s: float):
        self.live_ids = live_ids  # ids Slurm has not finished
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._ids: set[int] = set()
        self._listeners: list[Callable[[], None]] = []
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    def add(self, job_id: int) -> None:
        with self._lock:
            self._ids.add(job_id)

    def seen(self, observations: Iterable[Observation]) -> None:
        """What a poll saw: ended runs leave the set, running ones (maybe adopted) join it."""
        with self._lock:
            for obs in observations:
                if obs.handle and obs.handle.isdigit():
                    (self._ids.discard if obs.phase.ended else self._ids.add)(int(obs.handle))

    def listen(self, on_end: Callable[[], None]) -> None:
        """Call `on_end()` whenever a watched job left Slurm's queue; starts the thread."""
        if self.interval_s <= 0:
            return
        with self._lock:
            self._listeners.append(on_end)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="slurm-watch", daemon=True)
                self._thread.start()

    def look(self) -> bool:
        """One look: True (and the listeners called) when a watched job is gone."""
        with self._lock:
            watched = set(self._ids)
        if not watched:
            return False
        gone = watched - self.live_ids()
        if not gone:
            return False
        with self._lock:
            self._ids -= gone
            listeners = list(self._listeners)
        for fn in listeners:
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - a listener must not stop the watch
                log.warning("slurm: watch listener failed: %s", e)
        return True

    def _run(self) -> None:
        pause = self.interval_s
        while not self._closed.wait(pause):
            pause = self.interval_s
            try:
                self.look()
            except Exception as e:  # noqa: BLE001 - slurmctld away: the poll says so; look later
                log.debug("slurm: watch: %s", e)
                pause = max(UNAVAILABLE_PAUSE_S, pause)

    def close(self) -> None:
        self._closed.set()

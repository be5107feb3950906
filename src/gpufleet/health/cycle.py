"""One health interval, as the control loop calls it: check every node, store the results, start
remediation for new failures (drain synchronously, the rest in worker threads).

    cycle = HealthCycle(runner, remediator, nodes=..., save_results=..., active=..., workers=workers)
    every health.interval:  cycle.tick()
    on server start:        workers.resume_all(store.open_remediations())
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable

from gpufleet.domain import Node, NodeState
from gpufleet.health.remediation import Remediation, Remediator, should_remediate
from gpufleet.health.runner import HealthRunner
from gpufleet.health.types import NodeHealth


class RemediationWorkers:
    """At most one running remediation per node, each in a worker thread (runbooks and burn-ins
    block for minutes)."""

    def __init__(self, remediator: Remediator, max_workers: int = 4, poll_s: float = 10.0):
        self.remediator = remediator
        self.poll_s = poll_s
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="remediation")
        self._running: dict[str, Future] = {}
        self._lock = threading.Lock()

    def submit(self, rem: Remediation) -> bool:
        with self._lock:
            running = self._running.get(rem.node)
            if running is not None and not running.done():
                return False
            self._running[rem.node] = self._pool.submit(self.remediator.run, rem, self.poll_s)
            return True

    def resume_all(self, open_remediations: Iterable[Remediation]) -> int:
        """After a restart: continue every stored, unfinished remediation."""
        return sum(self.submit(rem) for rem in open_remediations if not rem.done)

    def busy(self, node: str) -> bool:
        with self._lock:
            f = self._running.get(node)
            return f is not None and not f.done()

    def wait(self, timeout: float | None = None) -> None:
        with self._lock:
            futures = list(self._running.values())
        for f in futures:
            f.result(timeout=timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class HealthCycle:
    runner: HealthRunner
    remediator: Remediator | None  # None: detect and record only
    nodes: Callable[[], Iterable[Node]]  # the nodes now, with their state
    save_results: Callable[[NodeHealth], None]  # store the records (table health_results)
    active: Callable[[str], Remediation | None]  # the node's unfinished remediation, if any
    workers: RemediationWorkers | None = None  # None: run remediations inline (tests, CLI)
    on_result: Callable[[NodeHealth], None] = field(default=lambda h: None)  # metrics, logs
    skip_states: frozenset[NodeState] = frozenset({NodeState.DOWN})

    def tick(self, only: Iterable[str] | None = None) -> list[NodeHealth]:
        """Check every node (or those named in `only`); start remediation where a check fails."""
        wanted = set(only) if only is not None else None
        results: list[NodeHealth] = []
        for node in self.nodes():
            if (wanted is not None and node.name not in wanted) or node.state in self.skip_states:
                continue
            health = self.runner.run(node)
            self.save_results(health)
            self.on_result(health)
            results.append(health)
            self._maybe_remediate(node, health)
        return results

    def _maybe_remediate(self, node: Node, health: NodeHealth) -> None:
        if self.remediator is None:
            return
        if not should_remediate(health, node.state, self.active(node.name) is not None):
            return
        rem = self.remediator.start(node.name, health)
        self.remediator.step(rem)  # drain now: within this interval, before the next scheduling cycle
        if self.workers is not None:
            self.workers.submit(rem)
        else:
            self.remediator.run(rem, poll_s=0.0)

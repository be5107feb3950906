"""Several engines behind one server: an executor per node pool.

Every node belongs to one pool (its `pool` label; no label: the default pool) and every pool has
its executor (local nodes, a Slurm partition, a Kubernetes cluster, a labgrid board farm). The
`PoolRouter` has the executor shape, so the control loop, the services and the API talk to it as to
one engine: it routes each launch, poll, cancel, logs, results, drain and booking to the executor of
the pool of the job's (or the node's) node. The scheduler does not change: it sees one node list;
a job picks a pool, if it must, with the constraint `pool=<name>` (or kind/arch/labels).

`sync(store)` is step 3 of the control loop for such a server: each pool that owns its inventory
(Ability.NODES) refreshes its own nodes; the inventory file's nodes keep their admin state; a pool
whose engine is unreachable leaves its nodes as they were; a node gone from its engine goes DOWN.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any, Callable, Iterable, Mapping, Sequence

from gpufleet.domain import Booking, Job, Node, NodeState, transition
from gpufleet.executors.base import Ability, Executor, ExecutorBase, LogChunk, Observation, ResultFile
from gpufleet.observability.logs import loop_logger

log = loop_logger("pools")
POOL_LABEL = "pool"
DEFAULT_POOL = "default"


class PoolRouter(ExecutorBase):
    """One executor per node pool, behind the one executor shape."""

    name = "pools"

    def __init__(self, pools: Mapping[str, Executor], default: str = DEFAULT_POOL,
                 node_pool: Callable[[str], str | None] | None = None,
                 clock: Callable[[], float] = time.time):
        if default not in pools:
            raise ValueError(f"the default pool {default!r} has no executor")
        self.pools = dict(pools)
        self.default = default
        self.clock = clock
        self._lookup = node_pool  # name -> pool label of a node we have not seen yet (the store)
        self._pool_of: dict[str, str] = {}
        # what any pool can do (submit-time checks); launch checks the pool the job landed in.
        # Launches may come in parallel: a pool whose engine does not declare CONCURRENT_LAUNCH
        # gets them one at a time (its lock)
        self.abilities = frozenset().union(*(ex.abilities for ex in self.pools.values()),
                                           {Ability.CONCURRENT_LAUNCH})
        self._serial = {name: threading.Lock() for name, ex in self.pools.items()
                        if Ability.CONCURRENT_LAUNCH not in ex.abilities}
        # a spec field is required only when every pool requires it
        self.requires = frozenset.intersection(*(frozenset(ex.requires) for ex in self.pools.values()))
        accounts = {ex.runs_jobs_as for ex in self.pools.values()}
        self.runs_jobs_as = accounts.pop() if len(accounts) == 1 else None

    # which pool --------------------------------------------------------------------------------
    def learn(self, nodes: Iterable[Node]) -> None:
        """Remember the pool of these nodes (the inventory file's, or an engine's)."""
        for n in nodes:
            self._pool_of[n.name] = n.labels.get(POOL_LABEL) or self.default

    def pool_of_node(self, node: str) -> str:
        pool = self._pool_of.get(node)
        if pool is None and self._lookup is not None:
            try:
                pool = self._lookup(node)
            except Exception:  # an unknown node: the default pool's engine answers for it
                pool = None
            pool = pool or self.default
            self._pool_of[node] = pool
        return pool if pool in self.pools else self.default

    def pool_of(self, job: Job) -> str:
        """The pool of the job's nodes; a job spanning pools is refused at launch."""
        pools = {self.pool_of_node(n) for n in job.node_names}
        if len(pools) > 1:
            raise ValueError(f"job {job.id} spans node pools {', '.join(sorted(pools))}; "
                             "a job runs in one pool (constraint pool=<name>)")
        return pools.pop() if pools else self.default

    def executor_of(self, job: Job) -> Executor:
        return self.pools[self.pool_of(job)]

    # the executor shape ------------------------------------------------------------------------
    def launch(self, job: Job) -> str | None:
        pool = self.pool_of(job)
        ex = self.pools[pool]
        if job.spec.image and Ability.IMAGES not in ex.abilities:
            raise ValueError(f"node pool {pool} ({ex.name}) does not run container images")
        missing = [f for f in sorted(ex.requires) if not getattr(job.spec, f, None)]
        if missing:
            raise ValueError(f"{missing[0]} is required by node pool {pool} ({ex.name})")
        lock = self._serial.get(pool)
        if lock is None:
            return ex.launch(job) or f"{ex.name}:{job.id}"
        with lock:
            return ex.launch(job) or f"{ex.name}:{job.id}"

    def poll(self, jobs: Sequence[Job]) -> list[Observation]:
        """Each pool polls its own jobs; an unreachable engine leaves its jobs as they are and
        does not stop the other pools from being observed."""
        groups: dict[str, list[Job]] = {}
        for job in jobs:
            try:
                groups.setdefault(self.pool_of(job), []).append(job)
            except ValueError:
                continue
        out: list[Observation] = []
        for pool, group in groups.items():
            try:
                out.extend(self.pools[pool].poll(group))
            except Exception as e:
                log.warning("poll failed; jobs left as they are", pool=pool, error=str(e))
        return out

    def cancel(self, job: Job) -> None:
        self.executor_of(job).cancel(job)

    def watch(self, on_event: Callable[[], None]) -> None:
        """Every pool whose engine can tell when a job ended calls `on_event`."""
        for ex in self.pools.values():
            if Ability.WATCH in ex.abilities:
                ex.watch(on_event)

    def logs(self, job: Job, offset: int = 0, rank: int = 0, attempt: int | None = None) -> LogChunk:
        ex = self.executor_of(job)
        if Ability.LOGS not in ex.abilities:
            return ExecutorBase.logs(ex, job, offset, rank, attempt)  # type: ignore[arg-type]
        return ex.logs(job, offset, rank, attempt)

    def open_session(self, job: Job, argv: Sequence[str], **kw: Any) -> Any:
        ex = self.executor_of(job)
        if Ability.SESSIONS not in ex.abilities:
            return ExecutorBase.open_session(ex, job, argv, **kw)  # type: ignore[arg-type]
        return ex.open_session(job, argv, **kw)

    def results(self, job: Job, attempt: int) -> tuple[list[ResultFile], list[str]]:
        ex = self.executor_of(job)
        if Ability.RESULTS not in ex.abilities:
            return [], [f"results are not collected from the {ex.name} engine yet"]
        return ex.results(job, attempt)  # type: ignore[attr-defined]

    def perf_verdicts(self, job: Job, attempt: int) -> tuple[list[dict], list[str]]:
        ex = self.executor_of(job)
        if Ability.PERF_IN_JOB not in ex.abilities:
            return [], []
        return ex.perf_verdicts(job, attempt)  # type: ignore[attr-defined]

    def last_sign_of_life(self, job: Job) -> float | None:
        ex = self.executor_of(job)
        return ex.last_sign_of_life(job) if Ability.HEARTBEAT in ex.abilities else None  # type: ignore[attr-defined]

    def last_checkpoint(self, job: Job) -> float | None:
        return self.executor_of(job).last_checkpoint(job)

    def nodes(self) -> list[Node]:
        """The nodes of the pools that own their inventory, each labelled with its pool."""
        out: list[Node] = []
        for pool, ex in self.pools.items():
            if Ability.NODES in ex.abilities:
                out.extend(self._pool_nodes(pool, ex))
        return out

    def _pool_nodes(self, pool: str, ex: Executor) -> list[Node]:
        nodes = ex.nodes()
        for n in nodes:
            n.labels[POOL_LABEL] = pool
        self.learn(nodes)
        return nodes

    def drain(self, node: str, reason: str) -> None:
        ex = self.pools[self.pool_of_node(node)]
        if Ability.DRAIN in ex.abilities:
            ex.drain(node, reason)

    def resume(self, node: str) -> None:
        ex = self.pools[self.pool_of_node(node)]
        if Ability.DRAIN in ex.abilities:
            ex.resume(node)

    def book(self, booking: Booking) -> None:
        for ex, part in self._booking_parts(booking):
            ex.book(part)

    def unbook(self, booking: Booking) -> None:
        for ex, part in self._booking_parts(booking):
            ex.unbook(part)

    def _booking_parts(self, booking: Booking) -> list[tuple[Executor, Booking]]:
        """The booking's nodes, per pool whose engine mirrors bookings."""
        parts = []
        for pool, ex in self.pools.items():
            if Ability.BOOKINGS not in ex.abilities:
                continue
            mine = tuple(n for n in booking.nodes if self.pool_of_node(n) == pool)
            if mine:
                parts.append((ex, replace(booking, nodes=mine)))
        return parts

    def close(self) -> None:
        for pool, ex in self.pools.items():
            try:
                ex.close()
            except Exception as e:
                log.warning("closing the executor failed", pool=pool, error=str(e))

    # step 3 of the control loop ----------------------------------------------------------------
    def sync(self, store) -> None:
        """Refresh the nodes of every pool that owns its inventory, pool by pool."""
        current = store.nodes()
        self.learn(current)
        taken = {n.name: self._pool_of[n.name] for n in current}
        for pool, ex in self.pools.items():
            if Ability.NODES not in ex.abilities:
                continue
            try:
                fresh = self._pool_nodes(pool, ex)
            except Exception as e:
                log.warning("could not refresh the nodes of a pool; left as they were", pool=pool,
                            executor=ex.name, error=str(e))
                continue
            mine = [n for n in fresh if taken.get(n.name, pool) == pool]
            for n in fresh:
                if taken.get(n.name, pool) != pool:
                    log.warning("node name taken by another pool; ignored", pool=pool, node=n.name,
                                other=taken[n.name])
            self._pool_of.update({n.name: taken[n.name] for n in fresh if n.name in taken})
            store.sync_nodes(mine, keep_state=False, prune=False)
            self._gone(store, pool, current, {n.name for n in mine})

    def _gone(self, store, pool: str, current: list[Node], names: set[str]) -> None:
        for n in current:
            if n.labels.get(POOL_LABEL) == pool and n.name not in names and n.state is not NodeState.DOWN:
                change = transition(n, NodeState.DOWN, f"no longer reported by node pool {pool}", self.clock())
                store.save_node(n, change)

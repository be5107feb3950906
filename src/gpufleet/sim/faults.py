"""Node faults inside a replay (the engine's part of `sim/failures.py`): a fault takes a node DOWN
and kills every job on it (the whole gang), which keeps only the progress of its last completed
checkpoint and is requeued as a new attempt that first pays its restart cost; the node comes back
after its repair time. With hot spares, a killed gang is restarted at once on its healthy nodes
plus an idle spare (same topology domain first) instead of waiting in the queue; a repaired node
refills its domain's spares before it returns to the pool.

Events: (time, FAULT | INJECTED, node index) and (time, REPAIR, node index) in the engine's heap.
Faults never keep a replay alive: it ends when jobs, arrivals, timers and repairs are done. A node
has one armed random fault at a time (`armed`); a fault of any kind disarms it, its repair arms the
next one.
"""

from __future__ import annotations

import dataclasses
import math

from gpufleet.domain import Allocation, Job, JobState, NodeState, ValidationError, transition
from gpufleet.scheduler import Placement
from gpufleet.sim.failures import FailureModel, NodeFaults, progress_s, run_wall_s

FAULT, REPAIR, INJECTED = -1, -2, -3  # event ids below the cycle timer's 0 and every job id
SPARE = "spare"


class FaultsMixin:
    """Mixed into `Simulation`; only active when `SimOptions.failures` is set."""

    def _setup_faults(self, model: FailureModel) -> None:
        nodes = self.nodes
        self.node_index = {nd.name: i for i, nd in enumerate(nodes)}
        self.out: set[str] = set()  # names of nodes the scheduler may not use (down, spare)
        self.faults = NodeFaults(model, [nd.name for nd in nodes], [len(nd.gpus) for nd in nodes])
        self.domain = [nd.labels.get(model.spare_domain, "") for nd in nodes]
        self.spares: dict[str, list[int]] = {}
        if model.spares_per_domain:
            by_domain: dict[str, list[int]] = {}
            for i in sorted(range(len(nodes)), key=lambda i: nodes[i].name):
                if nodes[i].state is NodeState.UP:
                    by_domain.setdefault(self.domain[i], []).append(i)
            for dom, members in sorted(by_domain.items()):
                self.spares[dom] = []
                for i in members[-model.spares_per_domain:]:
                    self._set_node(i, NodeState.DRAIN, SPARE, 0.0)
                    self.spares[dom].append(i)

    def _arm_faults(self) -> None:
        self.armed = [math.inf] * len(self.nodes)
        for i in range(len(self.nodes)):
            self._arm(i, 0.0, push=False)
        for name, t in self.opt.failures.injected:
            i = self.node_index.get(name)
            if i is None:
                raise ValidationError("failures.inject", f"no node {name!r} in the cluster")
            self.events.append((t, INJECTED, i))
        # heapified by the caller

    def _arm(self, i: int, since: float, push: bool = True) -> None:
        t = self.faults.next_fault(i, since)
        self.armed[i] = t
        if math.isfinite(t):
            if push:
                self.events_push(t, FAULT, i)
            else:
                self.events.append((t, FAULT, i))

    def _job_params(self, model: FailureModel | None) -> None:
        n = len(self.trace)
        self.pay_restart = [False] * n
        self.failed_at: list[float | None] = [None] * n
        self.run_restart = [0.0] * n  # the restart cost the current run began with
        if model is None:
            return
        self.ck_every = [tj.checkpoint_interval_s if tj.checkpoint_interval_s is not None
                         else model.checkpoint_interval_s for tj in self.trace]
        self.ck_cost = [tj.checkpoint_cost_s if tj.checkpoint_cost_s is not None
                        else model.checkpoint_cost_s for tj in self.trace]
        self.restart_cost = [tj.restart_cost_s if tj.restart_cost_s is not None
                             else model.restart_cost_s for tj in self.trace]

    # -- nodes ------------------------------------------------------------------------------------

    def _set_node(self, i: int, state: NodeState, reason: str, t: float) -> None:
        """A new Node object in a new tuple (the cluster's own objects stay untouched; the
        scheduler's kept Base sees a new `nodes` object and rebuilds)."""
        old = self.nodes[i]
        node = dataclasses.replace(old, labels=dict(old.labels))
        transition(node, state, reason, t)
        nodes = list(self.nodes)
        nodes[i] = node
        self.nodes = tuple(nodes)
        if old.state is NodeState.UP and state is not NodeState.UP:
            self.out.add(node.name)
            self.rec.node_out(node.name)
        elif state is NodeState.UP and old.state is not NodeState.UP:
            self.out.discard(node.name)
            self.rec.node_in(node.name)

    def _node_event(self, kind: int, i: int, t: float) -> bool:
        if kind == REPAIR:
            return self._repaired(i, t)
        if kind == FAULT and t != self.armed[i]:
            return False  # disarmed by an injected fault since
        if self.nodes[i].state is NodeState.DOWN:
            return False  # an injected fault on a node already down
        return self._fault(i, t)

    def _fault(self, i: int, t: float) -> bool:
        name = self.nodes[i].name
        self.armed[i] = math.inf
        self.rec.node_faults += 1
        if self.nodes[i].state is NodeState.DRAIN:  # an idle spare
            self.spares[self.domain[i]].remove(i)
        victims = [job for job in self.running.values() if any(a.node == name for a in job.allocation)]
        helds = [self._kill(job, name, t) for job in victims]  # the node is free once all are gone
        self._set_node(i, NodeState.DOWN, "fault", t)
        self.events_push(t + self.faults.repair_time(i), REPAIR, i)
        for job, held in zip(victims, helds):
            self._replace(job, held, i, t)
        return bool(victims) or bool(self.pending)

    def _repaired(self, i: int, t: float) -> bool:
        """Back as a spare while the pool is short (its own domain, or in all: a spare lent to
        another domain is not lost), unless a killed job waits in the queue for a node."""
        dom = self.domain[i]
        want = self.opt.failures.spares_per_domain
        short = dom in self.spares and (len(self.spares[dom]) < want or
                                        sum(map(len, self.spares.values())) < want * len(self.spares))
        waiting = any(self.failed_at[job.id - 1] is not None for job in self.pending.values())
        if short and not waiting:
            self._set_node(i, NodeState.DRAIN, SPARE, t)
            self.spares[dom].append(i)
            changed = False
        else:
            self._set_node(i, NodeState.UP, "", t)
            changed = True
        self._arm(i, t)
        return changed

    # -- jobs -------------------------------------------------------------------------------------

    def _kill(self, job: Job, node: str, t: float) -> tuple[Allocation, ...]:
        """Its gang dies with the node: back to pending, progress to its last checkpoint."""
        idx = job.id - 1
        self.running.pop(job.id)
        ran = t - job.started_at if job.started_at is not None else 0.0
        held = job.allocation
        transition(job, JobState.PENDING, f"NodeFail({node})", t)
        self.tokens[idx] += 1
        kept = self._progress(idx, held, ran, saved_only=True)
        self.remaining[idx] = max(0.0, self.remaining[idx] - kept)
        self._release(job, held, ran)
        self.rec.restarts += 1
        self.pay_restart[idx] = True
        self.failed_at[idx] = t
        self.pending[job.id] = job
        return held

    def _replace(self, job: Job, held: tuple[Allocation, ...], failed: int, t: float) -> None:
        """With spares: the same nodes but the failed one, which an idle spare replaces."""
        name = self.nodes[failed].name
        lost = next(a for a in held if a.node == name)
        model = job.spec.gpu_model
        spare = self._pick_spare(self.domain[failed], len(lost.gpus), model, {a.node for a in held})
        if spare is None:
            return  # it waits in the queue like any other job
        self.spares[self.domain[spare]].remove(spare)
        self._set_node(spare, NodeState.UP, "", t)
        node = self.nodes[spare]
        gpus = tuple(g.index for g in node.gpus if model is None or g.model == model)[: len(lost.gpus)]
        alloc = tuple(a if a.node != name else Allocation(node.name, gpus) for a in held)
        self.rec.spare_replacements += 1
        self._place(Placement(job.id, alloc), t)

    def _pick_spare(self, domain: str, gpus: int, model: str | None, avoid: set[str]) -> int | None:
        order = [domain] + sorted((d for d in self.spares if d != domain),
                                  key=lambda d: (-len(self.spares[d]), d))
        for dom in order:
            for i in sorted(self.spares.get(dom, ()), key=lambda i: self.nodes[i].name):
                nd = self.nodes[i]
                if nd.name not in avoid and sum(1 for g in nd.gpus if model is None or g.model == model) >= gpus:
                    return i
        return None

    def _progress(self, idx: int, held: tuple[Allocation, ...], ran: float, saved_only: bool,
                  keep: bool = True) -> float:
        """Progress a run made (what it keeps), and the GPU-time accounting of the run:
        allocated = useful + lost (not checkpointed at a fault, or discarded) + restart + checkpoints."""
        gpus = sum(len(a.gpus) for a in held)
        rec = self.rec
        if self.opt.failures is None:
            if keep:
                rec.useful_gpu_s += gpus * ran
            else:
                rec.lost_gpu_s += gpus * ran
            return ran
        every, cost, restart = self.ck_every[idx], self.ck_cost[idx], self.run_restart[idx]
        worked = progress_s(ran, every, cost, restart, saved_only=False)
        kept = progress_s(ran, every, cost, restart, saved_only=True) if saved_only else worked
        if not keep:
            kept = 0.0
        rec.useful_gpu_s += gpus * kept
        rec.lost_gpu_s += gpus * (worked - kept)
        rec.restart_gpu_s += gpus * min(ran, restart)
        rec.checkpoint_gpu_s += gpus * max(0.0, ran - min(ran, restart) - worked)
        return kept

    def _run_wall(self, idx: int, t: float) -> float:
        """Wall seconds the run starting now needs; remembers its restart cost."""
        restart = self.restart_cost[idx] if self.pay_restart[idx] else 0.0
        self.pay_restart[idx] = False
        self.run_restart[idx] = restart
        since = self.failed_at[idx]
        if since is not None:
            self.rec.time_to_restart.append(t - since + restart)
            self.failed_at[idx] = None
        return run_wall_s(self.remaining[idx], self.ck_every[idx], self.ck_cost[idx], restart)

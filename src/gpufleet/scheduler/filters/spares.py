"""Hot spares (issue 17): nodes held idle, or running only preemptible work, in each topology
domain, so that a gang restarted after a node fault never waits in the queue.

- A node's domain is its network block (label `switch` or `block`, as `pack_gang` packs by), else
  its rack (label `rack`); nodes with neither form one domain.
- The spares of a domain, recomputed every cycle from the snapshot: its UP nodes labelled
  `spare=true`, always; then, up to `spares_per_block` spares in all, the UP nodes that hold
  nothing but preemptible work, highest name first (the simulator's choice too, `sim/faults.py`).
  A spare only stays one while nothing else can start on it, so the choice is stable; one a restart
  took is busy and the next candidate of its domain becomes a spare (the pool refills itself).
- Only a restarted job (`Job.failures > 0`: the control loop restarted it after a node fault or a
  failure) and preemptible work (priority class below 0, the scavenger classes) may use a spare.
  A restart that needs a spare running preemptible work preempts it (priority classes; needs
  `preemption`). Every other job sees the spares as unavailable, and one blocked by them alone
  waits with `HotSpares(...)`.
"""

from __future__ import annotations

from typing import Collection, Iterable

from gpufleet.domain import Job
from gpufleet.scheduler.state import ClusterState


class SpareRules:
    name = "HotSpares"

    def __init__(self, state: ClusterState, running: Iterable[Job], foreign: Iterable[str],
                 per_block: int, class_size: int):
        self.per_block = per_block
        self.class_size = class_size
        self.nodes: frozenset[int] = frozenset()
        if per_block <= 0 and not state.spare_labelled:
            return
        busy = {state.pos[n] for n in foreign if n in state.pos}
        for job in running:
            if not self.preemptible(job):
                busy.update(state.pos[a.node] for a in job.allocation if a.node in state.pos)
        chosen: dict[tuple[str, str], list[int]] = {}
        for i in state.spare_labelled:
            if state.up[i]:
                chosen.setdefault(domain(state, i), []).append(i)
        if per_block > 0:
            nodes, labelled_nodes = state.nodes, set(state.spare_labelled)
            for i in sorted(range(len(nodes)), key=lambda i: nodes[i].name, reverse=True):
                if not state.up[i] or i in busy or i in labelled_nodes:
                    continue
                held = chosen.setdefault(domain(state, i), [])
                if len(held) < per_block:
                    held.append(i)
        self.nodes = frozenset(i for held in chosen.values() for i in held)

    def __bool__(self) -> bool:
        return bool(self.nodes)

    def preemptible(self, job: Job) -> bool:
        return job.spec.priority // self.class_size < 0

    def allows(self, job: Job) -> bool:
        """May `job` run on a spare: a restart after a fault or failure, or preemptible work."""
        return job.failures > 0 or self.preemptible(job)

    def held_from(self, job: Job) -> frozenset[int]:
        """The spare nodes `job` may not use (none when it may use them all)."""
        return self.nodes if self.nodes and not self.allows(job) else frozenset()

    def taken(self, job: Job, victim_on: Collection[int], nodes: Iterable[int]) -> int | None:
        """The spare a restarted `job` takes from a victim on `victim_on`, if any (for the reason)."""
        if not self.nodes or job.failures <= 0:
            return None
        return min((i for i in nodes if i in self.nodes and i in victim_on), default=None)

    def context(self, job: Job) -> tuple:
        """Everything the gate's spare check depends on for this job, as a cache key."""
        return (self.allows(job),) if self.nodes else ()

    def describe(self, needs: str, held: int) -> str:
        return (f"HotSpares(needs {needs}; {held} {'node' if held == 1 else 'nodes'} held as hot spares "
                f"(spares_per_block={self.per_block}) for restarts and preemptible work)")


def domain(state: ClusterState, i: int) -> tuple[str, str]:
    """Node i's topology domain: (network block, "") or ("", rack); ("", "") for unlabelled nodes."""
    block, rack = state.rack[i]
    return (block, "") if block else ("", rack)

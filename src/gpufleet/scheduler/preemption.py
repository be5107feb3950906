"""Step 4: preempt. Choose running jobs to stop so that a blocked job can start, at least cost.

Who may preempt whom (victims are always whole jobs, gangs included):
- priority: a job of a higher priority class preempts lower-class jobs of its own tenant, and
  lower-class *borrowed* jobs of other tenants;
- quota reclaim: a job that fits within its tenant's guaranteed quota preempts other tenants'
  *borrowed* jobs on that model, whatever their class (guaranteed means guaranteed).
Cost of a victim, cheapest first: borrowed before guaranteed, then fewest GPU-hours lost (GPUs x
time since it started), then lower priority. Per node the cheaper of "the single cheapest victim
that frees enough" and "cheapest victims until enough"; then the cheapest nodes.

A preemptor does not start in the cycle that chose its victims: their processes must exit first.
It is told `Preempting(jobs ...)`, the GPUs are held for it for the rest of the cycle, and in later
cycles the victims (still RUNNING with `extra["pending_action"]` set by the control loop) count as
*leaving*: their GPUs are claimed by the first job in queue order that needs them, and no second
set of victims is chosen meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from gpufleet.domain import Job


@dataclass(slots=True)
class Victim:
    job: Job
    model: str
    cls: int
    borrowed: bool
    booked: bool
    lost_gpu_h: float
    on: dict[int, int] = field(default_factory=dict)  # node -> GPUs of `model` there

    @property
    def cost(self) -> tuple:
        return (0 if self.borrowed else 1, self.lost_gpu_h, self.job.spec.priority, self.job.id)


Plan = tuple[list[int], list[Victim]]


class Victims:
    def __init__(self) -> None:
        self.by_id: dict[int, Victim] = {}
        self.by_owner: dict[tuple[str, str], list[Victim]] = {}  # (tenant, model) -> its running jobs
        self.borrowed: dict[str, list[Victim]] = {}  # model -> borrowed jobs on it
        self.leaving: dict[int, dict[str, int]] = {}  # node -> model -> GPUs being freed, unclaimed
        self.leaving_jobs: dict[int, set[int]] = {}  # node -> ids of the jobs freeing them
        self.leaving_total: dict[str, int] = {}
        self.min_class: dict[str, int] = {}  # model -> lowest priority class running on it (set by the cycle)
        self.gone: set[int] = set()  # chosen as victims (or evicted) this cycle

    def add(self, v: Victim) -> None:
        self.by_id[v.job.id] = v
        self.by_owner.setdefault((v.job.spec.tenant, v.model), []).append(v)
        if v.borrowed and not v.booked:
            self.borrowed.setdefault(v.model, []).append(v)

    def add_leaving(self, job_id: int, on: Mapping[int, int], model: str) -> None:
        for i, n in on.items():
            per = self.leaving.setdefault(i, {})
            per[model] = per.get(model, 0) + n
            self.leaving_jobs.setdefault(i, set()).add(job_id)
        self.leaving_total[model] = self.leaving_total.get(model, 0) + sum(on.values())

    def unclaimed(self, i: int, model: str) -> int:
        return self.leaving.get(i, {}).get(model, 0)

    def claim(self, i: int, model: str, gpus: int) -> None:
        per = self.leaving.get(i)
        if per and gpus > 0:
            got = min(gpus, per.get(model, 0))
            per[model] -= got
            self.leaving_total[model] -= got

    def remove(self, v: Victim) -> None:
        """`v` was chosen: it can not be chosen again, and its GPUs are on their way out."""
        self.gone.add(v.job.id)
        self.add_leaving(v.job.id, v.on, v.model)

    def candidates(self, model: str, tenant: str, cls: int, within: bool,
                   borrowed_left: Mapping[tuple[str, str], int]) -> list[Victim]:
        """The running jobs on `model` a job of `tenant` and class `cls` may preempt (see above)."""
        out = [v for v in self.by_owner.get((tenant, model), ()) if v.cls < cls and v.job.id not in self.gone]
        for v in self.borrowed.get(model, ()):
            t = v.job.spec.tenant
            if t != tenant and (within or v.cls < cls) and v.job.id not in self.gone \
                    and borrowed_left.get((t, model), 0) > 0:
                out.append(v)
        return out

    def plan(self, cands: list[Victim], free_nodes: Iterable[int], model: str, gpus: int, count: int,
             free_of: Callable[[int], int], node_ok: Callable[[int], bool]) -> Plan | None:
        """The cheapest `count` nodes that reach `gpus` free GPUs with victims removed, and the victims.
        Only nodes where a candidate victim runs are looked at, plus `free_nodes` (for gangs)."""
        by_node: dict[int, list[Victim]] = {}
        for v in cands:
            for i in v.on:
                by_node.setdefault(i, []).append(v)
        plans = [((0, 0.0, 0), i, []) for i in free_nodes if i not in by_node]
        for i, vs in by_node.items():
            if not node_ok(i):
                continue
            have = free_of(i) + self.unclaimed(i, model)
            picked = [] if have >= gpus else _cheapest(vs, i, gpus - have)
            if picked is not None:
                plans.append((_total(picked), i, picked))
        if len(plans) < count:
            return None
        plans.sort(key=lambda p: (p[0], p[1]))
        chosen = plans[:count]
        victims: dict[int, Victim] = {}
        for _, _, picked in chosen:
            for v in picked:
                victims[v.job.id] = v
        if not victims:
            return None
        return [i for _, i, _ in chosen], sorted(victims.values(), key=lambda v: v.job.id)


def _cheapest(vs: list[Victim], i: int, need: int) -> list[Victim] | None:
    vs.sort(key=lambda v: v.cost)
    greedy: list[Victim] = []
    got = 0
    for v in vs:
        greedy.append(v)
        got += v.on[i]
        if got >= need:
            break
    if got < need:
        return None
    single = next(([v] for v in vs if v.on[i] >= need), None)
    if single is not None and _total(single) <= _total(greedy):
        return single
    return greedy


def _total(victims: list[Victim]) -> tuple[int, float, int]:
    return (sum(1 for v in victims if not v.borrowed), sum(v.lost_gpu_h for v in victims), len(victims))

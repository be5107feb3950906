"""Filters: can a node host a job? Each answers a Status; failures bubble up into pending reasons.

Static filters (model, hardware identity, the job's booking) depend only on the job and the node,
so a cycle runs them once per distinct requirement and caches the eligible node set. Dynamic
checks (free GPUs, CPU/memory, booking windows, backfill reservations) run on the few candidate
nodes the capacity index proposes (see `state.py`, `bookings.py`, `backfill.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gpufleet.domain import Booking, Job
from gpufleet.scheduler.filters.constraints import ConstraintFilter, matches, term
from gpufleet.scheduler.filters.gpu_model import GpuModelFilter
from gpufleet.scheduler.filters.status import OK, NodeFilter, Status
from gpufleet.scheduler.state import ClusterState

STATIC_FILTERS: tuple[NodeFilter, ...] = (GpuModelFilter(), ConstraintFilter())

__all__ = ["OK", "STATIC_FILTERS", "ConstraintFilter", "Eligibility", "GpuModelFilter", "NodeFilter",
           "Status", "static_eligibility"]


@dataclass(slots=True)
class Eligibility:
    """The UP nodes that pass every static filter for one requirement, and what they offer."""

    nodes: frozenset[int] | None  # None: every UP node
    sizes: dict[str, list[int]] = field(default_factory=dict)  # model -> GPU counts of eligible nodes
    reason: str = ""  # NodeConstraint(...) when no UP node passes
    label: str = ""  # "of booking 7" when the job's booking restricts the nodes


def static_eligibility(job: Job, state: ClusterState, booking: Booking | None) -> Eligibility:
    spec = job.spec
    restrict = None
    label = ""
    if booking is not None:
        restrict = {state.pos[n] for n in booking.nodes if n in state.pos}
        label = f" of booking {booking.id}"
    if not spec.gpu_model and not spec.constraints and restrict is None:
        return Eligibility(None, _sizes(state, range(len(state.nodes)), None))
    scope = range(len(state.nodes)) if restrict is None else sorted(restrict)
    if spec.gpu_model:  # the capacity index knows which nodes have the model: filter only those
        scope = [i for i in scope if spec.gpu_model in state.size[i]]
    nodes = state.nodes
    passing = [i for i in scope if all(f.filter(job, nodes[i]).ok for f in STATIC_FILTERS)]
    up = [i for i in passing if state.up[i]]
    if not up:
        return Eligibility(frozenset(), reason=_constraint_reason(job, state, restrict, label), label=label)
    return Eligibility(frozenset(up), _sizes(state, up, spec.gpu_model), label=label)


def _sizes(state: ClusterState, nodes, model: str | None) -> dict[str, list[int]]:
    sizes: dict[str, list[int]] = {}
    for i in nodes:
        if not state.up[i]:
            continue
        for m, n in state.size[i].items():
            if model is None or m == model:
                sizes.setdefault(m, []).append(n)
    for lst in sizes.values():
        lst.sort(reverse=True)
    return sizes


def _constraint_reason(job: Job, state: ClusterState, restrict: set[int] | None, label: str) -> str:
    spec = job.spec
    terms = ([("gpu_model", spec.gpu_model)] if spec.gpu_model else []) + sorted(spec.constraints.items())
    scope = [i for i in range(len(state.nodes)) if restrict is None or i in restrict]
    for key, want in terms:
        hits = [i for i in scope if matches(state.nodes[i], key, want)]
        if not any(state.up[i] for i in hits):
            return _matches_none(term(key, want), len(hits), label)
    both = [i for i in scope if all(matches(state.nodes[i], k, v) for k, v in terms)]
    if not terms:  # only the booking restricts: its nodes are all down or drained
        return f"NodeConstraint(0 up nodes{label}, {len(both)} not up)"
    return _matches_none(",".join(term(k, v) for k, v in terms), len(both), label)


def _matches_none(term: str, not_up: int, label: str) -> str:
    extra = f", {not_up} not up" if not_up else ""
    return f"NodeConstraint({term} matches 0 up nodes{label}{extra})"

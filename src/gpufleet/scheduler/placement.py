"""Step 3: place. Find nodes for one job on the capacity index; the caller commits them.

A `Gate` is the job's dynamic filter for one node (CPU/memory, booking windows, backfill
reservations); `None` means nothing dynamic applies, the fast path.
"""

from __future__ import annotations

from typing import Callable

from gpufleet.scheduler.scorers import pack_gang, sig_score
from gpufleet.scheduler.state import ClusterState

Gate = Callable[[int], bool] | None
FEW = 48  # eligible sets this small are scored node by node instead of walking the index


def find_nodes(state: ClusterState, model: str, gpus: int, count: int,
               eligible: frozenset[int] | None, gate: Gate, most: int = 0,
               prefer: frozenset[tuple[str, str]] = frozenset()) -> list[int] | None:
    """`count` distinct nodes with `gpus` free GPUs of `model` each, best first; None if there are none.
    An elastic gang (`most` > count) gets as many as fit now, up to `most`; `prefer`: pack_gang's."""
    if state.count_fitting(model, gpus) < count:
        return None
    if count == 1 and most <= 1 and not prefer:
        i = best_node(state, model, gpus, eligible, gate)
        return None if i is None else [i]
    cands = candidates(state, model, gpus, eligible, gate)
    if len(cands) < count:
        return None
    if not state.topology:
        cands.sort(key=lambda c: c[1])
    return pack_gang(cands, max(count, min(most, len(cands))), state.rack, state.topology, prefer)


def best_node(state: ClusterState, model: str, gpus: int, eligible: frozenset[int] | None,
              gate: Gate) -> int | None:
    if not state.topology or (eligible is not None and len(eligible) <= FEW):
        cands = candidates(state, model, gpus, eligible, gate)
        return min(cands)[1] if cands else None
    for _, bucket in state.buckets(model, gpus):
        for i in bucket:
            if (eligible is None or i in eligible) and (gate is None or gate(i)):
                return i
    return None


def candidates(state: ClusterState, model: str, gpus: int, eligible: frozenset[int] | None,
               gate: Gate) -> list[tuple[tuple, int]]:
    """Every node that can take the rank now, as (score, node), best first (by score, then index
    when scored node by node; by score then index order within a bucket otherwise)."""
    topology = state.topology
    out: list[tuple[tuple, int]] = []
    if eligible is not None and len(eligible) <= FEW:
        for i in eligible:
            sig = state.sig[i].get(model)
            if sig and sum(sig) >= gpus and (gate is None or gate(i)):
                out.append((sig_score(sig, gpus) if topology else (), i))
        out.sort()
        return out
    for sig, bucket in state.buckets(model, gpus):
        score = sig_score(sig, gpus) if topology else ()
        for i in bucket:
            if (eligible is None or i in eligible) and (gate is None or gate(i)):
                out.append((score, i))
    if not topology:
        out.sort()
    return out


def find_cpu_nodes(state: ClusterState, count: int, cpus: int, mem_mb: int,
                   eligible: frozenset[int] | None, gate: Gate, most: int = 0) -> list[int] | None:
    """Nodes for a job that asks no GPUs: the first `count` UP nodes with the CPU and memory (an
    elastic gang: up to `most`)."""
    nodes = sorted(eligible) if eligible is not None else range(len(state.nodes))
    want = max(count, most)
    chosen = []
    for i in nodes:
        if state.up[i] and state.cpu_mem_ok(i, cpus, mem_mb) and (gate is None or gate(i)):
            chosen.append(i)
            if len(chosen) == want:
                return chosen
    return chosen if len(chosen) >= count else None

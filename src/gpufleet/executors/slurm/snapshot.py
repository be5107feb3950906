"""Slurm's jobs at one instant (one `squeue --json`), and what the node sync derives from it."""

from __future__ import annotations

from typing import Mapping, Sequence

from gpufleet.domain import Node
from gpufleet.executors.base import FOREIGN_GPUS_LABEL
from gpufleet.executors.slurm.parse import HOLDING_STATES, SlurmJob, node_from_json
from gpufleet.executors.slurm.script import Identity


class JobsSnapshot:
    """Slurm's jobs at one instant, indexed by Slurm id and by gpufleet identity."""

    def __init__(self, jobs: list[SlurmJob], tag: str, taken: float):
        self.taken = taken
        self.by_id = {j.job_id: j for j in jobs}
        self.idents: dict[int, Identity] = {}
        self.by_key: dict[tuple, SlurmJob] = {}
        for j in jobs:
            ident = Identity.parse(j.comment)
            if ident is not None and ident.tag == tag:
                self.idents[j.job_id] = ident
                prev = self.by_key.get(ident.key)
                if prev is None or prev.job_id < j.job_id:
                    self.by_key[ident.key] = j


def nodes_of(raw: Sequence[Mapping], snap: JobsSnapshot, topology: Mapping[str, Mapping[str, str]],
             now: float) -> list[Node]:
    """`sinfo --json`'s nodes as gpufleet's: a foreign job's GPUs marked (FOREIGN_GPUS_LABEL), and
    each node's topology labels (topology.py) over those its features gave (Slurm's topology is
    what Slurm itself places by, so its `switch` / `block` win over a feature of that name)."""
    nodes: dict[str, Node] = {}
    for d in raw:
        if d.get("name") and d["name"] not in nodes:
            node = nodes[d["name"]] = node_from_json(d, now)
            node.labels.update(topology.get(node.name, {}))
    for node, idx in foreign_gpus(snap, nodes).items():
        if idx:
            nodes[node].labels[FOREIGN_GPUS_LABEL] = ",".join(map(str, idx))
    return list(nodes.values())


def foreign_gpus(snap: JobsSnapshot, nodes: dict[str, Node]) -> dict[str, tuple[int, ...]]:
    """GPU indices held by Slurm jobs that are not ours, per node.

    Slurm picks GPU indices itself, so ours may sit elsewhere than gpufleet planned. To keep
    gpufleet's count exact, the reported indices avoid those gpufleet believes its own jobs hold:
    a foreign GPU on a planned index is reported as one of the indices ours really occupy instead."""
    foreign: dict[str, set[int]] = {}
    actual: dict[str, set[int]] = {}
    planned: dict[str, set[int]] = {}
    for sj in snap.by_id.values():
        if sj.state not in HOLDING_STATES:
            continue
        ident = snap.idents.get(sj.job_id)
        for node, idx in sj.gpus.items():
            (actual if ident else foreign).setdefault(node, set()).update(idx)
        if ident:
            for node, idx in ident.alloc.items():
                planned.setdefault(node, set()).update(idx)
    out: dict[str, tuple[int, ...]] = {}
    for node, fset in foreign.items():
        p = planned.get(node, set())
        keep = fset - p
        total = len(nodes[node].gpus) if node in nodes else max(fset | p | actual.get(node, set())) + 1
        spare = sorted(actual.get(node, set()) - p - keep) + [i for i in range(total) if i not in p | keep
                                                                and i not in actual.get(node, set())]
        out[node] = tuple(sorted(keep | set(spare[: len(fset) - len(keep)])))
    return out

"""The mutable view of free capacity a cycle works on, indexed for fast best-fit.

Free GPUs are kept per node, per model, per NVLink group. Every UP node is filed in
`index[model][signature]`, where the signature is the tuple of its per-group free counts (largest
first, empty groups left out), e.g. (4, 3) = one group with 4 free and one with 3. Clusters hold few
distinct signatures (at most a few dozen for 8-GPU nodes), so "the best node for g GPUs" is: walk
the signatures in score order (cached per (model, g)) and take the first eligible node of the first
non-empty bucket, instead of scanning every node.

Everything here is canonical: the state after any sequence of `take`/`give` equals the state built
from scratch for the same occupancy (buckets are sorted node lists, free lists sorted GPU indices,
signatures ordered by score then value), so a state kept across cycles (`scheduler.base`) decides
exactly what a fresh one would. A cycle's own takes are journaled and rolled back afterwards.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import Iterable, Iterator, Mapping

from gpufleet.domain import Node, NodeState
from gpufleet.scheduler.scorers import sig_score

Sig = tuple[int, ...]
Take = tuple[int, str | None, tuple[int, ...], int, int]  # node, model, GPUs, CPUs, memory MiB


class ClusterState:
    def __init__(self, nodes: Iterable[Node], used: Mapping[str, set[int]], cpu_used: Mapping[str, int],
                 mem_used: Mapping[str, int], topology: bool = True):
        self.topology = topology
        self.nodes: list[Node] = list(nodes)
        self.pos: dict[str, int] = {n.name: i for i, n in enumerate(self.nodes)}
        self.up: list[bool] = [n.state is NodeState.UP for n in self.nodes]
        self.model_of: list[dict[int, str]] = []  # node -> GPU index -> model
        self.group_of: list[dict[int, int]] = []  # node -> GPU index -> NVLink group
        self.size: list[dict[str, int]] = []  # node -> model -> GPUs it has
        self.total: list[int] = []  # node -> GPUs it has
        self.group_size: list[dict[tuple[str, int], int]] = []  # node -> (model, group) -> GPUs in it
        self.free: list[dict[str, dict[int, list[int]]]] = []  # node -> model -> group -> free indices
        self.sig: list[dict[str, Sig]] = []
        self.index: dict[str, dict[Sig, list[int]]] = {}  # UP nodes only; sorted node lists
        self._version: dict[str, int] = {}
        self._order: dict[tuple[str, int], tuple[int, list[Sig]]] = {}
        self.cpu_free: list[int | None] = []
        self.mem_free: list[int | None] = []
        self.rack: list[tuple[str, str]] = []  # (switch, rack); "" when the label is missing
        self.spare_labelled: list[int] = []  # nodes labelled spare=true: always hot spares (filters/spares.py)
        # fragmentation counters over UP nodes: free GPUs, free in wholly free nodes / groups
        self.free_gpus = self.whole_node_free = self.whole_group_free = 0
        self._frag: list[tuple[int, int, int]] = []
        self.journal: list[Take] | None = None  # takes to roll back, while a cycle runs
        for i, node in enumerate(self.nodes):
            self._add_node(i, node, used.get(node.name, set()))
            self.cpu_free.append(node.cpus - cpu_used.get(node.name, 0) if node.cpus else None)
            self.mem_free.append(node.mem_mb - mem_used.get(node.name, 0) if node.mem_mb else None)
            # the network block: label `switch`, or `block` (Slurm topology/block's name for it)
            self.rack.append((node.labels.get("switch") or node.labels.get("block", ""), node.labels.get("rack", "")))
            if node.labels and labelled(node.labels):
                self.spare_labelled.append(i)

    def _add_node(self, i: int, node: Node, used: set[int]) -> None:
        model_of: dict[int, str] = {}
        group_of: dict[int, int] = {}
        size: dict[str, int] = {}
        group_size: dict[tuple[str, int], int] = {}
        free: dict[str, dict[int, list[int]]] = {}
        for g in sorted(node.gpus, key=lambda g: g.index):
            model_of[g.index] = g.model
            group_of[g.index] = g.group
            size[g.model] = size.get(g.model, 0) + 1
            group_size[(g.model, g.group)] = group_size.get((g.model, g.group), 0) + 1
            groups = free.setdefault(g.model, {})
            lst = groups.setdefault(g.group, [])
            if g.index not in used:
                lst.append(g.index)
        self.model_of.append(model_of)
        self.group_of.append(group_of)
        self.size.append(size)
        self.total.append(len(model_of))
        self.group_size.append(group_size)
        self.free.append(free)
        sigs = {m: _signature(groups) for m, groups in free.items()}
        self.sig.append(sigs)
        self._frag.append((0, 0, 0))
        if self.up[i]:
            for m, s in sigs.items():
                self._file(m, s, i)
            self._count(i)

    def _file(self, model: str, sig: Sig, i: int) -> None:
        buckets = self.index.setdefault(model, {})
        bucket = buckets.get(sig)
        if bucket is None:
            bucket = buckets[sig] = []
            self._version[model] = self._version.get(model, 0) + 1
        if not bucket or bucket[-1] < i:
            bucket.append(i)
        else:
            insort(bucket, i)

    def _count(self, i: int) -> None:
        """Refresh node i's share of the fragmentation counters (UP nodes only)."""
        free_i = whole_group = 0
        sizes = self.group_size[i]
        for model, groups in self.free[i].items():
            for g, lst in groups.items():
                n = len(lst)
                free_i += n
                if n and n == sizes[(model, g)]:
                    whole_group += n
        whole_node = free_i if free_i and free_i == self.total[i] else 0
        old = self._frag[i]
        self._frag[i] = (free_i, whole_node, whole_group)
        self.free_gpus += free_i - old[0]
        self.whole_node_free += whole_node - old[1]
        self.whole_group_free += whole_group - old[2]

    # reading ------------------------------------------------------------------------------------
    def models(self) -> list[str]:
        return sorted(self.index)

    def free_count(self, i: int, model: str) -> int:
        return sum(self.sig[i].get(model, ()))

    def ordered(self, model: str, gpus: int) -> list[Sig]:
        """Signatures with room for `gpus`, best first (topology: best fit by NVLink group, then node)."""
        key = (model, gpus)
        version = self._version.get(model, 0)
        cached = self._order.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        sigs = [s for s in self.index.get(model, {}) if sum(s) >= gpus]
        if self.topology:
            sigs.sort(key=lambda s: (sig_score(s, gpus), s))
        else:
            sigs.sort(key=lambda s: (sum(s), s))
        self._order[key] = (version, sigs)
        return sigs

    def buckets(self, model: str, gpus: int) -> Iterator[tuple[Sig, list[int]]]:
        """Non-empty buckets of nodes with at least `gpus` free GPUs of `model`, best first."""
        index = self.index.get(model, {})
        for sig in self.ordered(model, gpus):
            bucket = index[sig]
            if bucket:
                yield sig, bucket

    def count_fitting(self, model: str, gpus: int) -> int:
        """UP nodes with at least `gpus` free of `model` (an upper bound for any eligible subset)."""
        index = self.index.get(model, {})
        return sum(len(index[s]) for s in self.ordered(model, gpus))

    def largest_free(self, model: str, eligible: frozenset[int] | None) -> int:
        best = 0
        for sig, bucket in self.index.get(model, {}).items():
            total = sum(sig)
            if total > best and bucket and (eligible is None or not eligible.isdisjoint(bucket)):
                best = total
        return best

    # GPU choice, taking and giving back ------------------------------------------------------------
    def choose(self, i: int, model: str, gpus: int) -> tuple[int, ...]:
        """Which free GPUs of node i a rank gets: one NVLink group when they fit (the fullest that
        does: best fit), else the fewest groups (largest first). Without topology: lowest indices."""
        groups = self.free[i][model]
        if not self.topology:
            return tuple(sorted(x for lst in groups.values() for x in lst)[:gpus])
        fitting = [(len(lst), g) for g, lst in groups.items() if len(lst) >= gpus]
        if fitting:
            return tuple(groups[min(fitting)[1]][:gpus])
        chosen: list[int] = []
        for _, g in sorted(((-len(lst), g) for g, lst in groups.items() if lst)):
            chosen.extend(groups[g][: gpus - len(chosen)])
            if len(chosen) == gpus:
                break
        return tuple(sorted(chosen))

    def take(self, i: int, model: str | None, gpus: Iterable[int], cpus: int, mem_mb: int) -> None:
        gpus = tuple(gpus)
        if self.journal is not None:
            self.journal.append((i, model, gpus, cpus, mem_mb))
        self._change(i, model, gpus, -cpus, -mem_mb)

    def give(self, i: int, model: str | None, gpus: Iterable[int], cpus: int, mem_mb: int) -> None:
        """The reverse of `take`: a job's GPUs, CPUs and memory on node i are free again."""
        self._change(i, model, tuple(gpus), cpus, mem_mb, back=True)

    def rollback(self) -> None:
        """Undo every take since the journal was opened; close it."""
        journal, self.journal = self.journal or [], None
        for i, model, gpus, cpus, mem in reversed(journal):
            self.give(i, model, gpus, cpus, mem)

    def _change(self, i: int, model: str | None, gpus: tuple[int, ...], cpus: int, mem_mb: int,
                back: bool = False) -> None:
        if self.cpu_free[i] is not None:
            self.cpu_free[i] += cpus  # type: ignore[operator]
        if self.mem_free[i] is not None:
            self.mem_free[i] += mem_mb  # type: ignore[operator]
        if model is None or not gpus:
            return
        groups = self.free[i][model]
        if back:
            group_of = self.group_of[i]
            for x in gpus:
                insort(groups[group_of[x]], x)
        else:
            taken = set(gpus)
            for g, lst in groups.items():
                if not taken.isdisjoint(lst):
                    groups[g] = [x for x in lst if x not in taken]
        old = self.sig[i][model]
        new = _signature(groups)
        self.sig[i][model] = new
        if self.up[i]:
            if new != old:
                bucket = self.index[model][old]
                del bucket[bisect_left(bucket, i)]
                self._file(model, new, i)
            self._count(i)

    def cpu_mem_ok(self, i: int, cpus: int, mem_mb: int) -> bool:
        c, m = self.cpu_free[i], self.mem_free[i]
        return (c is None or c >= cpus) and (m is None or m >= mem_mb)


def labelled(labels: Mapping[str, str]) -> bool:
    """Is a node labelled spare=true (a hot spare, see filters/spares.py)?"""
    return str(labels.get("spare", "")).lower() == "true"


def _signature(groups: Mapping[int, list[int]]) -> Sig:
    return tuple(sorted((len(lst) for lst in groups.values() if lst), reverse=True))

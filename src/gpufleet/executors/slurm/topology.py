"""Slurm's network topology as node labels: what `scontrol show topology` prints, parsed (pure),
and a cache that re-reads it rarely.

- topology/tree (every Slurm): `SwitchName=sw1 Level=0 LinkSpeed=1 Nodes=gpu[01-02,05]`, upper
  levels add `Switches=`. A node's leaf switch (its lowest-level switch) becomes its `switch`
  label, the whole path leaf-to-root `slurm.switches`.
- topology/block (Slurm 23.11+): `BlockName=b1 BlockIndex=0 Nodes=gpu[01-04] BlockSize=4`, and
  from 24.11 `AggregatedBlock=b[1-2] ...` for the larger blocks of BlockSizes. A node's base block
  becomes its `block` label, base and aggregated blocks smallest first `slurm.blocks`.
- no topology plugin (topology/none, topology/flat): nothing on stdout: no labels.

The scheduler reads `switch`, else `block`, as a node's network block (scheduler/state.py): a gang
is packed into one block when it fits, and its replacement prefers the block it ran in.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from gpufleet.executors.slurm.client import SlurmError
from gpufleet.executors.slurm.parse import expand_hostlist

log = logging.getLogger(__name__)

SWITCH_LABEL, BLOCK_LABEL = "switch", "block"
SWITCHES_LABEL, BLOCKS_LABEL, KIND_LABEL = "slurm.switches", "slurm.blocks", "slurm.topology"
REFRESH_S = 600.0  # topology changes rarely: re-read every 10 minutes, or when the node set changes
RETRY_S = 60.0  # after a failed read


@dataclass(frozen=True, slots=True)
class Topology:
    """`kind`: "tree", "block" or "" (none); `labels`: node name -> the labels above."""

    kind: str = ""
    labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


def _records(text: str) -> list[dict[str, str]]:
    """One dict per line of `Key=value` words (no value of these lines holds a space)."""
    out = []
    for line in text.splitlines():
        rec = dict(word.split("=", 1) for word in line.split() if "=" in word)
        if rec:
            out.append(rec)
    return out


def _int(text: str | None, default: int = 0) -> int:
    try:
        return int(text or default)
    except ValueError:
        return default


def parse_topology(text: str) -> Topology:
    """`scontrol show topology` output (tree or block) -> per-node labels."""
    recs = _records(text)
    switches = [r for r in recs if r.get("SwitchName")]
    if switches:
        return Topology("tree", _tree_labels(switches))
    blocks = [r for r in recs if r.get("BlockName")]
    if blocks:
        return Topology("block", _block_labels(blocks, [r for r in recs if r.get("AggregatedBlock")]))
    return Topology()


def _tree_labels(switches: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    """Each node: its switches by level (a leaf first); the lowest is its `switch`."""
    path: dict[str, list[tuple[int, int, str]]] = {}
    for order, rec in enumerate(switches):
        level = _int(rec.get("Level"))
        for node in expand_hostlist(rec.get("Nodes")):
            path.setdefault(node, []).append((level, order, rec["SwitchName"]))
    out = {}
    for node, sws in path.items():
        names = [name for _, _, name in sorted(sws)]
        out[node] = {SWITCH_LABEL: names[0], SWITCHES_LABEL: ",".join(dict.fromkeys(names)), KIND_LABEL: "tree"}
    return out


def _block_labels(blocks: list[dict[str, str]], aggregated: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    """Each node: its base block (the first that lists it), then the aggregated blocks holding it."""
    out: dict[str, dict[str, str]] = {}
    groups: dict[str, list[tuple[int, int, str]]] = {}
    for order, rec in enumerate(aggregated):
        for node in expand_hostlist(rec.get("Nodes")):
            groups.setdefault(node, []).append((_int(rec.get("BlockSize")), order, rec["AggregatedBlock"]))
    for rec in blocks:
        for node in expand_hostlist(rec.get("Nodes")):
            if node in out:
                continue
            names = [rec["BlockName"], *(name for _, _, name in sorted(groups.get(node, ())))]
            out[node] = {BLOCK_LABEL: names[0], BLOCKS_LABEL: ",".join(names), KIND_LABEL: "block"}
    return out


class TopologyCache:
    """The cluster's topology, read with `read` (`scontrol show topology`) on first use, then again
    after `refresh_s` or as soon as the set of node names changes (a node added or removed: Slurm
    was reconfigured). A failed read keeps what was read before and is retried after `retry_s`."""

    def __init__(self, read: Callable[[], str], clock: Callable[[], float],
                 refresh_s: float = REFRESH_S, retry_s: float = RETRY_S):
        self._read, self._clock = read, clock
        self.refresh_s, self.retry_s = refresh_s, retry_s
        self._lock = threading.Lock()
        self._topology = Topology()
        self._names: frozenset[str] | None = None
        self._due = 0.0
        self.reads = 0  # how many times `read` ran (tests, and a log line when the kind changes)

    def labels(self, names: Iterable[str]) -> Mapping[str, Mapping[str, str]]:
        """node name -> topology labels, for the nodes Slurm reports now."""
        names = frozenset(names)
        with self._lock:
            now = self._clock()
            if names != self._names or now >= self._due:
                self._reload(now)
                self._names = names
            return self._topology.labels

    def _reload(self, now: float) -> None:
        self.reads += 1
        try:
            topo = parse_topology(self._read())
        except SlurmError as e:
            log.warning("slurm: cannot read the network topology (keeping what was read before): %s", e)
            self._due = now + self.retry_s
            return
        if topo.kind != self._topology.kind:
            log.info("slurm: network topology: %s (%d nodes labelled)", topo.kind or "none", len(topo.labels))
        self._topology, self._due = topo, now + self.refresh_s

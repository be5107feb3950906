"""Cycle statistics: free capacity and how fragmented it is."""

from __future__ import annotations

from gpufleet.scheduler.state import ClusterState


def fragmentation(state: ClusterState) -> dict[str, float]:
    """`fragmentation`: share of free GPUs (on UP nodes) that sit on partly used nodes, where a
    whole-node job cannot use them (0 = every free GPU is in a wholly free node; 1 = none is).
    `group_fragmentation`: the same for NVLink groups. Read off counters the state keeps."""
    free = state.free_gpus
    return {
        "free_gpus": float(free),
        "fragmentation": round(1.0 - state.whole_node_free / free, 4) if free else 0.0,
        "group_fragmentation": round(1.0 - state.whole_group_free / free, 4) if free else 0.0,
    }

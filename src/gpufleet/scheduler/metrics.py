"""Cycle statistics: free capacity and how fragmented it is."""

from __future__ import annotations

from gpufleet.scheduler.state import ClusterState


def fragmentation(state: ClusterState) -> dict[str, float]:
    """`fragmentation`: share of free GPUs (on UP nodes) that sit on partly used nodes, where a
    whole-node job cannot use them (0 = every free GPU is in a wholly free node; 1 = none is).
    `group_fragmentation`: the same for NVLink groups."""
    free = whole_node = whole_group = 0
    for i, up in enumerate(state.up):
        if not up:
            continue
        sizes = state.group_size[i]
        free_i = 0
        for model, groups in state.free[i].items():
            for g, lst in groups.items():
                n = len(lst)
                free_i += n
                if n and n == sizes[(model, g)]:
                    whole_group += n
        free += free_i
        if free_i and free_i == sum(state.size[i].values()):
            whole_node += free_i
    return {
        "free_gpus": float(free),
        "fragmentation": round(1.0 - whole_node / free, 4) if free else 0.0,
        "group_fragmentation": round(1.0 - whole_group / free, 4) if free else 0.0,
    }

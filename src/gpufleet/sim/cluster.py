"""The simulated cluster: nodes from the inventory YAML, tenants from the file and the trace."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from gpufleet.domain import Node, NodeState, Tenant, ValidationError
from gpufleet.inventory import Inventory, load_inventory

TENANT_MODES = ("weight", "quota")


@dataclass(slots=True)
class Cluster:
    nodes: list[Node]
    tenants: dict[str, Tenant] = field(default_factory=dict)

    @property
    def total_gpus(self) -> int:
        return sum(len(n.gpus) for n in self.nodes if n.state is NodeState.UP)

    @property
    def node_gpus(self) -> int:
        """GPUs of the biggest node: the size of a 'whole node' when a trace job spans several."""
        return max((len(n.gpus) for n in self.nodes), default=0)

    def gpus_by_model(self) -> Counter[str]:
        return Counter(g.model for n in self.nodes if n.state is NodeState.UP for g in n.gpus)


def load_cluster(path: str | Path) -> Cluster:
    try:
        inv = load_inventory(path)
    except ValidationError as e:
        raise ValidationError("cluster", e.message) from None
    return cluster_from_inventory(inv)


def cluster_from_inventory(inv: Inventory) -> Cluster:
    if not any(n.gpus for n in inv.nodes):
        raise ValidationError("cluster", "the cluster file describes no GPU (nodes: [{name, count, gpus, ...}])")
    return Cluster(list(inv.nodes), {t.name: t for t in inv.tenants})


def with_trace_tenants(cluster: Cluster, names: list[str], mode: str = "weight") -> Cluster:
    """Add tenants that the trace uses but the file does not name, on equal terms.

    mode "weight": each gets fair-share weight 1 and no guaranteed quota (all use is borrowed).
    mode "quota":  also splits the GPUs no file tenant is guaranteed equally into their quotas.
    """
    if mode not in TENANT_MODES:
        raise ValidationError("tenant_shares", f"must be one of {list(TENANT_MODES)}, got {mode!r}")
    missing = [n for n in names if n not in cluster.tenants]
    tenants = dict(cluster.tenants)
    quotas = _equal_quotas(cluster, len(missing)) if mode == "quota" and missing else {}
    for name in missing:
        tenants[name] = Tenant(name, quota=dict(quotas), weight=1.0)
    return Cluster(cluster.nodes, tenants)


def _equal_quotas(cluster: Cluster, n: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for model, total in cluster.gpus_by_model().items():
        claimed = sum(t.quota_for(model) for t in cluster.tenants.values())
        out[model] = max(0, total - claimed) // n
    return out

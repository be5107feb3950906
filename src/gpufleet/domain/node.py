"""Nodes and their GPUs."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from gpufleet.domain.states import NodeState


class NodeKind(str, Enum):
    SERVER = "server"
    DESKTOP = "desktop"
    EMBEDDED = "embedded"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Gpu:
    index: int  # physical index on the node (what CUDA_VISIBLE_DEVICES gets)
    model: str  # normalised lower-case model name, e.g. "a100", "h100", "orin"
    uuid: str = ""
    memory_mb: int = 0
    group: int = 0  # NVLink / PCIe-switch group: GPUs in one group talk fast


@dataclass(slots=True)
class Node:
    name: str
    kind: NodeKind = NodeKind.SERVER
    arch: str = "x86_64"
    cpus: int = 0
    mem_mb: int = 0
    labels: dict[str, str] = field(default_factory=dict)  # rack, switch, driver, vbios, board-rev...
    gpus: tuple[Gpu, ...] = ()
    state: NodeState = NodeState.UP
    reason: str = ""
    address: str = "127.0.0.1"  # where rank processes on this node can reach each other
    updated_at: float = 0.0

    @property
    def gpu_models(self) -> frozenset[str]:
        return frozenset(g.model for g in self.gpus)

    @property
    def gpu_model(self) -> str | None:
        """The model when the node is homogeneous (the common case), else the first one."""
        return self.gpus[0].model if self.gpus else None

    def attribute(self, key: str) -> str | None:
        """Hardware identity used by constraints: kind, arch, gpu_model, or any label."""
        if key == "kind":
            return str(self.kind)
        if key == "arch":
            return self.arch
        if key in ("gpu_model", "gpu-model", "model"):
            return self.gpu_model
        if key == "gpu_count":  # perf jobs take whole nodes: gpu_count=<their GPUs per node>
            return str(len(self.gpus))
        return self.labels.get(key)


def normalise_model(model: str) -> str:
    """'NVIDIA A100-SXM4-80GB' -> 'a100'; 'h100' -> 'h100'. Keeps user-chosen short names."""
    m = model.strip().lower()
    for prefix in ("nvidia ", "tesla ", "geforce ", "quadro "):
        if m.startswith(prefix):
            m = m[len(prefix):]
    return m.split("-")[0].split(" ")[0] if " " in m or "-" in m else m

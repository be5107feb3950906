"""Where the embedded server's GPUs come from: NVML, else an inventory file, else --fake-gpus."""

from __future__ import annotations

import os
import platform
import socket
from dataclasses import dataclass

from gpufleet.domain import Gpu, Node, NodeKind
from gpufleet.domain.node import normalise_model
from gpufleet.inventory.file import Inventory, load_inventory


@dataclass(slots=True)
class Discovered:
    inventory: Inventory
    source: str  # "nvml" | "file" | "fake" | "none"
    notice: str = ""


def discover(inventory_file: str | None = None, fake_gpus: int | None = None, nvml=None) -> Discovered:
    """Pick the inventory source in the documented order. Never fails for lack of GPUs."""
    if inventory_file:
        return Discovered(load_inventory(inventory_file), "file")
    if fake_gpus is not None:
        return Discovered(Inventory([fake_node(fake_gpus)]), "fake", f"using {fake_gpus} fake GPUs")
    node, why = nvml_node(nvml)
    if node is not None:
        return Discovered(Inventory([node]), "nvml", f"found {len(node.gpus)} GPUs through NVML")
    return Discovered(
        Inventory([fake_node(0)]), "none",
        f"no NVIDIA GPU found ({why}); starting with 0 GPUs. "
        "Use --inventory FILE or --fake-gpus N to describe GPUs.",
    )


def local_node_base(name: str | None = None) -> Node:
    return Node(
        name=name or socket.gethostname().split(".")[0],
        kind=NodeKind.SERVER,
        arch=platform.machine() or "x86_64",
        cpus=os.cpu_count() or 1,
        mem_mb=_mem_mb(),
    )


def fake_node(gpus: int, model: str = "fake", name: str | None = None) -> Node:
    node = local_node_base(name)
    half = max(1, gpus // 2) if gpus >= 4 else max(gpus, 1)
    node.gpus = tuple(Gpu(i, model, f"GPU-fake-{i}", 16384, i // half) for i in range(gpus))
    return node


def nvml_node(nvml=None) -> tuple[Node | None, str]:
    """This host as a node, from NVML (`nvml` is pynvml or a fake with the same functions)."""
    try:
        if nvml is None:
            import pynvml as nvml  # nvidia-ml-py
        nvml.nvmlInit()
    except Exception as e:  # no driver, no library: the common case on a laptop
        return None, f"NVML unavailable: {e.__class__.__name__}: {e}"
    try:
        count = nvml.nvmlDeviceGetCount()
        gpus = []
        for i in range(count):
            h = nvml.nvmlDeviceGetHandleByIndex(i)
            name = nvml.nvmlDeviceGetName(h)
            name = name.decode() if isinstance(name, bytes) else name
            uuid = nvml.nvmlDeviceGetUUID(h)
            uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
            mem = nvml.nvmlDeviceGetMemoryInfo(h).total // (1024 * 1024)
            gpus.append(Gpu(i, normalise_model(name), uuid, int(mem), _numa_group(nvml, h)))
        driver = nvml.nvmlSystemGetDriverVersion()
        node = local_node_base()
        node.gpus = tuple(gpus)
        node.labels["driver"] = driver.decode() if isinstance(driver, bytes) else str(driver)
        if not gpus:
            return None, "NVML reports 0 GPUs"
        return node, ""
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass


def _numa_group(nvml, handle) -> int:
    """Group GPUs by NUMA node / PCIe root as a stand-in for NVLink islands when unknown."""
    try:
        return int(nvml.nvmlDeviceGetNumaNodeId(handle))
    except Exception:
        return 0


def _mem_mb() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    except (ValueError, OSError):
        return 0

"""GPU and node inventory: the YAML file, NVML discovery, fake GPUs."""

from gpufleet.inventory.discovery import Discovered, discover, fake_node, nvml_node
from gpufleet.inventory.file import Inventory, load_inventory, parse_inventory

__all__ = ["Discovered", "Inventory", "discover", "fake_node", "load_inventory", "nvml_node", "parse_inventory"]

"""gpufleet: the control plane for a GPU lab."""

__version__ = "0.1.0"

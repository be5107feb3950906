from gpufleet.artifacts.local.store import LocalStore

__all__ = ["LocalStore"]

"""Use-cases shared by the API and anything else that drives gpufleet."""

from gpufleet.services.context import Ctx

__all__ = ["Ctx"]

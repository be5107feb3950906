"""Logs (structlog) and the Prometheus metrics on a dedicated registry."""

from gpufleet.observability.logs import configure_logging, get_logger, loop_context, loop_logger
from gpufleet.observability.metrics import FleetSnapshot, Metrics, fleet_snapshot

__all__ = ["FleetSnapshot", "Metrics", "configure_logging", "fleet_snapshot", "get_logger", "loop_context",
           "loop_logger"]

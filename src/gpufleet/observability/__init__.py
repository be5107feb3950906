"""Logs (structlog), the audit log, and the Prometheus metrics on a dedicated registry."""

from gpufleet.observability.audit import AuditEvent, AuditLog, JsonlAuditSink
from gpufleet.observability.logs import configure_logging, get_logger, loop_context, loop_logger
from gpufleet.observability.metrics import FleetSnapshot, Metrics, fleet_snapshot

__all__ = ["AuditEvent", "AuditLog", "FleetSnapshot", "JsonlAuditSink", "Metrics", "configure_logging",
           "fleet_snapshot", "get_logger", "loop_context", "loop_logger"]

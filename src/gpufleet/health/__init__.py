"""Node health: check plugins (NVML, host, scripts, DCGM), a fake NVML with fault injection, the
runner, the remediation state machine, runbooks, burn-in, tickets and flakiness history.

See docs/health.md. Imports `domain` only (plus third-party libraries)."""

from gpufleet.health.types import Check, CheckContext, CheckRecord, CheckResult, NodeHealth, Status, worst

__all__ = ["Check", "CheckContext", "CheckRecord", "CheckResult", "NodeHealth", "Status", "worst"]

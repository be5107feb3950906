"""Usage accounting (sreport/sacct for the lab): aggregation in SQL over the attempt_usage rows."""

from gpufleet.accounting.report import GROUPS, UsageGroup, UsageReport, usage_report

__all__ = ["GROUPS", "UsageGroup", "UsageReport", "usage_report"]

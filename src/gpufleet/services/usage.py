"""Usage accounting for people: periods, who may see which tenant, quota share (API and CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

from gpufleet.accounting import GROUPS, UsageGroup, UsageReport, usage_report
from gpufleet.accounting.report import LABEL_KEY
from gpufleet.accounting.sacct import sacct_lines
from gpufleet.domain import Forbidden, NotFound, User, ValidationError, parse_duration
from gpufleet.domain.units import parse_time
from gpufleet.services.context import Ctx

DEFAULT_PERIOD_S = 30 * 86400
GROUPINGS = ", ".join((*GROUPS, "label:KEY"))


@dataclass(frozen=True)
class Usage:
    report: UsageReport
    quota_gpu_s: dict[int, float]  # group index -> the tenant's quota GPU-seconds over the period

    def quota_share(self, i: int) -> float | None:
        q = self.quota_gpu_s.get(i)
        return self.report.groups[i].gpu_s / q if q else None


def period(ctx: Ctx, start: str | float | None, end: str | float | None) -> tuple[float, float]:
    """[start, end): `end` defaults to now, `start` to 30 days before it. Each is an ISO date or
    time (UTC unless it names a zone), epoch seconds, `now`, `+2h` or `-7d` (from now)."""
    now = ctx.clock()
    t_end = _instant(end, now, "to") if end not in (None, "") else now
    t_start = _instant(start, now, "from") if start not in (None, "") else t_end - DEFAULT_PERIOD_S
    if t_start >= t_end:
        raise ValidationError("to", "must be after from")
    return t_start, t_end


def _instant(value: str | float, now: float, field: str) -> float:
    if isinstance(value, str) and value.strip().startswith("-"):
        return now - (parse_duration(value.strip()[1:], field) or 0)
    return parse_time(value, now, field)


def group_columns(by: Sequence[str] | None) -> tuple[str, ...]:
    cols: list[str] = []
    for item in by or ("tenant",):
        for key in filter(None, (k.strip() for k in str(item).split(","))):
            if key.startswith("label:"):
                if not LABEL_KEY.fullmatch(key[6:]):
                    raise ValidationError("by", f"{key}: a label key is letters, digits and _.-/ (label:purpose)")
            elif key not in GROUPS:
                raise ValidationError("by", f"unknown grouping {key!r}; use {GROUPINGS}")
            if key not in cols:
                cols.append(key)
    return tuple(cols)


def visible_tenant(ctx: Ctx, user: User, tenant: str | None) -> str | None:
    """None: every tenant (admins). A non-admin sees their own tenant only."""
    if tenant:
        if not user.admin and tenant != user.tenant:  # whether it exists or not: same answer
            raise Forbidden(f"usage of another tenant needs an admin token (user {user.name} is in {user.tenant})")
        if tenant not in ctx.tenant_names():
            raise NotFound("tenant", tenant)
        return tenant
    return None if user.admin else user.tenant


def usage(ctx: Ctx, user: User, start=None, end=None, by: Sequence[str] | None = None,
          tenant: str | None = None) -> Usage:
    t0, t1 = period(ctx, start, end)
    cols = group_columns(by)
    report = usage_report(ctx.store.engine, t0, t1, ctx.clock(), cols, visible_tenant(ctx, user, tenant))
    return Usage(report, _quotas(ctx, report) if "tenant" in cols else {})


def _quotas(ctx: Ctx, report: UsageReport) -> dict[int, float]:
    tenants = {t.name: t for t in ctx.store.tenants()}
    length = report.end - report.start
    out: dict[int, float] = {}
    for i, g in enumerate(report.groups):
        t = tenants.get(g.key["tenant"])
        if t is None:
            continue
        model = g.key.get("gpu_model")
        gpus = t.quota_for(model) if model else sum(n for m, n in t.quota.items() if m != "*")
        if gpus:
            out[i] = gpus * length
    return out


def export_sacct(ctx: Ctx, user: User, start=None, end=None, tenant: str | None = None) -> Iterator[str]:
    t0, t1 = period(ctx, start, end)
    return sacct_lines(ctx.store.engine, t0, t1, visible_tenant(ctx, user, tenant))


def group_out(g: UsageGroup) -> dict:
    return {"key": g.key, "gpu_hours": g.gpu_s / 3600, "gpu_s": g.gpu_s, "attempts": g.attempts,
            "started": g.started, "wait_s": g.wait_s,
            "mean_wait_s": g.wait_s / g.started if g.started else None,
            "busy_gpu_s": g.busy_gpu_s, "sampled_gpu_s": g.sampled_gpu_s,
            "idle_gpu_s": max(0.0, g.sampled_gpu_s - g.busy_gpu_s) if g.busy_gpu_s is not None else None}

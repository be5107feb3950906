"""Bodies of /api/v1/usage (kept apart from schemas.py; the client imports both)."""

from __future__ import annotations

from pydantic import BaseModel


class UsageGroupOut(BaseModel):
    key: dict[str, str]  # the grouping columns -> values ({} for the total)
    gpu_hours: float
    gpu_s: float
    attempts: int  # attempts that held GPUs in the period
    started: int  # of which started in it
    wait_s: float  # queue time before the attempts that started in it
    mean_wait_s: float | None = None
    busy_gpu_s: float | None = None  # None: none of these attempts was sampled (NVML)
    sampled_gpu_s: float = 0.0
    idle_gpu_s: float | None = None  # sampled allocated GPU-seconds that were not busy
    share: float | None = None  # of the period's total
    quota_share: float | None = None  # of the tenant's quota GPU-seconds over the period


class IdleHolderOut(BaseModel):
    job_id: int
    user: str
    tenant: str
    gpu_s: float
    busy_gpu_s: float
    idle_gpu_s: float


class UsageOut(BaseModel):
    start: float
    end: float
    by: list[str]
    groups: list[UsageGroupOut]
    total: UsageGroupOut
    idle: list[IdleHolderOut]  # top idle holders, where busy data exists
    notes: list[str] = []

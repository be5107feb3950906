"""Decayed GPU-seconds per tenant: what `Snapshot.usage` carries for fair share.

usage(t) = integral over the past of (GPUs held at s) * 2^(-(t - s) / half_life) ds.
Between two changes the GPUs held are constant, so the integral advances in closed form:
u(t + dt) = u(t) * f + g * (1 - f) / lambda, with f = exp(-lambda dt), lambda = ln 2 / half_life.
"""

from __future__ import annotations

import math


class DecayedUsage:
    def __init__(self, half_life_s: float, tenants: list[str] | None = None):
        self.lam = math.log(2) / half_life_s if half_life_s and math.isfinite(half_life_s) and half_life_s > 0 else 0.0
        self.used: dict[str, float] = {t: 0.0 for t in tenants or ()}
        self.held: dict[str, int] = {t: 0 for t in tenants or ()}
        self.t = 0.0

    def advance(self, t: float) -> None:
        dt = t - self.t
        if dt <= 0:
            return
        self.t = t
        if self.lam == 0.0:  # no decay: plain GPU-seconds
            for k, g in self.held.items():
                if g:
                    self.used[k] += g * dt
            return
        f = math.exp(-self.lam * dt)
        gain = (1.0 - f) / self.lam
        used = self.used
        for k, g in self.held.items():
            used[k] = used[k] * f + g * gain

    def change(self, tenant: str, gpus: int) -> None:
        """`gpus` more (or fewer, if negative) held from now on; call `advance(now)` first."""
        if tenant not in self.held:
            self.held[tenant] = 0
            self.used[tenant] = 0.0
        self.held[tenant] += gpus

    def snapshot(self) -> dict[str, float]:
        return dict(self.used)

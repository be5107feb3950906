"""Builders of results for tests."""

from __future__ import annotations

import random

from gpufleet.results.model import Result, series_key


def make_result(value: float, at: float, node: str = "n1", benchmark: str = "resnet50-train",
                metric: str = "images_per_s", sku: str = "A100-SXM4-80GB", driver: str = "550.54",
                **kw) -> Result:
    r = Result(benchmark=benchmark, metric=metric, value=value, at=at, node=node, sku=sku, driver=driver,
               gpu_model="a100", tenant=kw.pop("tenant", "vision"), user=kw.pop("user", "alice"), **kw)
    r.series = series_key(r)
    return r


def stepped(n: int, change_at: int | None, step: float, cv: float, seed: int = 0, nodes: int = 4,
            base: float = 1000.0, slow: dict[str, float] | None = None) -> list[Result]:
    """n results round-robin over `nodes` nodes; from `change_at` on every value is x (1+step)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        node = f"n{i % nodes}"
        v = base * (1 + (step if change_at is not None and i >= change_at else 0.0))
        v *= (slow or {}).get(node, 1.0)
        out.append(make_result(rng.gauss(v, v * cv), at=1000.0 + i * 60, node=node, commit=f"c{i}", job_id=i + 1))
    return out

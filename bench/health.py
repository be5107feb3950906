"""Health-check cost on a big virtual fleet (fake NVML): one JSON object.

    .venv/bin/python bench/health.py [--nodes 250]
Baseline in the same run: the NVML checks alone vs NVML + host checks (disk, memory).
"""

from __future__ import annotations

import argparse
import json
import time

from gpufleet.health.config import builtin_checks
from gpufleet.health.fake_nvml import FakeNvmlFleet
from gpufleet.health.runner import HealthRunner
from gpufleet.inventory import parse_inventory


def sweep(runner: HealthRunner, nodes) -> float:
    t0 = time.perf_counter()
    for n in nodes:
        runner.run(n)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--nodes", type=int, default=250)
    args = p.parse_args()
    inv = parse_inventory({"nodes": [{"name": "dgx", "count": args.nodes, "gpus": 8, "gpu_model": "a100",
                                      "nvlink_groups": 2, "labels": {"driver": "560.35"}}]})
    fleet = FakeNvmlFleet(inv.nodes)
    nvml_only = [c for c in builtin_checks({}) if c.name not in ("disk", "memory")]
    r1 = HealthRunner(nvml_only, fleet)
    sweep(r1, inv.nodes)  # arm XID watchers
    t_nvml = sweep(r1, inv.nodes)
    r2 = HealthRunner(builtin_checks({}), fleet)
    sweep(r2, inv.nodes)
    t_all = sweep(r2, inv.nodes)
    fleet.raise_xid(inv.nodes[7].name, 3, 79)
    failing = [h.node for h in (r2.run(n) for n in inv.nodes) if h.status.value == "fail"]
    print(json.dumps({
        "bench": "health_sweep", "nodes": args.nodes, "gpus": 8 * args.nodes,
        "nvml_checks_s": round(t_nvml, 4), "all_checks_s": round(t_all, 4),
        "per_node_ms": round(1000 * t_all / args.nodes, 3),
        "ratio_all_vs_nvml_only": round(t_all / t_nvml, 3), "failing_after_xid": failing,
    }))


if __name__ == "__main__":
    main()

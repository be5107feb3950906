"""Host checks: disk free and memory (psutil). They look at the host the runner runs on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import psutil

from gpufleet.health.nvml_checks import combine
from gpufleet.health.types import CheckContext, CheckResult, Status

GIB = 1024**3


@dataclass
class DiskCheck:
    """Free space on each path: below `fail_free_pct` (or `min_free_gb`) fails, below warn warns."""

    name: str = "disk"
    requeue_on_fail: bool = False
    host_check = True  # measures the server's host: runs only for nodes executing here
    paths: tuple[str, ...] = ("/", "/tmp")
    warn_free_pct: float = 10.0
    fail_free_pct: float = 5.0
    min_free_gb: float = 0.0
    usage: Callable[[str], Any] = field(default=psutil.disk_usage, repr=False)

    def run(self, ctx: CheckContext) -> CheckResult:
        problems: list[tuple[Status, str]] = []
        facts: dict[str, Any] = {}
        for path in self.paths:
            try:
                u = self.usage(path)
            except OSError as e:
                problems.append((Status.FAIL, f"{path}: {e.strerror or e}"))
                continue
            free_pct = 100.0 * u.free / u.total if u.total else 0.0
            free_gb = u.free / GIB
            facts[path] = {"free_gb": round(free_gb, 2), "total_gb": round(u.total / GIB, 2),
                           "free_pct": round(free_pct, 2)}
            if free_pct < self.fail_free_pct or free_gb < self.min_free_gb:
                problems.append((Status.FAIL, f"{path}: {free_gb:.1f} GiB free ({free_pct:.1f}%)"))
            elif free_pct < self.warn_free_pct:
                problems.append((Status.WARN, f"{path}: {free_gb:.1f} GiB free ({free_pct:.1f}%)"))
        return combine(problems, {"paths": facts}, "disk space ok")


@dataclass
class MemoryCheck:
    """Available memory, and (optionally) total memory against the inventory (a dead DIMM)."""

    name: str = "memory"
    requeue_on_fail: bool = False
    host_check = True
    warn_available_pct: float = 5.0
    fail_available_pct: float = 2.0
    compare_inventory: bool = False  # only where this host IS the node (not for virtual nodes)
    total_tolerance_pct: float = 5.0
    probe: Callable[[], Any] = field(default=psutil.virtual_memory, repr=False)

    def run(self, ctx: CheckContext) -> CheckResult:
        vm = self.probe()
        total_mb = vm.total // (1024 * 1024)
        avail_pct = 100.0 * vm.available / vm.total if vm.total else 0.0
        facts = {"total_mb": total_mb, "available_mb": vm.available // (1024 * 1024),
                 "available_pct": round(avail_pct, 2), "expected_mb": ctx.node.mem_mb or None}
        problems: list[tuple[Status, str]] = []
        if avail_pct < self.fail_available_pct:
            problems.append((Status.FAIL, f"only {avail_pct:.1f}% memory available"))
        elif avail_pct < self.warn_available_pct:
            problems.append((Status.WARN, f"only {avail_pct:.1f}% memory available"))
        expected = ctx.node.mem_mb
        if self.compare_inventory and expected:
            short = 100.0 * (expected - total_mb) / expected
            if short > self.total_tolerance_pct:
                problems.append((Status.FAIL, f"{total_mb} MiB total, inventory says {expected} MiB"))
        return combine(problems, facts, f"{facts['available_mb']} MiB available")

"""ConstraintFilter: hardware identity, `spec.constraints` against `Node.attribute(key)`.

Keys: kind, arch, gpu_model (model), or any node label (driver, vbios, board-rev, rack, ...),
including the hardware identity discovered from NVML (sku, vbios, driver, cuda_driver, kernel ...).
A value matches exactly; `a|b` matches either; `>=550`, `<12.4`, `>`, `<=` compare version-like
values numerically part by part (560.35.03 >= 550); `!=v` matches anything else (and a node
without the attribute). A node whose GPUs differ (label `a|b`) matches only a comparison that
holds for every GPU.
"""

from __future__ import annotations

from gpufleet.domain import Job, Node
from gpufleet.domain.perf import version_key
from gpufleet.scheduler.filters.status import OK, Status


def matches(node: Node, key: str, want: str) -> bool:
    have = node.attribute(key)
    if have is None:
        return want.startswith("!=")
    if key in ("gpu_model", "gpu-model", "model"):  # any GPU of the node, not only the first
        return any(w in node.gpu_models for w in want.split("|"))
    if want.startswith("!="):
        return have != want[2:]
    for op in (">=", "<=", ">", "<"):
        if want.startswith(op):
            return all(_compare(h, op, want[len(op):]) for h in have.split("|"))
    return have == want or ("|" in want and have in want.split("|"))


def _compare(have: str, op: str, want: str) -> bool:
    a, b = version_key(have), version_key(want)
    if a is None or b is None:
        return False
    n = max(len(a), len(b))  # 550 vs 560.35.03: compare as 550.0.0
    a, b = a + (0,) * (n - len(a)), b + (0,) * (n - len(b))
    return {">=": a >= b, "<=": a <= b, ">": a > b, "<": a < b}[op]


class ConstraintFilter:
    name = "NodeConstraint"

    def terms(self, job: Job) -> list[str]:
        return [term(k, v) for k, v in sorted(job.spec.constraints.items())]

    def filter(self, job: Job, node: Node) -> Status:
        for key, want in sorted(job.spec.constraints.items()):
            if not matches(node, key, want):
                return Status(False, term(key, want), self.name)
        return OK


def term(key: str, want: str) -> str:
    """How a constraint is written: driver>=550, sku=A100-SXM4-80GB."""
    return f"{key}{want}" if want[:1] in ("<", ">", "!") else f"{key}={want}"

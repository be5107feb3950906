"""ConstraintFilter: hardware identity, `spec.constraints` against `Node.attribute(key)`.

Keys: kind, arch, gpu_model (model), or any node label (driver, vbios, board-rev, rack, ...).
A value matches exactly; `a|b` matches either.
"""

from __future__ import annotations

from gpufleet.domain import Job, Node
from gpufleet.scheduler.filters.status import OK, Status


def matches(node: Node, key: str, want: str) -> bool:
    have = node.attribute(key)
    if have is None:
        return False
    if key in ("gpu_model", "gpu-model", "model"):  # any GPU of the node, not only the first
        return any(w in node.gpu_models for w in want.split("|"))
    return have == want or ("|" in want and have in want.split("|"))


class ConstraintFilter:
    name = "NodeConstraint"

    def terms(self, job: Job) -> list[str]:
        return [f"{k}={v}" for k, v in sorted(job.spec.constraints.items())]

    def filter(self, job: Job, node: Node) -> Status:
        for key, want in sorted(job.spec.constraints.items()):
            if not matches(node, key, want):
                return Status(False, f"{key}={want}", self.name)
        return OK

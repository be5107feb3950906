"""What every filter answers: ok, or not with a short user-readable reason."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gpufleet.domain import Job, Node


@dataclass(frozen=True, slots=True)
class Status:
    ok: bool
    reason: str = ""  # the term that failed, e.g. "driver=560.35"
    plugin: str = ""


OK = Status(True)


class NodeFilter(Protocol):
    """Can this node host this job (ignoring what is free)? Kubernetes scheduler framework style."""

    name: str

    def terms(self, job: Job) -> list[str]:
        """The job's requirements this filter checks, as `key=value` terms (for reasons)."""
        ...

    def filter(self, job: Job, node: Node) -> Status: ...

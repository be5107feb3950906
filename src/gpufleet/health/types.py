"""The one result shape every health check returns, and the check plugin interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping, Protocol, runtime_checkable

from gpufleet.domain import Node


class Status(str, Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"

    def __str__(self) -> str:
        return self.value

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Status.OK: 0, Status.WARN: 1, Status.FAIL: 2}


def worst(statuses) -> Status:
    """The most severe of `statuses` (OK when there are none)."""
    return max(statuses, key=lambda s: s.rank, default=Status.OK)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What one check says about one node: ok | warn | fail, one line of reason, and facts."""

    status: Status
    message: str = ""
    facts: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def ok(cls, message: str = "ok", **facts: Any) -> CheckResult:
        return cls(Status.OK, message, facts)

    @classmethod
    def warn(cls, message: str, **facts: Any) -> CheckResult:
        return cls(Status.WARN, message, facts)

    @classmethod
    def fail(cls, message: str, **facts: Any) -> CheckResult:
        return cls(Status.FAIL, message, facts)


@dataclass(slots=True)
class CheckContext:
    """What a check may look at. `nvml` is an initialised NVML module (pynvml or the fake) or None."""

    node: Node  # the node as the inventory describes it (expected GPUs, labels such as `driver`)
    now: float
    nvml: Any = None
    nvml_error: str = ""  # why `nvml` is None ("" when NVML is simply not configured)


@runtime_checkable
class Check(Protocol):
    """A health check plugin. `run` must not raise for the conditions it checks; it returns FAIL."""

    name: str
    requeue_on_fail: bool  # policy: True = running jobs are requeued, False = left to finish

    def run(self, ctx: CheckContext) -> CheckResult: ...


@dataclass(frozen=True, slots=True)
class CheckRecord:
    """One stored row: a check's result for a node at a time (table `health_results`)."""

    node: str
    check: str
    at: float
    status: Status
    message: str
    facts: Mapping[str, Any]
    duration_s: float = 0.0
    run_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node, "check": self.check, "at": self.at, "status": self.status.value,
            "message": self.message, "facts": dict(self.facts), "duration_s": self.duration_s,
            "run_id": self.run_id,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CheckRecord:
        return cls(str(d["node"]), str(d["check"]), float(d["at"]), Status(d["status"]),
                   str(d.get("message", "")), dict(d.get("facts") or {}),
                   float(d.get("duration_s", 0.0)), str(d.get("run_id", "")))


@dataclass(frozen=True, slots=True)
class NodeHealth:
    """All check results of one run on one node, and the verdict the control loop acts on."""

    node: str
    at: float
    run_id: str
    records: tuple[CheckRecord, ...]
    requeue: bool = False  # a failing check's policy asks for running jobs to be requeued

    @property
    def status(self) -> Status:
        return worst(r.status for r in self.records)

    @property
    def failures(self) -> tuple[CheckRecord, ...]:
        return tuple(r for r in self.records if r.status is Status.FAIL)

    @property
    def reason(self) -> str:
        """The drain reason: every failing check as `check: message`, joined by '; '."""
        return "; ".join(f"{r.check}: {r.message}" for r in self.failures)

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "at": self.at, "run_id": self.run_id, "status": self.status.value,
                "reason": self.reason, "requeue": self.requeue,
                "results": [r.to_dict() for r in self.records]}

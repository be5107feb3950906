"""The audit log: who submitted, cancelled, drained, resumed, booked ... and when.

Every event goes to the `gpufleet.audit` logger (one structured line with `audit: true`) and to
each sink: the server passes a store writer (table `audit_log`), optionally a JSONL file.

    audit = AuditLog(sinks=[store.add_audit, JsonlAuditSink(home / "audit.jsonl")])
    audit.record("alice", "submit", "job/42", tenant="vision", gpus=8)
    audit.record("health", "drain", "node/dgx1", reason="xid: GPU 3: XID 79")
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import structlog

ACTIONS = frozenset({
    "submit", "cancel", "requeue", "drain", "resume", "book", "unbook", "quota", "tenant",
    "schedule_add", "schedule_remove", "health_run", "fault_inject", "ticket", "login", "token",
})


@dataclass(frozen=True, slots=True)
class AuditEvent:
    at: float
    actor: str  # user name, or a system actor: "health", "scheduler", "recurring"
    action: str  # one of ACTIONS
    target: str  # "job/42", "node/dgx1", "tenant/vision", "booking/7"
    details: Mapping[str, Any] = field(default_factory=dict)
    ok: bool = True

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["details"] = dict(self.details)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AuditEvent:
        return cls(float(d["at"]), str(d["actor"]), str(d["action"]), str(d["target"]),
                   dict(d.get("details") or {}), bool(d.get("ok", True)))


Sink = Callable[[AuditEvent], None]


class AuditLog:
    def __init__(self, sinks: Iterable[Sink] = (), clock: Callable[[], float] = time.time):
        self.sinks = list(sinks)
        self.clock = clock
        self._log = structlog.get_logger("gpufleet.audit")

    def record(self, actor: str, action: str, target: str, ok: bool = True, **details: Any) -> AuditEvent:
        if action not in ACTIONS:
            raise ValueError(f"unknown audit action {action!r}")
        event = AuditEvent(self.clock(), actor, action, target, details, ok)
        self._log.info(f"{actor} {action} {target}", audit=True, actor=actor, action=action,
                       target=target, ok=ok, **details)
        for sink in self.sinks:
            try:
                sink(event)
            except Exception as e:  # an audit sink must not fail the user's request
                self._log.error("audit sink failed", sink=repr(sink), error=str(e))
        return event


class JsonlAuditSink:
    """Append-only JSON lines file (one event per line)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def __call__(self, event: AuditEvent) -> None:
        line = json.dumps(event.to_dict(), sort_keys=True, default=str)
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")

    def read(self) -> list[AuditEvent]:
        if not self.path.exists():
            return []
        return [AuditEvent.from_dict(json.loads(line)) for line in self.path.read_text().splitlines() if line]

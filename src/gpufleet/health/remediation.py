"""The remediation state machine: fail -> drain -> (wait idle) -> runbook -> burn-in -> re-check ->
resume; after `max_rounds` failed rounds the node stays drained and a ticket is opened.

Pure-ish: every effect is an injected callable (`RemediationHooks`), time is an injected clock.
`Remediation.phase` is the NEXT thing to do, so the caller stores the record after every `step()`
(`on_change`) and a restarted server continues where it stopped (each step is idempotent: drain and
resume are, a runbook is an Ansible playbook, a burn-in is re-run, a ticket carries a dedupe key).

    rem = remediator.start("dgx1", health)         # health.status is FAIL
    while not rem.done: remediator.step(rem)       # or remediator.run(rem) in a worker thread
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Mapping

from gpufleet.domain import IllegalTransition, NodeState
from gpufleet.health.tickets import Ticket, Ticketer, TicketRef
from gpufleet.health.types import NodeHealth, Status


class Phase(str, Enum):
    DRAIN = "drain"
    WAIT_IDLE = "wait_idle"  # jobs left to finish (policy `finish`): wait until the node is idle
    RUNBOOK = "runbook"
    BURN_IN = "burn_in"
    RECHECK = "recheck"
    RESUME = "resume"
    TICKET = "ticket"
    RESUMED = "resumed"  # terminal: node back in service
    ESCALATED = "escalated"  # terminal: node stays drained, ticket open

    def __str__(self) -> str:
        return self.value


P = Phase
REMEDIATION_TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    P.DRAIN: frozenset({P.WAIT_IDLE}),
    P.WAIT_IDLE: frozenset({P.RUNBOOK, P.TICKET}),  # TICKET: `escalate` (a remediation already failed)
    # a failed step ends the round: next round (RUNBOOK again) or, after the last, TICKET
    P.RUNBOOK: frozenset({P.BURN_IN, P.RUNBOOK, P.TICKET}),
    P.BURN_IN: frozenset({P.RECHECK, P.RUNBOOK, P.TICKET}),
    P.RECHECK: frozenset({P.RESUME, P.RUNBOOK, P.TICKET}),
    P.RESUME: frozenset({P.RESUMED}),
    P.TICKET: frozenset({P.ESCALATED}),
    P.RESUMED: frozenset(),
    P.ESCALATED: frozenset(),
}
TERMINAL = frozenset({P.RESUMED, P.ESCALATED})


@dataclass(frozen=True, slots=True)
class StepResult:
    ok: bool
    message: str = ""
    facts: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One step taken (table `remediation_steps`)."""

    round: int
    phase: Phase
    ok: bool
    message: str
    at: float
    duration_s: float = 0.0
    facts: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"round": self.round, "phase": self.phase.value, "ok": self.ok, "message": self.message,
                "at": self.at, "duration_s": self.duration_s, "facts": dict(self.facts)}


@dataclass(slots=True)
class Remediation:
    """One incident on one node (table `remediations`)."""

    node: str
    reason: str
    requeue: bool
    max_rounds: int
    started_at: float
    phase: Phase = Phase.DRAIN
    round: int = 1
    updated_at: float = 0.0
    not_before: float = 0.0
    ended_at: float | None = None
    ticket: TicketRef | None = None
    steps: list[StepRecord] = field(default_factory=list)
    id: int | None = None  # set by the store

    @property
    def done(self) -> bool:
        return self.phase in TERMINAL

    @property
    def outcome(self) -> str | None:
        return self.phase.value if self.done else None

    @property
    def dedupe_key(self) -> str:
        return f"gpufleet-{self.node}-{int(self.started_at)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "node": self.node, "reason": self.reason, "requeue": self.requeue,
            "max_rounds": self.max_rounds, "started_at": self.started_at, "phase": self.phase.value,
            "round": self.round, "updated_at": self.updated_at, "not_before": self.not_before,
            "ended_at": self.ended_at, "outcome": self.outcome,
            "ticket": None if self.ticket is None else
            {"system": self.ticket.system, "id": self.ticket.id, "url": self.ticket.url},
            "steps": [s.to_dict() for s in self.steps],
        }


@dataclass
class RemediationHooks:
    drain: Callable[[str, str, bool], None]  # (node, reason, requeue running jobs) in gpufleet + engine
    resume: Callable[[str], None]
    runbook: Callable[[str, str, int], StepResult]  # (node, reason, round), e.g. AnsibleRunbook
    burn_in: Callable[[str], StepResult]  # submit a job pinned to the node, wait for its outcome
    recheck: Callable[[str], NodeHealth]  # run the health checks on the node again
    ticketer: Ticketer | None = None
    is_idle: Callable[[str], bool] = lambda node: True  # no running jobs left on the node


def should_remediate(health: NodeHealth, node_state: NodeState, active: bool) -> bool:
    """Start remediation for a FAIL on an UP node that has none running. A node an admin drained
    by hand is left alone."""
    return health.status is Status.FAIL and node_state is NodeState.UP and not active


def drain_reason(health_reason: str, limit: int = 240) -> str:
    reason = f"health: {health_reason}"
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."


class Remediator:
    def __init__(self, hooks: RemediationHooks, max_rounds: int = 3, retry_delay_s: float = 0.0,
                 clock: Callable[[], float] = time.time,
                 on_change: Callable[[Remediation], None] | None = None):
        if max_rounds < 1:
            raise ValueError("max_rounds must be >= 1")
        self.hooks = hooks
        self.max_rounds = max_rounds
        self.retry_delay_s = retry_delay_s
        self.clock = clock
        self.on_change = on_change or (lambda rem: None)

    def start(self, node: str, health: NodeHealth, max_rounds: int | None = None) -> Remediation:
        now = self.clock()
        rem = Remediation(node=node, reason=drain_reason(health.reason), requeue=health.requeue,
                          max_rounds=self.max_rounds if max_rounds is None else max_rounds,
                          started_at=now, updated_at=now)
        self.on_change(rem)
        return rem

    def escalate(self, node: str, health: NodeHealth) -> Remediation:
        """An incident a remediation has already failed to fix (a node still slow after the
        remediation that resumed it): drained, then straight to a ticket once it is idle."""
        rem = self.start(node, health, max_rounds=0)  # no runbook, no burn-in: the ticket is next
        self.step(rem)
        return rem

    def step(self, rem: Remediation) -> bool:
        """Do the current phase's work, advance, store. False when nothing could be done yet."""
        if rem.done or self.clock() < rem.not_before:
            return False
        handler = getattr(self, f"_do_{rem.phase.value}")
        t0 = time.perf_counter()
        outcome = handler(rem)
        if outcome is None:  # waiting (node not idle yet)
            return False
        result, nxt = outcome
        now = self.clock()
        rem.steps.append(StepRecord(rem.round, rem.phase, result.ok, result.message, now,
                                    round(time.perf_counter() - t0, 3), dict(result.facts)))
        self._move(rem, nxt, now)
        self.on_change(rem)
        return True

    def run(self, rem: Remediation, poll_s: float = 10.0, sleep: Callable[[float], None] = time.sleep) -> Remediation:
        """Step until done (for a worker thread); sleeps `poll_s` whenever it has to wait."""
        while not rem.done:
            if not self.step(rem):
                sleep(poll_s)
        return rem

    # -- phases: each returns (what happened, next phase) or None to wait ---------------------

    def _do_drain(self, rem: Remediation) -> tuple[StepResult, Phase]:
        self.hooks.drain(rem.node, rem.reason, rem.requeue)
        policy = "requeue running jobs" if rem.requeue else "let running jobs finish"
        return StepResult(True, f"drained ({policy}): {rem.reason}"), P.WAIT_IDLE

    def _do_wait_idle(self, rem: Remediation) -> tuple[StepResult, Phase] | None:
        if not self.hooks.is_idle(rem.node):
            return None
        return StepResult(True, "no jobs left on the node"), (P.RUNBOOK if rem.max_rounds else P.TICKET)

    def _do_runbook(self, rem: Remediation) -> tuple[StepResult, Phase]:
        result = _guard(lambda: self.hooks.runbook(rem.node, rem.reason, rem.round), "runbook")
        return result, (P.BURN_IN if result.ok else self._round_failed(rem))

    def _do_burn_in(self, rem: Remediation) -> tuple[StepResult, Phase]:
        result = _guard(lambda: self.hooks.burn_in(rem.node), "burn-in")
        return result, (P.RECHECK if result.ok else self._round_failed(rem))

    def _do_recheck(self, rem: Remediation) -> tuple[StepResult, Phase]:
        try:
            health = self.hooks.recheck(rem.node)
        except Exception as e:
            result = StepResult(False, f"re-check crashed: {e.__class__.__name__}: {e}")
            return result, self._round_failed(rem)
        ok = health.status is not Status.FAIL
        result = StepResult(ok, "all checks pass" if ok else health.reason,
                            {"run_id": health.run_id, "status": health.status.value})
        return result, (P.RESUME if ok else self._round_failed(rem))

    def _do_resume(self, rem: Remediation) -> tuple[StepResult, Phase]:
        # The end is stored BEFORE the node is back in service: whatever starts there once it is UP
        # starts after `ended_at`. The phase stays RESUME until the resume is done, so a crash in
        # between repeats this step (resume is idempotent) and stamps the end again.
        rem.ended_at = self.clock()
        self.on_change(rem)
        self.hooks.resume(rem.node)
        return StepResult(True, f"resumed after {rem.round} round(s)"), P.RESUMED

    def _do_ticket(self, rem: Remediation) -> tuple[StepResult, Phase] | None:
        if self.hooks.ticketer is None:
            return StepResult(True, "no ticketer configured: node stays drained"), P.ESCALATED
        try:
            rem.ticket = self.hooks.ticketer.open(self._ticket(rem))
        except Exception as e:  # the tracker is down: keep the node drained, try again later
            rem.not_before = self.clock() + max(self.retry_delay_s, 60.0)
            rem.steps.append(StepRecord(rem.round, P.TICKET, False, f"ticket failed: {e}", self.clock()))
            self.on_change(rem)
            return None
        return StepResult(True, f"ticket {rem.ticket.system}:{rem.ticket.id} {rem.ticket.url}".strip(),
                          {"ticket_id": rem.ticket.id}), P.ESCALATED

    # -- helpers ---------------------------------------------------------------------------

    def _round_failed(self, rem: Remediation) -> Phase:
        if rem.round >= rem.max_rounds:
            return P.TICKET
        return P.RUNBOOK  # `_move` starts the next round

    def _move(self, rem: Remediation, nxt: Phase, now: float) -> None:
        if nxt not in REMEDIATION_TRANSITIONS[rem.phase]:
            raise IllegalTransition("remediation", rem.phase.value, nxt.value)
        if nxt is P.RUNBOOK and rem.phase is not P.WAIT_IDLE:
            rem.round += 1
            rem.not_before = now + self.retry_delay_s
        rem.phase = nxt
        rem.updated_at = now
        if nxt in TERMINAL and not (nxt is P.RESUMED and rem.ended_at is not None):
            rem.ended_at = now

    def _ticket(self, rem: Remediation) -> Ticket:
        first = (f"Node {rem.node} failed health checks and {rem.max_rounds} remediation round(s)." if rem.max_rounds
                 else f"Node {rem.node} is unhealthy again after a remediation resumed it.")
        lines = [first,
                 "", f"Reason: {rem.reason}", "", "Steps:"]
        lines += [f"- round {s.round} {s.phase.value}: {'ok' if s.ok else 'FAILED'} {s.message}"
                  for s in rem.steps]
        lines += ["", "The node stays drained. Resume it with `gpufleet node resume "
                  f"{rem.node}` once repaired."]
        return Ticket(node=rem.node, title=f"[gpufleet] node {rem.node} unhealthy: {rem.reason[:120]}",
                      body="\n".join(lines), reason=rem.reason, rounds=rem.max_rounds,
                      dedupe_key=rem.dedupe_key, facts={"steps": [s.to_dict() for s in rem.steps]})


def _guard(call: Callable[[], StepResult], what: str) -> StepResult:
    try:
        return call()
    except Exception as e:  # a crashing hook fails the round, it does not kill the loop
        return StepResult(False, f"{what} crashed: {e.__class__.__name__}: {e}")

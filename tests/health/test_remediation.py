"""The remediation state machine with in-memory hooks (fakes of the world, not of the machine)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from gpufleet.domain import IllegalTransition, NodeState
from gpufleet.health.remediation import (
    REMEDIATION_TRANSITIONS, TERMINAL, Phase, Remediation, RemediationHooks, Remediator, StepResult,
    should_remediate,
)
from gpufleet.health.tickets import Ticket, TicketRef
from gpufleet.health.types import CheckRecord, NodeHealth, Status


def health(status: Status, node: str = "n1", message: str = "GPU 0: XID 79", requeue: bool = True) -> NodeHealth:
    rec = CheckRecord(node, "xid", 0.0, status, message, {}, 0.0, "r1")
    return NodeHealth(node, 0.0, "r1", (rec,), requeue and status is Status.FAIL)


@dataclass
class World:
    """The effects the machine asks for, recorded; `recheck_ok` etc. script the outcomes."""

    log: list[str] = field(default_factory=list)
    runbook_ok: list[bool] = field(default_factory=lambda: [True])
    burn_in_ok: list[bool] = field(default_factory=lambda: [True])
    recheck_ok: list[bool] = field(default_factory=lambda: [True])
    idle_after: int = 0
    tickets: list[Ticket] = field(default_factory=list)
    now: float = 1000.0

    def hooks(self, ticketer=True) -> RemediationHooks:
        return RemediationHooks(
            drain=lambda n, reason, rq: self.log.append(f"drain {n} requeue={rq}"),
            resume=lambda n: self.log.append(f"resume {n}"),
            runbook=lambda n, reason, rnd: self._next("runbook", self.runbook_ok, rnd),
            burn_in=lambda n: self._next("burn_in", self.burn_in_ok),
            recheck=lambda n: health(Status.OK if self._pop(self.recheck_ok) else Status.FAIL, n),
            ticketer=self if ticketer else None,
            is_idle=self._idle,
        )

    def open(self, ticket: Ticket) -> TicketRef:
        self.tickets.append(ticket)
        return TicketRef("test", f"T-{len(self.tickets)}", "http://tracker/T-1")

    def _idle(self, node: str) -> bool:
        self.idle_after -= 1
        return self.idle_after < 0

    def _next(self, what: str, outcomes: list[bool], rnd: int | None = None) -> StepResult:
        ok = self._pop(outcomes)
        self.log.append(f"{what} {'ok' if ok else 'fail'}" + (f" round {rnd}" if rnd else ""))
        return StepResult(ok, f"{what} {'ok' if ok else 'failed'}")

    @staticmethod
    def _pop(outcomes: list[bool]) -> bool:
        return outcomes.pop(0) if len(outcomes) > 1 else outcomes[0]


def machine(world: World, **kw) -> tuple[Remediator, list[dict]]:
    saved: list[dict] = []
    kw.setdefault("max_rounds", 3)
    r = Remediator(world.hooks(kw.pop("ticketer", True)), clock=lambda: world.now,
                   on_change=lambda rem: saved.append(rem.to_dict()), **kw)
    return r, saved


def test_success_path_resumes():
    world = World()
    r, saved = machine(world)
    rem = r.start("n1", health(Status.FAIL))
    assert rem.reason == "health: xid: GPU 0: XID 79"
    r.run(rem, sleep=lambda s: None)
    assert rem.phase is Phase.RESUMED and rem.outcome == "resumed" and rem.round == 1
    assert world.log == ["drain n1 requeue=True", "runbook ok round 1", "burn_in ok", "resume n1"]
    assert [s.phase for s in rem.steps] == [Phase.DRAIN, Phase.WAIT_IDLE, Phase.RUNBOOK, Phase.BURN_IN,
                                            Phase.RECHECK, Phase.RESUME]
    assert saved[0]["phase"] == "drain" and saved[-1]["outcome"] == "resumed"
    assert world.tickets == []


def test_the_end_is_stored_before_the_node_is_resumed():
    """Whatever starts on the node once it is UP starts after the stored `ended_at` (e2e ops race)."""
    world = World()
    r, saved = machine(world)
    seen_at_resume: list[dict] = []
    r.hooks.resume = lambda n: (seen_at_resume.append(dict(saved[-1])), world.log.append(f"resume {n}"))
    rem = r.start("n1", health(Status.FAIL))
    while rem.phase is not Phase.RESUME:
        r.step(rem)
    world.now = 1005.0
    r.step(rem)
    (stored,) = seen_at_resume
    assert stored["ended_at"] == 1005.0 and stored["phase"] == "resume" and stored["outcome"] is None
    assert rem.outcome == "resumed" and rem.ended_at == 1005.0 and saved[-1]["ended_at"] == 1005.0


def test_a_crash_between_the_stored_end_and_the_resume_resumes_on_restart():
    world = World()
    r, saved = machine(world)

    def crash(n):
        raise SystemExit("server killed")

    r.hooks.resume = crash
    rem = r.start("n1", health(Status.FAIL))
    with pytest.raises(SystemExit):
        r.run(rem, sleep=lambda s: None)
    stored = saved[-1]
    assert stored["phase"] == "resume" and stored["ended_at"] is not None and stored["outcome"] is None
    again = Remediation(node="n1", reason=stored["reason"], requeue=True, max_rounds=3,
                        started_at=stored["started_at"], phase=Phase.RESUME, ended_at=stored["ended_at"])
    r2, _ = machine(world)
    r2.run(again, sleep=lambda s: None)
    assert again.outcome == "resumed" and world.log[-1] == "resume n1"


def test_waits_for_running_jobs_before_the_runbook():
    world = World(idle_after=2)
    r, _ = machine(world)
    rem = r.start("n1", health(Status.FAIL, requeue=False))
    assert r.step(rem) is True  # drain
    assert r.step(rem) is False and r.step(rem) is False  # two jobs still running
    assert rem.phase is Phase.WAIT_IDLE
    assert r.step(rem) is True and rem.phase is Phase.RUNBOOK
    assert world.log == ["drain n1 requeue=False"]


def test_second_round_heals():
    world = World(recheck_ok=[False, True])
    r, _ = machine(world)
    rem = r.run(r.start("n1", health(Status.FAIL)), sleep=lambda s: None)
    assert rem.outcome == "resumed" and rem.round == 2
    assert world.log.count("runbook ok round 2") == 1


def test_failed_rounds_escalate_with_a_ticket_and_stay_drained():
    world = World(runbook_ok=[True, False, True], burn_in_ok=[False, True], recheck_ok=[False])
    r, _ = machine(world)
    rem = r.run(r.start("n1", health(Status.FAIL)), sleep=lambda s: None)
    assert rem.outcome == "escalated" and rem.round == 3
    assert "resume n1" not in world.log
    assert world.log == ["drain n1 requeue=True", "runbook ok round 1", "burn_in fail",
                         "runbook fail round 2", "runbook ok round 3", "burn_in ok"]
    (ticket,) = world.tickets
    assert ticket.node == "n1" and ticket.rounds == 3 and ticket.dedupe_key == "gpufleet-n1-1000"
    assert "round 2 runbook: FAILED runbook failed" in ticket.body
    assert rem.ticket.id == "T-1" and rem.steps[-1].message.startswith("ticket test:T-1")


def test_retry_delay_between_rounds_uses_the_clock():
    world = World(recheck_ok=[False, True])
    r, _ = machine(world, retry_delay_s=600)
    rem = r.start("n1", health(Status.FAIL))
    for _ in range(5):
        r.step(rem)  # drain, idle, runbook, burn-in, recheck (fails)
    assert rem.phase is Phase.RUNBOOK and rem.round == 2
    assert r.step(rem) is False  # too early
    world.now += 601
    assert r.step(rem) is True


def test_crashing_hooks_fail_the_round_not_the_loop():
    world = World()
    r, _ = machine(world, max_rounds=1, ticketer=False)
    r.hooks.runbook = lambda n, reason, rnd: 1 / 0
    rem = r.run(r.start("n1", health(Status.FAIL)), sleep=lambda s: None)
    assert rem.outcome == "escalated"
    assert any("runbook crashed: ZeroDivisionError" in s.message for s in rem.steps)
    assert rem.steps[-1].message == "no ticketer configured: node stays drained"


def test_ticket_failure_is_retried_later():
    world = World(recheck_ok=[False])
    r, _ = machine(world, max_rounds=1)
    calls = []

    def flaky_open(ticket):
        calls.append(ticket)
        if len(calls) == 1:
            raise ConnectionError("tracker down")
        return TicketRef("test", "T-9")

    r.hooks.ticketer = type("T", (), {"open": staticmethod(flaky_open)})()
    rem = r.start("n1", health(Status.FAIL))
    while rem.phase is not Phase.TICKET:
        r.step(rem)
    assert r.step(rem) is False and rem.phase is Phase.TICKET
    assert r.step(rem) is False  # not before 60 s
    world.now += 61
    assert r.step(rem) is True and rem.outcome == "escalated" and rem.ticket.id == "T-9"
    assert calls[0].dedupe_key == calls[1].dedupe_key


def test_restart_continues_from_the_stored_phase():
    world = World()
    r, saved = machine(world)
    rem = r.start("n1", health(Status.FAIL))
    r.step(rem), r.step(rem), r.step(rem)  # drain, idle, runbook
    stored = saved[-1]
    assert stored["phase"] == "burn_in"
    # a new server process: rebuild from the stored row and carry on
    again = Remediation(node=stored["node"], reason=stored["reason"], requeue=stored["requeue"],
                        max_rounds=stored["max_rounds"], started_at=stored["started_at"],
                        phase=Phase(stored["phase"]), round=stored["round"])
    r2, _ = machine(world)
    r2.run(again, sleep=lambda s: None)
    assert again.outcome == "resumed"
    assert world.log.count("runbook ok round 1") == 1 and world.log.count("burn_in ok") == 1


def test_transition_table_is_closed_and_enforced():
    for phase, nexts in REMEDIATION_TRANSITIONS.items():
        assert (phase in TERMINAL) == (not nexts)
        assert nexts <= set(Phase)
    world = World()
    r, _ = machine(world)
    rem = r.start("n1", health(Status.FAIL))
    with pytest.raises(IllegalTransition):
        r._move(rem, Phase.RESUMED, 0.0)


def test_should_remediate():
    assert should_remediate(health(Status.FAIL), NodeState.UP, active=False)
    assert not should_remediate(health(Status.WARN), NodeState.UP, active=False)
    assert not should_remediate(health(Status.FAIL), NodeState.UP, active=True)
    assert not should_remediate(health(Status.FAIL), NodeState.DRAIN, active=False)  # admin drained it

"""Recurring automation: cron schedules that run at their slots, survive restarts, and never run
twice for the same slot.

The rule: a slot is an instant the cron expression names. A schedule is due when the latest slot
at or before `now` is later than its durable `last_slot` (or, never run, than its creation). The
runner CLAIMS the slot first, through the caller's compare-and-set (`UPDATE schedules SET
last_slot=:slot, last_outcome='running' WHERE name=:name AND last_slot IS :expected`), and only
then launches; a crash after the claim leaves `running`, which `mark_interrupted` turns into
`interrupted` on the next start: at most once per slot, never twice. Slots missed while the server
was down collapse into one run of the latest slot (or `missed`, when later than `max_lateness_s`).

Pure functions + a small runner with an injected clock and store callbacks (no I/O of its own).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from gpufleet.domain import ValidationError

RUNNING = "running"
INTERRUPTED = "interrupted"
MISSED = "missed"


@dataclass(frozen=True, slots=True)
class Schedule:
    """One row of table `schedules`."""

    name: str
    cron: str
    command: tuple[str, ...] = ()  # e.g. ("gpufleet", "health", "run")
    job: Mapping[str, Any] | None = None  # or a job template (JobSpec as YAML mapping)
    tz: str = "UTC"
    enabled: bool = True
    created_at: float = 0.0
    last_slot: float | None = None  # durable: the last slot claimed
    last_outcome: str | None = None  # running | ok | failed: ... | interrupted | missed
    last_run_at: float | None = None  # when the last claimed slot actually started
    last_duration_s: float | None = None


@dataclass(frozen=True, slots=True)
class Fired:
    name: str
    slot: float
    outcome: str


def validate_cron(expr: str, tz: str = "UTC") -> str:
    expr = " ".join(str(expr).split())
    if not croniter.is_valid(expr):
        raise ValidationError("cron", f"not a cron expression: {expr!r} (e.g. \"0 3 * * *\")")
    if len(expr.split()) > 5 and not expr.startswith("@"):
        raise ValidationError("cron", "use 5 fields: minute hour day-of-month month day-of-week")
    _zone(tz)
    return expr


def validate_schedule(s: Schedule) -> Schedule:
    """A command is an argv, run without a shell: `$(...)`, `;` or quotes in it are plain text.
    What cannot be an argument at all (NUL, a non-string, an empty program name) is refused here."""
    if re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", s.name or "", re.ASCII) is None:
        raise ValidationError("name", "letters, digits, '-', '_' and '.' only")
    if bool(s.command) == bool(s.job):
        raise ValidationError("command", "give a command or a job template (exactly one)")
    if s.command and (not all(isinstance(a, str) and "\0" not in a for a in s.command) or not s.command[0]):
        raise ValidationError("command", "a list of strings without NUL bytes, the first naming the program")
    return replace(s, cron=validate_cron(s.cron, s.tz))


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError("tz", f"unknown time zone {tz!r}") from None


def next_slot(cron: str, after: float, tz: str = "UTC") -> float:
    """The first slot strictly after `after` (epoch seconds)."""
    start = datetime.fromtimestamp(after, _zone(tz))
    return float(croniter(cron, start).get_next(float))


def latest_slot(cron: str, now: float, tz: str = "UTC") -> float:
    """The last slot at or before `now`."""
    start = datetime.fromtimestamp(now + 1e-3, _zone(tz))  # `now` itself counts when it is a slot
    return float(croniter(cron, start).get_prev(float))


def due_slot(s: Schedule, now: float) -> float | None:
    """The slot to run now, or None. Never a slot at or before `last_slot` (or creation)."""
    if not s.enabled:
        return None
    slot = latest_slot(s.cron, now, s.tz)
    floor = s.last_slot if s.last_slot is not None else s.created_at
    return slot if slot > floor else None


def describe(s: Schedule, now: float) -> dict[str, Any]:
    """What `gpufleet schedule list` shows: last and next run and the outcome."""
    return {
        "name": s.name, "cron": s.cron, "tz": s.tz, "enabled": s.enabled,
        "command": list(s.command), "job": dict(s.job) if s.job else None,
        "last_slot": _iso(s.last_slot), "last_run_at": _iso(s.last_run_at),
        "last_outcome": s.last_outcome, "last_duration_s": s.last_duration_s,
        "next_slot": _iso(next_slot(s.cron, now, s.tz)) if s.enabled else None,
    }


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


# Store callbacks the caller implements over its table.
ListSchedules = Callable[[], Iterable[Schedule]]
Claim = Callable[[str, float, "float | None", float], bool]  # (name, slot, expected last_slot, now) -> won
Record = Callable[[str, float, str, float], None]  # (name, slot, outcome, duration_s)
Launch = Callable[[Schedule, float], str]  # run it; returns the outcome ("ok", "failed: ...")


@dataclass
class RecurringRunner:
    list_schedules: ListSchedules
    claim: Claim
    record: Record
    launch: Launch
    clock: Callable[[], float] = time.time
    max_lateness_s: float | None = None  # a slot later than this is recorded `missed`, not run
    fired: list[Fired] = field(default_factory=list)

    def tick(self) -> list[Fired]:
        """Run every schedule whose slot has come. Call it every few seconds."""
        out: list[Fired] = []
        now = self.clock()
        for s in self.list_schedules():
            slot = due_slot(s, now)
            if slot is None or not self.claim(s.name, slot, s.last_slot, now):
                continue  # not due, or another tick/replica already claimed this slot
            out.append(Fired(s.name, slot, self._run(s, slot, now)))
        self.fired.extend(out)
        return out

    def _run(self, s: Schedule, slot: float, now: float) -> str:
        if self.max_lateness_s is not None and now - slot > self.max_lateness_s:
            self.record(s.name, slot, MISSED, 0.0)
            return MISSED
        t0 = time.perf_counter()
        try:
            outcome = self.launch(s, slot)
        except Exception as e:
            outcome = f"failed: {e.__class__.__name__}: {e}"
        self.record(s.name, slot, outcome, round(time.perf_counter() - t0, 3))
        return outcome


def mark_interrupted(schedules: Iterable[Schedule], record: Record) -> list[str]:
    """On start-up: a slot left `running` was claimed by a process that died. It is NOT re-run."""
    names = []
    for s in schedules:
        if s.last_outcome == RUNNING and s.last_slot is not None:
            record(s.name, s.last_slot, INTERRUPTED, 0.0)
            names.append(s.name)
    return names


def command_launcher(timeout_s: float = 3600.0, env: Mapping[str, str] | None = None) -> Launch:
    """A launcher that runs the schedule's command as a child process (exit 0 = ok)."""
    from gpufleet.health.script import first_line, run_command

    def launch(s: Schedule, slot: float) -> str:
        if not s.command:
            raise ValidationError("command", f"schedule {s.name} has a job template, not a command")
        done = run_command(list(s.command), timeout_s, {**(env or {}), "GPUFLEET_SCHEDULE": s.name,
                                                       "GPUFLEET_SLOT": _iso(slot) or ""})
        if done.rc is None:
            return f"failed: timed out after {timeout_s:g}s"
        if done.rc == 0:
            return "ok"
        line = first_line(done.stderr, done.stdout)
        return f"failed: exit {done.rc}" + (f": {line}" if line else "")

    return launch

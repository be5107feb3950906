"""Cron slots, the never-twice rule across restarts and replicas, over a real SQLite file."""

from __future__ import annotations

import sqlite3
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from gpufleet.control.recurring import (
    INTERRUPTED, MISSED, RUNNING, RecurringRunner, Schedule, command_launcher, describe, due_slot,
    latest_slot, mark_interrupted, next_slot, validate_cron, validate_schedule,
)
from gpufleet.domain import ValidationError


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


class SqliteSchedules:
    """The store callbacks over a real SQLite file, as the server's store would implement them."""

    def __init__(self, path: Path):
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("""CREATE TABLE IF NOT EXISTS schedules (name TEXT PRIMARY KEY, cron TEXT, command TEXT,
                           tz TEXT, created_at REAL, last_slot REAL, last_outcome TEXT, last_run_at REAL,
                           last_duration_s REAL)""")

    def add(self, s: Schedule) -> None:
        self.db.execute("INSERT INTO schedules VALUES (?,?,?,?,?,NULL,NULL,NULL,NULL)",
                        (s.name, s.cron, "\x1f".join(s.command), s.tz, s.created_at))

    def list(self) -> list[Schedule]:
        rows = self.db.execute("SELECT * FROM schedules ORDER BY name").fetchall()
        return [Schedule(name=r[0], cron=r[1], command=tuple(r[2].split("\x1f")), tz=r[3], created_at=r[4],
                         last_slot=r[5], last_outcome=r[6], last_run_at=r[7], last_duration_s=r[8]) for r in rows]

    def claim(self, name: str, slot: float, expected: float | None, now: float) -> bool:
        cur = self.db.execute(
            "UPDATE schedules SET last_slot=?, last_outcome=?, last_run_at=? WHERE name=? AND last_slot IS ?",
            (slot, RUNNING, now, name, expected))
        return cur.rowcount == 1

    def record(self, name: str, slot: float, outcome: str, duration_s: float) -> None:
        self.db.execute("UPDATE schedules SET last_outcome=?, last_duration_s=? WHERE name=? AND last_slot=?",
                        (outcome, duration_s, name, slot))

    def get(self, name: str) -> Schedule:
        return [s for s in self.list() if s.name == name][0]


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def runner_for(store: SqliteSchedules, clock: Clock, runs: list, **kw) -> RecurringRunner:
    def launch(s: Schedule, slot: float) -> str:
        runs.append((s.name, slot))
        return "ok"

    return RecurringRunner(store.list, store.claim, store.record, kw.pop("launch", launch), clock, **kw)


def test_next_and_latest_slot():
    cron = "0 3 * * *"
    assert next_slot(cron, ts(2026, 3, 1, 2, 59)) == ts(2026, 3, 1, 3, 0)
    assert next_slot(cron, ts(2026, 3, 1, 3, 0)) == ts(2026, 3, 2, 3, 0)  # strictly after
    assert latest_slot(cron, ts(2026, 3, 1, 3, 0)) == ts(2026, 3, 1, 3, 0)  # a slot counts at its instant
    assert latest_slot(cron, ts(2026, 3, 1, 2, 59)) == ts(2026, 2, 28, 3, 0)
    # 03:00 in Berlin is 02:00 UTC in winter, 01:00 UTC in summer
    assert next_slot(cron, ts(2026, 1, 10), "Europe/Berlin") == ts(2026, 1, 10, 2, 0)
    assert next_slot(cron, ts(2026, 7, 10), "Europe/Berlin") == ts(2026, 7, 10, 1, 0)


def test_due_slot_respects_creation_and_last_slot():
    s = Schedule("nightly", "0 3 * * *", ("true",), created_at=ts(2026, 3, 1, 3, 30))
    assert due_slot(s, ts(2026, 3, 1, 23, 0)) is None  # created after today's slot
    assert due_slot(s, ts(2026, 3, 2, 3, 0, 5)) == ts(2026, 3, 2, 3, 0)
    claimed = Schedule("nightly", "0 3 * * *", ("true",), created_at=s.created_at, last_slot=ts(2026, 3, 2, 3, 0))
    assert due_slot(claimed, ts(2026, 3, 2, 9, 0)) is None
    off = Schedule("nightly", "0 3 * * *", ("true",), enabled=False)
    assert due_slot(off, ts(2026, 3, 2, 9, 0)) is None


def test_runs_once_per_slot_and_never_twice_across_a_restart(tmp_path):
    db = tmp_path / "gpufleet.db"
    store = SqliteSchedules(db)
    store.add(Schedule("health", "*/15 * * * *", ("gpufleet", "health", "run"), created_at=ts(2026, 3, 1, 0, 0)))
    clock, runs = Clock(ts(2026, 3, 1, 0, 0)), []
    runner = runner_for(store, clock, runs)
    for minute in range(0, 46):  # tick every minute from 00:00 to 00:45
        clock.t = ts(2026, 3, 1, 0, minute)
        runner.tick()
        runner.tick()  # twice per minute: the same slot must not fire again
    assert [slot for _, slot in runs] == [ts(2026, 3, 1, 0, 15), ts(2026, 3, 1, 0, 30), ts(2026, 3, 1, 0, 45)]

    # restart: a new process, a new connection to the same file, the same minute
    store2 = SqliteSchedules(db)
    runner2 = runner_for(store2, clock, runs)
    assert runner2.tick() == []
    clock.t = ts(2026, 3, 1, 1, 0, 30)
    assert [f.slot for f in runner2.tick()] == [ts(2026, 3, 1, 1, 0)]
    assert len(runs) == 4 and store2.get("health").last_outcome == "ok"


def test_crash_after_claim_is_marked_interrupted_not_rerun(tmp_path):
    db = tmp_path / "gpufleet.db"
    store = SqliteSchedules(db)
    store.add(Schedule("nightly", "0 3 * * *", ("run-suite",), created_at=ts(2026, 3, 1)))
    clock, runs = Clock(ts(2026, 3, 2, 3, 0, 1)), []

    class Crash(BaseException):
        pass

    def dies(s, slot):
        runs.append(slot)
        raise Crash()  # the server process dies mid-run (not an ordinary failure)

    with pytest.raises(Crash):
        runner_for(store, clock, runs, launch=dies).tick()
    assert store.get("nightly").last_outcome == RUNNING

    store2 = SqliteSchedules(db)  # restart
    assert mark_interrupted(store2.list(), store2.record) == ["nightly"]
    assert store2.get("nightly").last_outcome == INTERRUPTED
    clock.t += 60
    assert runner_for(store2, clock, runs).tick() == []
    assert runs == [ts(2026, 3, 2, 3, 0)]


def test_two_replicas_at_the_same_instant_run_once(tmp_path):
    db = tmp_path / "gpufleet.db"
    a, b = SqliteSchedules(db), SqliteSchedules(db)
    a.add(Schedule("sweep", "0 * * * *", ("sweep",), created_at=ts(2026, 3, 1)))
    clock, runs = Clock(ts(2026, 3, 1, 5, 0, 2)), []
    ra, rb = runner_for(a, clock, runs), runner_for(b, clock, runs)
    snapshot = a.list()  # both read the schedule before either claims
    ra.list_schedules = rb.list_schedules = lambda: snapshot
    assert len(ra.tick()) + len(rb.tick()) == 1
    assert len(runs) == 1


def test_downtime_collapses_to_one_run_or_missed(tmp_path):
    store = SqliteSchedules(tmp_path / "db")
    store.add(Schedule("nightly", "0 3 * * *", ("suite",), created_at=ts(2026, 3, 1)))
    store.add(Schedule("hourly", "0 * * * *", ("sweep",), created_at=ts(2026, 3, 1)))
    clock, runs = Clock(ts(2026, 3, 4, 3, 20)), []  # down for three days
    fired = runner_for(store, clock, runs, max_lateness_s=3600).tick()
    assert {f.name: f.outcome for f in fired} == {"nightly": "ok", "hourly": "ok"}
    assert runs == [("hourly", ts(2026, 3, 4, 3, 0)), ("nightly", ts(2026, 3, 4, 3, 0))]
    clock.t = ts(2026, 3, 5, 5, 0)  # nightly slot 03:00 is 2 h late now
    outcomes = {f.name: f.outcome for f in runner_for(store, clock, runs, max_lateness_s=3600).tick()}
    assert outcomes == {"hourly": "ok", "nightly": MISSED}
    assert store.get("nightly").last_outcome == MISSED


def test_command_launcher_and_describe(tmp_path):
    launch = command_launcher(timeout_s=10)
    ok = Schedule("ok", "@hourly", (sys.executable, "-c", "import os; assert os.environ['GPUFLEET_SCHEDULE'] == 'ok'"))
    bad = Schedule("bad", "@hourly", (sys.executable, "-c", "import sys; print('suite red'); sys.exit(3)"))
    assert launch(ok, ts(2026, 3, 1)) == "ok"
    assert launch(bad, ts(2026, 3, 1)) == "failed: exit 3: suite red"
    store = SqliteSchedules(tmp_path / "db")
    store.add(Schedule("bad", "0 * * * *", bad.command, created_at=ts(2026, 3, 1)))
    runner = RecurringRunner(store.list, store.claim, store.record, launch, Clock(ts(2026, 3, 1, 1, 0, 9)))
    runner.tick()
    d = describe(store.get("bad"), ts(2026, 3, 1, 1, 0, 9))
    assert d["last_slot"] == "2026-03-01T01:00:00+00:00" and d["next_slot"] == "2026-03-01T02:00:00+00:00"
    assert d["last_outcome"] == "failed: exit 3: suite red"


def test_validation():
    assert validate_cron("0  3 * * *") == "0 3 * * *"
    for bad in ("61 * * * *", "every night", "0 3 * *"):
        with pytest.raises(ValidationError, match="cron"):
            validate_cron(bad)
    with pytest.raises(ValidationError, match="tz"):
        validate_cron("0 3 * * *", "Mars/Olympus")
    with pytest.raises(ValidationError, match="command"):
        validate_schedule(Schedule("x", "0 3 * * *"))
    with pytest.raises(ValidationError, match="name"):
        validate_schedule(Schedule("no spaces", "0 3 * * *", ("true",)))
    assert validate_schedule(Schedule("suite.a100", "@daily", job={"command": ["pytest"], "gpu_model": "a100"}))


def test_a_hostile_command_runs_as_argv_never_through_a_shell(tmp_path):
    pwned = tmp_path / "pwned"
    hostile = (f"$(touch {pwned})", f"; touch {pwned}", f"`touch {pwned}`", "a\nb", "'\"", "*")
    check = f"import sys; assert sys.argv[1:] == {list(hostile)!r}, sys.argv"
    s = validate_schedule(Schedule("nightly", "@daily", (sys.executable, "-c", check, *hostile)))
    assert command_launcher(timeout_s=10)(s, ts(2026, 3, 1)) == "ok"
    assert not pwned.exists()


def test_what_cannot_be_an_argument_or_a_name_is_refused_at_add():
    for command in (("echo", "a\0b"), ("",), ("echo", 3)):
        with pytest.raises(ValidationError, match="command"):
            validate_schedule(Schedule("x", "@daily", command))
    for name in ("a\n", "ünï", "a" * 129, ""):
        with pytest.raises(ValidationError, match="name"):
            validate_schedule(Schedule(name, "@daily", ("true",)))

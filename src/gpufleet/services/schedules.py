"""Recurring schedules: add/list/remove (admin), and the runner the recurring loop ticks.

A schedule runs a command (`gpufleet health run`, with GPUFLEET_URL/GPUFLEET_TOKEN of this server
in its environment) or submits a job template (a JobSpec mapping, e.g. a nightly suite per model).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from gpufleet.control.recurring import (
    Launch, RecurringRunner, Schedule, command_launcher, describe, mark_interrupted, validate_schedule,
)
from gpufleet.domain import User
from gpufleet.domain.spec import build_spec
from gpufleet.services import jobs as job_svc
from gpufleet.services.context import Ctx, require_admin
from gpufleet.store.health import HealthRepo

SCHEDULER_USER = User("recurring", "default", admin=True)


def to_schedule(d: Mapping[str, Any]) -> Schedule:
    return Schedule(name=d["name"], cron=d["cron"], command=tuple(d.get("command") or ()), job=d.get("job"),
                    tz=d.get("tz") or "UTC", enabled=bool(d.get("enabled", True)),
                    created_at=float(d.get("created_at") or 0.0), last_slot=d.get("last_slot"),
                    last_outcome=d.get("last_outcome"), last_run_at=d.get("last_run_at"),
                    last_duration_s=d.get("last_duration_s"))


class ScheduleService:
    def __init__(self, ctx: Ctx, repo: HealthRepo, env: Mapping[str, str] | None = None,
                 command_timeout_s: float = 3600.0, metrics: Any = None):
        self.ctx = ctx
        self.repo = repo
        self.metrics = metrics
        self._command = command_launcher(command_timeout_s, env)

    def add(self, user: User, name: str, cron: str, command: Sequence[str] = (),
            job: Mapping[str, Any] | None = None, tz: str = "UTC") -> dict[str, Any]:
        require_admin(user, "schedule add")
        s = validate_schedule(Schedule(name=name, cron=cron, command=tuple(command), job=dict(job) if job else None,
                                       tz=tz, created_at=self.ctx.clock()))
        if s.job:
            build_spec(s.job, default_tenant=SCHEDULER_USER.tenant)  # reject a bad template now, not at 3 am
        self.repo.add_schedule(s.name, s.cron, s.tz, list(s.command), s.job, s.created_at, user.name)
        self.ctx.audit(user, "schedule_add", f"schedule/{name}", cron=s.cron, command=list(s.command))
        return describe(s, self.ctx.clock())

    def list(self) -> list[dict[str, Any]]:
        now = self.ctx.clock()
        return [describe(to_schedule(d), now) for d in self.repo.schedules()]

    def remove(self, user: User, name: str) -> None:
        require_admin(user, "schedule remove")
        self.repo.remove_schedule(name)
        self.ctx.audit(user, "schedule_remove", f"schedule/{name}")

    def launch(self, s: Schedule, slot: float) -> str:
        if s.job:
            job = job_svc.submit(self.ctx, SCHEDULER_USER, {**s.job, "name": s.job.get("name") or s.name})
            outcome = f"submitted job {job.id}"
        else:
            outcome = self._command(s, slot)
        if self.metrics is not None:
            self.metrics.observe_schedule_run(s.name, outcome)
        return outcome

    def runner(self, launch: Launch | None = None) -> RecurringRunner:
        return RecurringRunner(
            list_schedules=lambda: [to_schedule(d) for d in self.repo.schedules()],
            claim=self.repo.claim_slot, record=self.repo.record_outcome,
            launch=launch or self.launch, clock=self.ctx.clock)

    def start(self) -> list[str]:
        """On server start: slots left `running` by a dead process become `interrupted`."""
        return mark_interrupted([to_schedule(d) for d in self.repo.schedules()], self.repo.record_outcome)

"""Health use-cases for the API/CLI and the health loop: run checks, show history, inject faults,
and the remediation hooks wired to gpufleet (drain/resume through services.nodes, requeue through
the job's pending action, runbook through Ansible, burn-in as a command, tickets by config).
Boards of a labgrid farm (`add_boards`) go through the same remediations and tickets, with their
own steps: their golden-check verdicts are the health results, the runbook is a reflash with the
golden image, the re-check is the golden check (docs/boards.md, executors/labgrid/health.py).

    svc = build_health_service(ctx, settings.health, home, local_nodes=[...], metrics=metrics)
    health loop, every svc.settings.interval_s:   svc.tick()
    server start:                                  svc.start()   (continues stored remediations)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from gpufleet.domain import JobState, NodeState, NotFound, User, ValidationError, parse_duration
from gpufleet.health.burnin import CommandBurnIn
from gpufleet.health.config import HealthSettings, parse_health
from gpufleet.health.cycle import HealthCycle, RemediationWorkers
from gpufleet.health.fake_nvml import FakeNvmlFleet
from gpufleet.health.history import failures_per_week, group_by_node, top_failing_checks
from gpufleet.health.remediation import Phase, Remediation, RemediationHooks, Remediator, StepResult, drain_reason
from gpufleet.health.runbook import AnsibleRunbook
from gpufleet.health.runner import HealthRunner, LocalNvml
from gpufleet.health.tickets import build_ticketer
from gpufleet.health.types import CheckRecord, NodeHealth, Status
from gpufleet.services import nodes as node_svc
from gpufleet.services.context import Ctx, require_admin
from gpufleet.store.health import HealthRepo
from gpufleet.observability.logs import get_logger

SYSTEM_USER = User("health", "ops", admin=True)
OUTLIER_INTERVAL_S = 3600.0
RESULTS_RECHECK_S = 14 * 86400.0  # a slow node resumed by a remediation this recently and slow again: ticket
log = get_logger("gpufleet.health")
WEEK_S = 7 * 86400


@dataclass
class HealthService:
    ctx: Ctx
    repo: HealthRepo
    settings: HealthSettings
    runner: HealthRunner
    fleet: FakeNvmlFleet | None = None
    metrics: Any = None  # gpufleet.observability.Metrics
    home: Path | None = None
    remediator: Remediator | None = field(default=None, init=False)
    workers: RemediationWorkers | None = field(default=None, init=False)
    unhealthy: set[str] = field(default_factory=set, init=False)  # nodes whose latest run failed
    hardware: Any = None  # store.hardware.HardwareRepo: identity refreshed each tick (None: not)
    outlier_interval_s: float = OUTLIER_INTERVAL_S  # how often results are scanned for slow nodes
    _outliers_at: float | None = field(default=None, init=False)
    _outlier_drained: dict[str, frozenset] = field(default_factory=dict, init=False)  # node -> findings
    # board farms' health (executors/labgrid/health.py GoldenChecks): verdicts, reflash, golden check
    boards: list = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        rs = self.settings.remediation
        if rs.enabled:
            self.remediator = Remediator(self._hooks(), rs.max_rounds, rs.retry_delay_s, self.ctx.clock,
                                         on_change=self._remediation_changed)
            self.workers = RemediationWorkers(self.remediator, poll_s=max(1.0, min(30.0, self.settings.interval_s)))
        self.cycle = HealthCycle(self.runner, self.remediator, nodes=self._server_nodes,
                                 save_results=self._save, active=self.repo.open_remediation,
                                 workers=self.workers, on_result=self._observed)

    # ---- the loop ---------------------------------------------------------------------------
    def start(self) -> int:
        """Continue remediations a previous server process left unfinished."""
        return self.workers.resume_all(self.repo.remediations(open_only=True)) if self.workers else 0

    def tick(self, only: Iterable[str] | None = None) -> list[NodeHealth]:
        if self.hardware is not None:  # a driver upgrade or VBIOS flash is noticed within an interval
            from gpufleet.services.hardware import refresh_identity

            nodes = [n for n in self.ctx.store.nodes() if only is None or n.name in set(only)]
            refresh_identity(self.hardware, self.runner.nvml, nodes, self.ctx.clock())
        out = self.cycle.tick(only)
        out += self.board_verdicts(only)
        if only is None:
            self.drain_outliers()
        return out

    # ---- boards -----------------------------------------------------------------------------
    def add_boards(self, farm: Any) -> None:
        """A labgrid farm's board health joins this loop: its verdicts are stored like check
        results, a failing one starts a remediation (reflash, golden check, resume or ticket)."""
        self.boards.append(farm)
        farm.attach(managed=self.remediator is not None)

    def _board(self, node: str) -> Any:
        return next((farm for farm in self.boards if farm.owns(node)), None)

    def _server_nodes(self) -> list:
        """The nodes the checks run on: boards have their golden check instead."""
        nodes = self.ctx.store.nodes()
        return [n for n in nodes if self._board(n.name) is None] if self.boards else nodes

    def board_verdicts(self, only: Iterable[str] | None = None) -> list[NodeHealth]:
        """Store the farms' new verdicts (golden checks, a job's failed power-on/flash/SSH);
        start a remediation for a failing one on a board no admin drained."""
        out = []
        for farm in self.boards:
            events, offset = farm.unread()
            for ev in events:
                try:
                    node = self.ctx.store.get_node(ev["place"])
                except NotFound:
                    continue
                health = board_health(node.name, ev)
                self._save(health)
                self._observed(health)
                out.append(health)
                if health.status is Status.FAIL and self.remediator is not None \
                        and self.repo.open_remediation(node.name) is None \
                        and node.state is not NodeState.DOWN and not farm.admin_drained(node.name):
                    rem = self.remediator.start(node.name, health)
                    self.remediator.step(rem)  # the drain (board health drained it already: kept)
                    self.workers.submit(rem)
            farm.ack(offset)
        return [h for h in out if only is None or h.node in set(only)]

    def drain_outliers(self, force: bool = False) -> list[str]:
        """Results as a health signal: a node whose benchmark results sit outside its fleet's
        (slow or noisy, `results outliers`) is taken out, at most every `outlier_interval_s`:
        with remediation on, a remediation (drain, let jobs finish, runbook, burn-in, re-check,
        resume); a node still slow in the results since a remediation resumed it (within
        RESULTS_RECHECK_S) is drained and ticketed; with remediation off, drained with the reason.
        A node is taken out once for the same findings: after an admin resumes it, only a new
        finding (another benchmark or kind) takes it out again."""
        from gpufleet.results.analysis import quarantine
        from gpufleet.services.results import find_outliers

        now = self.ctx.clock()
        if not force and self._outliers_at is not None and now - self._outliers_at < self.outlier_interval_s:
            return []
        self._outliers_at = now
        try:
            found = quarantine(find_outliers(self.ctx, SYSTEM_USER))
        except Exception as e:  # the results must not stop the health loop
            log.warning("results outlier scan failed", error=str(e))
            return []
        drained = []
        known = {n.name: n for n in self.ctx.store.nodes()}
        for q in found:
            node = known.get(q.node)
            if node is None or node.state is not NodeState.UP:
                continue
            findings = frozenset((o.benchmark, o.metric, o.params, o.stats.kind) for o in q.outliers)
            fixed = self._results_remediation(q.node, now)
            if fixed is not None:  # judged on what it did since: old results say nothing new
                since = quarantine(find_outliers(self.ctx, SYSTEM_USER, since=fixed.ended_at))
                again = next((x for x in since if x.node == q.node), None)
                if again is not None:
                    self._take_out(q.node, f"results: still {again.reason} after remediation {fixed.id}",
                                   escalate=True)
                    drained.append(q.node)
                continue
            if findings <= self._outlier_drained.get(q.node, frozenset()):
                continue
            self._take_out(node.name, f"results: {q.reason}")
            self._outlier_drained[q.node] = findings | self._outlier_drained.get(q.node, frozenset())
            drained.append(node.name)
        return drained

    def _results_remediation(self, node: str, now: float) -> Remediation | None:
        """The node's newest remediation for results, if it resumed the node lately."""
        for rem in self.repo.remediations(node, limit=10):
            if rem.reason.startswith(drain_reason("results:")):
                recent = rem.ended_at is not None and now - rem.ended_at <= RESULTS_RECHECK_S
                return rem if rem.phase is Phase.RESUMED and recent else None
        return None

    def _take_out(self, node: str, reason: str, escalate: bool = False) -> None:
        if self.remediator is None or self.repo.open_remediation(node) is not None:
            self._drain(node, reason[:240], False)
            return
        record = CheckRecord(node, "results", self.ctx.clock(), Status.FAIL, reason[len("results: "):], {}, 0.0,
                             f"results-{int(self.ctx.clock() * 1000)}")
        health = NodeHealth(node, record.at, record.run_id, (record,))  # jobs there finish (no requeue)
        rem = self.remediator.escalate(node, health) if escalate else self.remediator.start(node, health)
        if not escalate:
            self.remediator.step(rem)  # the drain, now
        self.workers.submit(rem)

    def close(self) -> None:
        if self.workers is not None:
            self.workers.close()
        self.runner.close()

    # ---- use-cases --------------------------------------------------------------------------
    def run(self, user: User, nodes: Iterable[str] | None = None) -> list[NodeHealth]:
        require_admin(user, "health run")
        wanted = list(nodes) if nodes else None
        for name in wanted or ():
            self.ctx.store.get_node(name)  # NotFound names the node
        self.ctx.audit(user, "health_run", ",".join(wanted) if wanted else "all")
        return self.tick(wanted)

    def show(self, node: str, limit: int = 200, weeks: int = 8) -> dict[str, Any]:
        n = self.ctx.store.get_node(node)
        records = self.repo.results(node, limit=limit)
        now = self.ctx.clock()
        latest = self.repo.latest(node)
        failures = self.repo.results(node, since=now - weeks * WEEK_S, status="fail", limit=100_000)
        return {
            "node": node, "state": n.state.value, "reason": n.reason,
            "latest": latest.to_dict() if latest else None,
            "history": [r.to_dict() for r in records],
            "failures_per_week": failures_per_week(failures, now, weeks),
            "top_failing_checks": top_failing_checks(failures),
            "remediations": [r.to_dict() for r in self.repo.remediations(node, limit=20)],
        }

    def summary(self, weeks: int = 8, only: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Per node: state, latest status, failures per ISO week (`gpufleet nodes --health`).
        `only`: just these nodes (the dashboard's page of them)."""
        now = self.ctx.clock()
        by_node = group_by_node(self.repo.results(since=now - weeks * WEEK_S, status="fail", limit=1_000_000))
        active = {r.node: r for r in self.repo.remediations(open_only=True, limit=100_000)}
        wanted = None if only is None else set(only)
        out = []
        for n in self.ctx.store.nodes():
            if wanted is not None and n.name not in wanted:
                continue
            latest = self.repo.latest(n.name)
            rem = active.get(n.name)
            out.append({
                "node": n.name, "state": n.state.value, "reason": n.reason,
                "status": latest.status.value if latest else None, "checked_at": latest.at if latest else None,
                "failures_per_week": failures_per_week(by_node.get(n.name, []), now, weeks),
                "remediation": None if rem is None else {"phase": rem.phase.value, "round": rem.round},
            })
        return out

    def remediations(self, node: str | None = None, open_only: bool = False) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.repo.remediations(node, open_only=open_only)]

    def inject(self, user: User, fault: Mapping[str, Any]) -> None:
        require_admin(user, "fault injection")
        if self.fleet is None:
            raise ValidationError("fault", "fault injection needs the fake NVML (health.nvml: fake)")
        self.ctx.store.get_node(str(fault.get("node", "")))
        self.fleet.inject(fault)
        self.ctx.audit(user, "fault_inject", f"node/{fault.get('node')}", **{k: v for k, v in fault.items() if k != "node"})

    # ---- perf runs (control/perf.py's hooks) -------------------------------------------------
    def release(self, health: NodeHealth) -> None:
        """A perf prolog refused the node: keep its findings with the health results, drain the
        node and hand it to remediation (runbook, burn-in, recheck, resume or ticket)."""
        self._save(health)
        self._observed(health)
        node = self.ctx.store.get_node(health.node)
        if node.state is not NodeState.UP:
            return
        if self.remediator is not None and self.repo.open_remediation(node.name) is None:
            self.cycle._maybe_remediate(node, health)
        else:
            self._drain(node.name, f"perf prolog: {health.reason}"[:240], False)

    def findings(self, node: str, since: float | None) -> list[str]:
        """XID/ECC findings of the health loop: since `since`, or in each check's latest result."""
        wanted = ("xid", "ecc")
        records = [r for r in self.repo.results(node, since=since, limit=1000) if r.check in wanted]
        if since is None:
            newest: dict[str, Any] = {}
            for r in records:  # newest first
                newest.setdefault(r.check, r)
            records = list(newest.values())
        return [f"{r.check}: {r.message}" for r in records if r.status is not Status.OK]

    # ---- internals --------------------------------------------------------------------------
    def _save(self, health: NodeHealth) -> None:
        self.repo.add_results(health)
        if health.status is Status.FAIL:
            self.unhealthy.add(health.node)
        else:
            self.unhealthy.discard(health.node)

    def _observed(self, health: NodeHealth) -> None:
        if self.metrics is not None:
            self.metrics.observe_health(health)

    def _remediation_changed(self, rem: Remediation) -> None:
        self.repo.save_remediation(rem)
        if self.metrics is not None:
            self.metrics.observe_remediation(rem)
        if rem.done:
            self.ctx.audit(SYSTEM_USER, "ticket" if rem.ticket else "resume" if rem.outcome == "resumed" else "drain",
                           f"node/{rem.node}", outcome=rem.outcome, rounds=rem.round,
                           ticket=rem.ticket.id if rem.ticket else None)

    def _hooks(self) -> RemediationHooks:
        return RemediationHooks(drain=self._drain, resume=self._resume, runbook=self._runbook(),
                                burn_in=self._burn_in(), recheck=self._recheck,
                                ticketer=build_ticketer(self.settings.ticket), is_idle=self._idle)

    def _drain(self, node: str, reason: str, requeue: bool) -> None:
        if self._board(node) is not None and self.ctx.store.get_node(node).state is not NodeState.UP:
            return  # the farm drained the board when the check failed: its reason stays
        node_svc.set_state(self.ctx, SYSTEM_USER, node, NodeState.DRAIN, reason)
        if requeue:
            for job in self._running_on(node):
                if not job.extra.get("pending_action"):
                    self.ctx.store.set_action(job.id, "requeue", f"node {node} failed health checks", JobState.RUNNING)
            self.ctx.wake()

    def _resume(self, node: str) -> None:
        if self.ctx.store.get_node(node).state is not NodeState.UP:
            node_svc.set_state(self.ctx, SYSTEM_USER, node, NodeState.UP)
        elif self._board(node) is not None:  # the farm's drain the store has not synced yet
            self.ctx.executor.resume(node)

    def _idle(self, node: str) -> bool:
        return not self._running_on(node)

    def _running_on(self, node: str) -> list:
        return [j for j in self.ctx.store.list_jobs(states=["RUNNING"], limit=1_000_000) if node in j.node_names]

    def _recheck(self, node: str) -> NodeHealth:
        farm = self._board(node)
        if farm is not None:
            ok, message, facts = farm.check(node)
            health = board_health(node, {"check": "golden", "ok": ok, "message": message,
                                         "at": self.ctx.clock(), "facts": facts})
        else:
            health = self.runner.run(self.ctx.store.get_node(node))
        self._save(health)
        self._observed(health)
        return health

    def _runbook(self):
        servers = self._server_runbook()

        def runbook(node: str, reason: str, rnd: int) -> StepResult:
            farm = self._board(node)
            if farm is None:
                return servers(node, reason, rnd)
            return StepResult(*farm.reflash(node))  # a board's runbook: its golden image again
        return runbook

    def _server_runbook(self):
        rs = self.settings.remediation
        if not rs.playbook:
            return lambda node, reason, rnd: StepResult(True, "no runbook configured")
        return AnsibleRunbook(rs.playbook, inventory=rs.ansible_inventory, timeout_s=rs.runbook_timeout_s,
                              address_of=lambda n: self.ctx.store.get_node(n).address,
                              connection_local=rs.connection_local,
                              extravars=rs.extravars,
                              artifacts_dir=str(self.home / "runbooks") if self.home else None)

    def _burn_in(self):
        servers = self._server_burn_in()

        def burn_in(node: str) -> StepResult:
            if self._board(node) is not None:
                return StepResult(True, "a board's burn-in is its golden check (the re-check)")
            return servers(node)
        return burn_in

    def _server_burn_in(self):
        cfg = self.settings.remediation.burn_in
        if not cfg.get("command"):
            return lambda node: StepResult(True, "no burn-in configured")
        timeout = parse_duration(cfg.get("timeout", 3600), "health.remediation.burn_in.timeout") or 3600
        return CommandBurnIn(tuple(str(c) for c in cfg["command"]), float(timeout))


def board_health(node: str, ev: Mapping[str, Any]) -> NodeHealth:
    """A board farm's verdict as one health run (check `golden`, or `board` for a job's failed
    power-on/flash/SSH): stored with the servers' results, so flakiness counts it the same way."""
    at = float(ev.get("at") or 0.0)
    run_id = f"{ev.get('check', 'board')}-{int(at * 1000)}"
    status = Status.OK if ev.get("ok") else Status.FAIL
    record = CheckRecord(node, str(ev.get("check", "board")), at, status, str(ev.get("message", "")),
                         dict(ev.get("facts") or {}), 0.0, run_id)
    return NodeHealth(node, at, run_id, (record,))


def build_health_service(ctx: Ctx, health_cfg: Mapping[str, Any] | None, home: Path | None = None,
                         local_nodes: Iterable[str] = (), metrics: Any = None,
                         host_nodes: Iterable[str] | None = None) -> HealthService:
    """`local_nodes`: nodes that ARE this host (NVML discovery); real NVML checks run only there.
    `host_nodes`: nodes whose work executes on this host (the local engine's virtual nodes); host
    checks (disk, memory) run only there. None: every node."""
    settings = parse_health(health_cfg)
    fleet = None
    if settings.nvml == "fake":
        fleet = FakeNvmlFleet(ctx.store.nodes())
        provider: Any = fleet
    elif settings.nvml == "auto":
        provider = LocalNvml(local_nodes)
    else:
        provider = None
    runner = HealthRunner(settings.checks, provider, clock=ctx.clock, host_nodes=host_nodes)
    return HealthService(ctx, HealthRepo(ctx.store), settings, runner, fleet, metrics, home)


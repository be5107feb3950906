"""The composition root: the one place where settings, store, executor, loops and API meet."""

from __future__ import annotations

import importlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from gpufleet.control.health_loop import run_health, run_recurring
from gpufleet.control.loop import ControlLoop, CycleReport, run_control
from gpufleet.executors.base import Ability, Executor
from gpufleet.inventory import Discovered, discover
from gpufleet.services import Ctx
from gpufleet.observability import Metrics, configure_logging, get_logger
from gpufleet.services.health import HealthService, build_health_service
from gpufleet.services.schedules import ScheduleService
from gpufleet.services.tenants import bootstrap, mint_token
from gpufleet.settings import Settings
from gpufleet.store import Store, make_engine, migrate

log = get_logger("gpufleet")

# Each engine package exposes `create(options: dict, home: Path) -> Executor`.
EXECUTOR_MODULES = {
    "local": "gpufleet.executors.local",
    "slurm": "gpufleet.executors.slurm",
    "kubernetes": "gpufleet.executors.kubernetes",
    "fake": "gpufleet.executors.fake",
}


def build_executor(settings: Settings, nodes: list | None = None) -> Executor:
    module = importlib.import_module(EXECUTOR_MODULES[settings.executor])
    options = dict(getattr(settings, settings.executor, {}) or {}) if settings.executor in ("slurm", "kubernetes") else {}
    if settings.executor == "local":
        options["addresses"] = {n.name: n.address for n in nodes or []}
    return module.create(options, settings.home)


@dataclass
class Server:
    settings: Settings
    store: Store
    executor: Executor
    ctx: Ctx
    loop: ControlLoop
    discovered: Discovered | None
    admin_token: str
    metrics: Metrics
    health: HealthService
    schedules: ScheduleService
    stop: threading.Event
    wake: threading.Event

    def start_loops(self) -> list[threading.Thread]:
        loops = [
            ("control", run_control, (self.loop, self.stop, self.wake, self.settings.loop_interval_s)),
            ("health", run_health, (self.health, self.stop)),
            ("recurring", run_recurring, (self.schedules, self.stop)),
        ]
        threads = [threading.Thread(target=fn, name=name, args=args, daemon=True) for name, fn, args in loops]
        for t in threads:
            t.start()
        return threads

    def on_cycle(self, report: CycleReport) -> None:
        self.metrics.observe_cycle(report.duration_s)
        self.metrics.update_fleet(report.jobs, report.nodes, self.ctx.clock(), self.health.unhealthy)


def build(settings: Settings) -> Server:
    settings.home.mkdir(parents=True, exist_ok=True)
    store = Store(make_engine(settings.db_url))
    migrate(store.engine)
    discovered = None
    if settings.executor in ("local", "fake"):
        discovered = discover(settings.inventory, settings.fake_gpus)
    executor = build_executor(settings, discovered.inventory.nodes if discovered else None)
    if discovered is not None:
        store.sync_nodes(discovered.inventory.nodes)
    elif Ability.NODES in executor.abilities:
        store.sync_nodes(executor.nodes(), keep_state=False)
    wake, stop = threading.Event(), threading.Event()
    ctx = Ctx(store=store, executor=executor, wake=wake.set)
    bootstrap(ctx, discovered.inventory.tenants if discovered else [])
    token = _ensure_admin_token(ctx, settings.home)
    loop = ControlLoop(store, executor, config=settings.scheduler)
    metrics = Metrics()
    local = [n.name for n in discovered.inventory.nodes] if discovered and discovered.source == "nvml" else []
    # the local engine's nodes all execute here; Slurm/Kubernetes nodes are elsewhere
    host = [n.name for n in discovered.inventory.nodes] if discovered else []
    health = build_health_service(ctx, settings.health, settings.home, local_nodes=local, metrics=metrics,
                                  host_nodes=host)
    schedules = ScheduleService(ctx, health.repo, metrics=metrics,
                                env={"GPUFLEET_URL": settings.url, "GPUFLEET_TOKEN": token})
    server = Server(settings, store, executor, ctx, loop, discovered, token, metrics, health, schedules,
                    stop, wake)
    loop.on_cycle = server.on_cycle
    return server


def _ensure_admin_token(ctx: Ctx, home: Path) -> str:
    """Write the admin token where the CLI on this machine finds it (mode 0600). If the file is
    missing or stale (e.g. another database), mint a fresh admin token: starting the server on this
    machine is proof enough of being its admin."""
    path = home / "admin.token"
    if path.exists():
        old = path.read_text().strip()
        user = ctx.store.user_for_token(old)
        if user is not None and user.admin:
            return old
    token = mint_token(ctx, "admin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.chmod(path, 0o600)
    return token


def serve(settings: Settings) -> None:
    import json

    import uvicorn

    from gpufleet.api.app import create_app

    configure_logging(settings.log_format)
    server = build(settings)
    if server.discovered is not None:
        n = server.discovered.inventory.nodes
        log.info("inventory", source=server.discovered.source, nodes=len(n),
                 gpus=sum(len(x.gpus) for x in n), notice=server.discovered.notice)
    app = create_app(server.ctx, metrics=server.metrics.render, health_service=server.health,
                     schedule_service=server.schedules, max_body_bytes=settings.max_request_bytes)
    (settings.home / "server.json").write_text(json.dumps({"url": settings.url, "pid": os.getpid()}))
    server.start_loops()
    log.info("gpufleet serving", url=settings.url, executor=server.executor.name,
             db=settings.db_url.split("@")[-1])
    try:
        # log_config=None: uvicorn's own lines go through our structured logging too
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning",
                    access_log=False, log_config=None)
    finally:
        server.stop.set()
        server.wake.set()
        server.executor.close()

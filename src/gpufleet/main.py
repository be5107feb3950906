"""The composition root: the one place where settings, store, executor, loops and API meet."""

from __future__ import annotations

import importlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from gpufleet.control.loop import ControlLoop, run_control
from gpufleet.executors.base import Ability, Executor
from gpufleet.inventory import Discovered, discover
from gpufleet.services import Ctx
from gpufleet.services.tenants import bootstrap, mint_token
from gpufleet.settings import Settings
from gpufleet.store import Store, make_engine, migrate

log = logging.getLogger("gpufleet")

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
    stop: threading.Event
    wake: threading.Event

    def start_loops(self) -> list[threading.Thread]:
        t = threading.Thread(target=run_control, name="control",
                             args=(self.loop, self.stop, self.wake, self.settings.loop_interval_s),
                             daemon=True)
        t.start()
        return [t]


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
    return Server(settings, store, executor, ctx, loop, discovered, token, stop, wake)


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
    from gpufleet.observe import configure_logging, metrics_for

    configure_logging(settings.log_format)
    server = build(settings)
    if server.discovered is not None:
        n = server.discovered.inventory.nodes
        log.info("inventory from %s: %d nodes, %d GPUs. %s", server.discovered.source, len(n),
                 sum(len(x.gpus) for x in n), server.discovered.notice)
    metrics, on_cycle = metrics_for(server)
    server.loop.on_cycle = on_cycle
    app = create_app(server.ctx, metrics=metrics)
    (settings.home / "server.json").write_text(json.dumps({"url": settings.url, "pid": os.getpid()}))
    server.start_loops()
    log.info("gpufleet serving on %s (executor %s, db %s)", settings.url, server.executor.name,
             settings.db_url.split("@")[-1])
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning",
                    access_log=False)
    finally:
        server.stop.set()
        server.wake.set()
        server.executor.close()

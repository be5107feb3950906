"""The composition root: the one place where settings, store, executor, loops and API meet."""

from __future__ import annotations

import importlib
import os
import secrets
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

from gpufleet.control.health_loop import run_health, run_recurring
from gpufleet.control.loop import ControlLoop, CycleReport, run_control
from gpufleet.control.pools import DEFAULT_POOL, POOL_LABEL, PoolRouter
from gpufleet.domain import ValidationError, parse_booking_limits, parse_duration
from gpufleet.executors.base import Ability, Executor
from gpufleet.inventory import Discovered, discover
from gpufleet.services import Ctx
from gpufleet.observability import Metrics, configure_logging, get_logger
from gpufleet.services.health import HealthService, build_health_service
from gpufleet.services.schedules import ScheduleService
from gpufleet.services.tenants import bootstrap, mint_token
from gpufleet.services.results_collect import collect as collect_results, perf_lookup
from gpufleet.services import results as results_svc
from gpufleet.executors.accounts import Accounts
from gpufleet.listeners import Listeners, bind_all, socket_paths
from gpufleet.ownership import DatabaseLock, HomeLock
from gpufleet.settings import Settings
from gpufleet.store import Store, make_engine, migrate
from gpufleet.control.busy import BusySampler
from gpufleet.control.perf import PerfGuard
from gpufleet.services.hardware import refresh_identity
from gpufleet.store.hardware import HardwareRepo

log = get_logger("gpufleet")

# Each engine package exposes `create(options: dict, home: Path) -> Executor`.
EXECUTOR_MODULES = {
    "local": "gpufleet.executors.local",
    "slurm": "gpufleet.executors.slurm",
    "kubernetes": "gpufleet.executors.kubernetes",
    "fake": "gpufleet.executors.fake",
    "labgrid": "gpufleet.executors.labgrid",
}


def build_executor(settings: Settings, nodes: list | None = None, accounts: Accounts | None = None,
                   lang: str | None = None) -> Executor:
    module = importlib.import_module(EXECUTOR_MODULES[settings.executor])
    options = dict(getattr(settings, settings.executor, {}) or {}) \
        if settings.executor in ("slurm", "kubernetes", "labgrid") else {}
    if settings.executor in ("local", "slurm", "kubernetes"):
        options["accounts"] = accounts  # who jobs run as (executors/accounts.py)
    if settings.executor in ("local", "slurm"):
        options.setdefault("containers", settings.containers)  # podman, per-tenant authfiles
    if settings.executor == "local":
        options["addresses"] = {n.name: n.address for n in nodes or []}
        options["lang"] = lang
    return module.create(options, settings.home)


def build_pools(settings: Settings, default: Executor, accounts: Accounts | None, store: Store,
                static: list | None) -> Executor:
    """With `pools:` in the settings, a PoolRouter: the default pool's executor (`executor`) beside
    one executor per extra pool, each created with its own options; without, the one executor."""
    if not settings.pools:
        return default
    pools: dict[str, Executor] = {DEFAULT_POOL: default}
    for name, spec in settings.pools.items():
        options = {k: v for k, v in spec.items() if k != "executor"}
        if spec["executor"] in ("slurm", "kubernetes"):
            options["accounts"] = accounts
        module = importlib.import_module(EXECUTOR_MODULES[spec["executor"]])
        pools[name] = module.create(options, settings.home / "pools" / name)
    for n in static or []:  # the inventory file's nodes are the default pool's unless labelled
        n.labels.setdefault(POOL_LABEL, DEFAULT_POOL)
        if n.labels[POOL_LABEL] not in pools:
            raise ValidationError(f"inventory.{n.name}.labels.pool", f"no node pool {n.labels[POOL_LABEL]!r}")
    router = PoolRouter(pools, DEFAULT_POOL, node_pool=lambda name: store.get_node(name).labels.get(POOL_LABEL))
    router.learn(static or [])
    return router


def board_farms(settings: Settings, executor: Executor) -> list:
    """The labgrid engines' board health (executors/labgrid/health.py), for the health loop."""
    if isinstance(executor, PoolRouter):
        kinds = {DEFAULT_POOL: settings.executor, **{n: s["executor"] for n, s in (settings.pools or {}).items()}}
        engines = [executor.pools[n] for n, kind in kinds.items() if kind == "labgrid" and n in executor.pools]
    else:
        engines = [executor] if settings.executor == "labgrid" else []
    return [ex.board_health for ex in engines]


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
    accounts: Accounts | None = None
    locks: list = field(default_factory=list)  # HomeLock, DatabaseLock: released by close()
    busy: BusySampler | None = None  # busy GPU-seconds through NVML, once a control cycle (control/busy.py)

    def close(self) -> None:
        if self.ctx.artifacts is not None:
            self.ctx.artifacts.close()  # finish the collections under way
        self.loop.close()
        self.executor.close()
        if self.busy is not None:
            self.busy.close()
        for lock in reversed(self.locks):
            lock.release()

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
        self.metrics.observe_interruptions(report.interruptions)
        if self.busy is not None:
            try:
                self.busy.sample(report.jobs, report.nodes, self.ctx.clock())
            except Exception as e:  # accounting must not stop the control loop
                log.warning("busy sampling failed", error=str(e))
        self.metrics.update_fleet(report.jobs, report.nodes, self.ctx.clock(), self.health.unhealthy)


def build(settings: Settings, lock: HomeLock | None = None) -> Server:
    """Everything wired, after taking the data directory's lock (unless given): a second build on
    the same home raises ServerRunning having touched nothing."""
    lock = lock or HomeLock.acquire(settings.home, settings.port)
    locks: list = [lock]
    try:
        return _build(settings, locks)
    except BaseException:
        for held in reversed(locks):
            held.release()
        raise


def _build(settings: Settings, locks: list) -> Server:
    _private_home(settings.home)
    store = Store(make_engine(settings.db_url), jobs_resync_s=settings.jobs_resync_s)
    locks.append(DatabaseLock.acquire(store.engine))  # before the first write to the database
    migrate(store.engine)
    _private_sqlite(settings)
    store.put_meta("server", {"pid": os.getpid(), "port": settings.port, "host": socket.gethostname(),
                              "home": str(settings.home)})
    accounts = Accounts.of_this_process(settings.accounts, settings.admin_group,
                                        new_user_tenant=settings.peer_tenant)
    discovered = None
    if settings.executor in ("local", "fake"):
        discovered = discover(settings.inventory, settings.fake_gpus)
    executor = build_executor(settings, discovered.inventory.nodes if discovered else None, accounts,
                              os.environ.get("LANG"))  # a job's LANG: the server's, else C.UTF-8
    executor = build_pools(settings, executor, accounts, store, discovered.inventory.nodes if discovered else None)
    # jobs run as their owners only on an engine that declares it (local; Slurm's sbatch path)
    accounts = accounts.for_engine(executor.abilities, executor.runs_jobs_as)
    if isinstance(executor, PoolRouter):  # each pool its own nodes: the file's, the engines'
        if discovered is not None:
            store.sync_nodes(discovered.inventory.nodes, prune=False)
        executor.sync(store)
    elif discovered is not None:
        store.sync_nodes(discovered.inventory.nodes)
    elif Ability.NODES in executor.abilities:
        store.sync_nodes(executor.nodes(), keep_state=False)
    wake, stop = threading.Event(), threading.Event()
    ctx = Ctx(store=store, executor=executor, wake=wake.set, accounts=accounts,
              booking_limits=parse_booking_limits(settings.bookings))
    bootstrap(ctx, discovered.inventory.tenants if discovered else [])
    token = _ensure_admin_token(ctx, settings.home)
    loop = ControlLoop(store, executor, config=settings.scheduler, launch_concurrency=settings.launch_concurrency)
    if Ability.WATCH in executor.abilities:  # a job that ended in the engine: cycle now, not at the interval
        executor.watch(wake.set)
    if isinstance(executor, PoolRouter):
        loop.node_sync = executor.sync
    metrics = Metrics()
    results_svc.watch_metrics(ctx, metrics)  # latest value per series, open regressions
    local = [n.name for n in discovered.inventory.nodes] if discovered and discovered.source == "nvml" else []
    # the local engine's nodes all execute here; Slurm/Kubernetes nodes are elsewhere
    host = [n.name for n in discovered.inventory.nodes] if discovered else []
    health = build_health_service(ctx, settings.health, settings.home, local_nodes=local, metrics=metrics,
                                  host_nodes=host)
    for farm in board_farms(settings, executor):  # boards: reflash + golden check, same tickets
        health.add_boards(farm)
    hardware = HardwareRepo(store)
    refresh_identity(hardware, health.runner.nvml, store.nodes(), time.time())
    health.hardware = hardware
    loop.perf = PerfGuard(health.runner.nvml, hardware, health)
    schedules = ScheduleService(ctx, health.repo, metrics=metrics,
                                env={"GPUFLEET_URL": settings.url, "GPUFLEET_TOKEN": token})
    server = Server(settings, store, executor, ctx, loop, discovered, token, metrics, health, schedules,
                    stop, wake, accounts, locks)
    loop.on_cycle = server.on_cycle
    server.busy = BusySampler(health.runner.nvml, store, metrics.add_busy)
    ctx.artifacts = build_artifacts(settings, store, ctx)

    def on_attempt_end(job) -> None:
        try:
            collect_results(store, executor, job, ctx.clock(), perf_lookup(hardware))
        finally:  # a bad results file does not cost the job its artifacts
            ctx.artifacts.on_attempt_end(executor, job)

    loop.on_attempt_end = on_attempt_end
    return server


def build_artifacts(settings: Settings, store: Store, ctx: Ctx):
    """The artifact service over the configured store (settings.artifacts)."""
    from gpufleet.artifacts.config import build_store, limits
    from gpufleet.services.artifacts import ArtifactService

    max_bytes, retention_s = limits(settings.artifacts or {})
    return ArtifactService(store, build_store(settings.artifacts or {}, settings.home), lambda: ctx.clock(),
                           max_bytes=max_bytes, retention_s=retention_s,
                           background=True)  # uploads must not stall the control loop


def _private_home(home: Path) -> None:
    """The data directory is the server's alone (0700): database, tokens, run control files."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.stat(home).st_mode & 0o077:
        os.chmod(home, 0o700)


def _private_sqlite(settings: Settings) -> None:
    """The SQLite database and its WAL/SHM files: 0600 (SQLite gives the WAL files the database's mode)."""
    url = make_url(settings.db_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return
    db = Path(url.database)
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        if path.exists():
            os.chmod(path, 0o600)


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
    _write_secret(path, token)
    return token


def _ensure_metrics_token(home: Path) -> str:
    """The scrape token for /metrics (settings metrics_auth: token), kept across restarts so that
    Prometheus' credentials_file stays valid; a separate secret, so Prometheus holds no admin token."""
    path = home / "metrics.token"
    if path.exists() and (old := path.read_text().strip()):
        return old
    token = "gfm_" + secrets.token_urlsafe(32)
    _write_secret(path, token)
    return token


def _write_secret(path: Path, secret: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    os.chmod(path, 0o600)


def serve(settings: Settings) -> None:
    """`gpufleet serve`: 1. lock the data directory  2. bind the port and the local sockets
    3. build (database, inventory, executor)  4. serve until SIGTERM/SIGINT, then clean up."""
    os.umask(0o077)  # what the server writes is its own; jobs get 022 from the shim
    signal.signal(signal.SIGTERM, _exit_cleanly)  # also re-raised by uvicorn once it has stopped
    configure_logging(settings.log_format)
    lock = HomeLock.acquire(settings.home, settings.port)
    try:
        root = os.geteuid() == 0
        listeners = bind_all(settings.host, settings.port, socket_paths(settings.home, settings.socket, root))
    except BaseException:
        lock.release()
        raise
    server = None
    try:
        server = build(settings, lock)
        _serve(server, listeners)
    finally:
        if server is not None:
            server.stop.set()
            server.wake.set()
        listeners.close()
        (settings.home / "server.json").unlink(missing_ok=True)  # still ours: the lock is held
        if server is not None:
            server.close()  # executor, then the database and home locks
        lock.release()


def _exit_cleanly(signum, frame) -> None:
    raise SystemExit(0)


def _serve(server: Server, listeners: Listeners) -> None:
    import json

    import uvicorn

    from gpufleet.api.app import create_app
    from gpufleet.api.peer import PeerCredProtocol, PeerCredWSProtocol

    settings = server.settings
    _log_start(server, listeners)
    scrape = _ensure_metrics_token(settings.home) if settings.metrics_auth == "token" else None
    app = create_app(server.ctx, metrics=server.metrics.render, metrics_token=scrape, health_service=server.health,
                     schedule_service=server.schedules, max_body_bytes=settings.max_request_bytes,
                     session_idle_s=parse_duration(settings.session_idle_timeout, "session_idle_timeout"))
    info = {"url": settings.url, "pid": os.getpid(), "sockets": [str(u.path) for u in listeners.unix]}
    fd = os.open(settings.home / "server.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(info))
    server.start_loops()
    # one uvicorn server for the port and the sockets; log_config=None: its lines go through ours
    config = uvicorn.Config(app, http=PeerCredProtocol, ws=PeerCredWSProtocol, log_level="warning",
                            access_log=False, log_config=None)
    uvicorn.Server(config).run(sockets=listeners.sockets)


def _log_start(server: Server, listeners: Listeners) -> None:
    settings = server.settings
    if server.discovered is not None:
        n = server.discovered.inventory.nodes
        log.info("inventory", source=server.discovered.source, nodes=len(n),
                 gpus=sum(len(x.gpus) for x in n), notice=server.discovered.notice)
    for note in listeners.notes:
        log.warning("local socket", notice=note)
    if server.accounts is not None and server.accounts.notice:
        log.warning("jobs are not isolated", notice=server.accounts.notice)
    log.info("gpufleet serving", url=settings.url, executor=server.executor.name,
             sockets=[str(u.path) for u in listeners.unix], db=settings.db_url.split("@")[-1])

"""Server settings: flags, an optional YAML config file, and the data directory. Read ONLY by the
composition root (main.py); core code gets what it needs injected."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from gpufleet.domain import ValidationError, parse_booking_limits, parse_duration
from gpufleet.scheduler import POLICIES, SchedulerConfig

EXECUTORS = ("local", "slurm", "kubernetes", "fake", "labgrid")
# engines an extra node pool may use: they own their inventory (the default pool has the file's)
POOL_EXECUTORS = ("slurm", "kubernetes", "labgrid")


def default_home() -> Path:
    """Where the embedded server keeps its database, runs and admin token."""
    env = os.environ.get("GPUFLEET_HOME")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("gpufleet"))


@dataclass
class Settings:
    home: Path = field(default_factory=default_home)
    db: str | None = None  # default: sqlite in home
    inventory: str | None = None
    fake_gpus: int | None = None
    host: str = "127.0.0.1"
    port: int = 8765
    executor: str = "local"
    loop_interval_s: float = 0.5
    # jobs the control loop hands to the engine at once (engines that declare concurrent
    # launches: Slurm, Kubernetes); 1: one after the other
    launch_concurrency: int = 8
    # the control loop's active jobs are kept in memory, written through by every job write, and
    # all re-read from the database this often (catches writers outside this server)
    jobs_resync_s: float = 60.0
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    slurm: dict[str, Any] = field(default_factory=dict)  # options for the Slurm executor
    kubernetes: dict[str, Any] = field(default_factory=dict)  # kubeconfig, namespace, ...
    labgrid: dict[str, Any] = field(default_factory=dict)  # coordinator, places, ssh, power... (docs/boards.md)
    # extra node pools, each with its own engine beside the default pool (`executor`):
    # {name: {executor: slurm|kubernetes|labgrid, <that engine's options>...}}; a node's `pool`
    # label says where it belongs (docs/boards.md "Several engines")
    pools: dict[str, Any] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)
    # how jobs with an `image` run on the local engine and in Slurm without pyxis: podman (path),
    # authfiles {tenant: registry auth file}, cdi_dirs, extra_args (docs/containers.md)
    containers: dict[str, Any] = field(default_factory=dict)
    log_format: str = "auto"  # auto | json | console
    # who jobs run as and who is admin on the local socket (see README "Security model")
    accounts: dict[str, str] = field(default_factory=dict)  # gpufleet user -> Unix account (default: same name)
    admin_group: str | None = None  # Unix group whose members are admins over the socket (root always is)
    peer_tenant: str | None = "default"  # tenant of an account first seen on the socket (None: refuse it)
    socket: str | None = None  # the local socket (default <home>/gpufleet.sock; "off": none)
    max_request_bytes: int = 1024 * 1024  # larger API request bodies get 413
    # who may read /metrics: "token" (the scrape token in <home>/metrics.token, or an admin's token)
    # or "none" (anyone who reaches the port: only behind a firewall you trust)
    metrics_auth: str = "token"
    # what a non-admin may book without an admin's approval: max_duration, max_horizon,
    # node_hours_per_week, and per-tenant overrides under `tenants:` (examples/server.yaml)
    bookings: dict[str, Any] = field(default_factory=dict)
    # the artifact store: local (default, <home>/artifacts) or http (Artifactory / WebDAV), quota
    # and expiry defaults (src/gpufleet/artifacts/config.py, docs/ci.md "Artifacts")
    artifacts: dict[str, Any] = field(default_factory=dict)
    # an interactive session (gpufleet shell/attach/exec) without input for this long is warned,
    # then ended (docs/sessions.md); a client may ask for less or more with --idle-timeout
    session_idle_timeout: str | int = "30m"

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite:///{self.home / 'gpufleet.db'}"

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"


def load_settings(config_file: str | None = None, **overrides: Any) -> Settings:
    """Defaults < config file < flags (the flags given as overrides; None means not given)."""
    s = Settings()
    if config_file:
        s = _apply_file(s, config_file)
    for key, value in overrides.items():
        if value is None:
            continue
        if key in {f.name for f in fields(SchedulerConfig)}:
            s.scheduler = replace(s.scheduler, **{key: value})
        else:
            setattr(s, key, Path(value) if key == "home" else value)
    _check(s)
    return s


def _apply_file(s: Settings, path: str) -> Settings:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ValidationError("config", f"no such file: {path}") from None
    except yaml.YAMLError as e:
        raise ValidationError("config", f"not valid YAML: {e}") from None
    known = {f.name for f in fields(Settings)}
    for key, value in data.items():
        if key not in known:
            raise ValidationError(f"config.{key}", f"unknown setting (known: {', '.join(sorted(known))})")
        if key == "scheduler":
            sched_keys = {f.name for f in fields(SchedulerConfig)}
            bad = set(value) - sched_keys
            if bad:
                raise ValidationError(f"config.scheduler.{sorted(bad)[0]}", "unknown scheduler setting")
            s.scheduler = replace(s.scheduler, **value)
        else:
            setattr(s, key, Path(value) if key == "home" else value)
    return s


def _check(s: Settings) -> None:
    if s.executor not in EXECUTORS:
        raise ValidationError("executor", f"unknown executor {s.executor!r} (one of {', '.join(EXECUTORS)})")
    _check_pools(s)
    if s.scheduler.policy not in POLICIES:
        raise ValidationError("policy", f"unknown policy {s.scheduler.policy!r} (one of {', '.join(POLICIES)})")
    spares = s.scheduler.spares_per_block
    if isinstance(spares, bool) or not isinstance(spares, int) or spares < 0:
        raise ValidationError("scheduler.spares_per_block", f"must be an integer >= 0, got {spares!r}")
    if s.inventory and s.fake_gpus is not None:
        raise ValidationError("inventory", "give --inventory or --fake-gpus, not both")
    if s.fake_gpus is not None and s.fake_gpus < 0:
        raise ValidationError("fake_gpus", "must be >= 0")
    parse_booking_limits(s.bookings)  # names the bad key, e.g. bookings.max_duration
    if isinstance(s.max_request_bytes, bool) or not isinstance(s.max_request_bytes, int) \
            or s.max_request_bytes < 1024:
        raise ValidationError("max_request_bytes", f"must be an integer >= 1024, got {s.max_request_bytes!r}")
    if isinstance(s.launch_concurrency, bool) or not isinstance(s.launch_concurrency, int) \
            or not 1 <= s.launch_concurrency <= 256:
        raise ValidationError("launch_concurrency", f"must be an integer from 1 to 256, got {s.launch_concurrency!r}")
    if not 0 < s.port < 65536:
        raise ValidationError("port", f"not a port: {s.port}")
    parse_duration(s.session_idle_timeout, "session_idle_timeout")
    if s.metrics_auth not in ("token", "none"):
        raise ValidationError("metrics_auth", f"one of token, none; got {s.metrics_auth!r}")
    if isinstance(s.jobs_resync_s, bool) or not isinstance(s.jobs_resync_s, (int, float)) or s.jobs_resync_s <= 0:
        raise ValidationError("jobs_resync_s", f"must be a number of seconds > 0, got {s.jobs_resync_s!r}")
    _check_accounts(s)


def _check_accounts(s: Settings) -> None:
    if s.accounts is None:
        s.accounts = {}
    if not isinstance(s.accounts, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and k and v and "\0" not in k + v and "/" not in v
            for k, v in s.accounts.items()):
        raise ValidationError("accounts", "must map gpufleet user names to Unix account names")
    if s.admin_group is not None and (not isinstance(s.admin_group, str) or not s.admin_group):
        raise ValidationError("admin_group", "must be a Unix group name")
    if s.peer_tenant is not None and not isinstance(s.peer_tenant, str):
        raise ValidationError("peer_tenant", "must be a tenant name, or null")


def _check_pools(s: Settings) -> None:
    if s.pools is None:
        s.pools = {}
    if not isinstance(s.pools, dict):
        raise ValidationError("pools", "must map pool names to {executor: ..., options}")
    for name, spec in s.pools.items():
        if not isinstance(name, str) or not name or name == "default" or not name.replace("-", "").replace("_", "").isalnum():
            raise ValidationError("pools", f"pool name {name!r}: letters, digits, - and _; 'default' is the main executor's")
        if not isinstance(spec, dict) or spec.get("executor") not in POOL_EXECUTORS:
            raise ValidationError(f"pools.{name}.executor", f"one of {', '.join(POOL_EXECUTORS)}")

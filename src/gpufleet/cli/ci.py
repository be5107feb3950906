"""`gpufleet ci gitlab config|prepare|run|cleanup`: GitLab Runner's custom executor (docs/ci.md).
The runner's settings come before the program: `gpufleet ci gitlab --builds-dir DIR prepare`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Optional

import typer

from gpufleet.ci.gitlab import programs
from gpufleet.ci.gitlab.programs import Io, Runner
from gpufleet.client import Client
from gpufleet.client.http import locate_server

ci_app = typer.Typer(help="CI integrations.", no_args_is_help=True)
gitlab_app = typer.Typer(help="GitLab Runner custom executor (config_exec, prepare_exec, run_exec, "
                              "cleanup_exec): see docs/ci.md.", no_args_is_help=True)
ci_app.add_typer(gitlab_app, name="gitlab")


@gitlab_app.callback()
def gitlab(
    ctx: typer.Context,
    builds_dir: Path = typer.Option(..., "--builds-dir", envvar="GPUFLEET_CI_BUILDS_DIR",
                                    help="the runner's builds_dir; allocations are kept in DIR/.gpufleet/"),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="the runner's cache_dir"),
    heartbeat_timeout: float = typer.Option(120.0, "--heartbeat-timeout",
                                            help="seconds without the runner before an allocation ends itself"),
    report_every: float = typer.Option(5.0, "--report-every", help="seconds between pending reasons in the CI log"),
    default_time_limit: Optional[str] = typer.Option(
        "1h", "--default-time-limit", help="when neither GPUFLEET_TIME_LIMIT nor CI_JOB_TIMEOUT is set"),
    python: str = typer.Option(sys.executable, "--python", help="the Python (with gpufleet) that runs the agent"),
) -> None:
    ctx.obj = Runner(builds_dir=builds_dir.absolute(), cache_dir=cache_dir, heartbeat_timeout=heartbeat_timeout,
                     report_every=report_every, default_time_limit=default_time_limit, python=python)


def connect(environ) -> Client:
    """The server as the CLI finds it (socket: the runner host's identity; or a token), with the
    CI job's own GPUFLEET_TOKEN variable, when it has one, as the credentials."""
    a = locate_server()
    return Client(a.url, environ.get("CUSTOM_ENV_GPUFLEET_TOKEN") or a.token, socket=a.socket)


def _io() -> Io:
    io = Io(out=sys.stdout.buffer)

    def on_term(signum, frame):
        io.terminated = True

    signal.signal(signal.SIGTERM, on_term)
    return io


@contextlib.contextmanager
def _term_deferred():
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


@gitlab_app.command("config")
def config(ctx: typer.Context) -> None:
    """config_exec: print the JSON the runner reads (builds_dir, hostname, driver)."""
    print(json.dumps(programs.config_output(ctx.obj)))


@gitlab_app.command("prepare")
def prepare(ctx: typer.Context) -> None:
    """prepare_exec: submit the allocation from the GPUFLEET_* CI variables and wait until it runs."""
    env = dict(os.environ)
    io = _io()
    with connect(env) as client:
        code = programs.prepare(ctx.obj, env, client, io, defer_term=_term_deferred)
    raise typer.Exit(code)


@gitlab_app.command("run")
def run(ctx: typer.Context, script: str = typer.Argument(..., help="the runner's script"),
        stage: str = typer.Argument(..., help="the sub-stage: get_sources, step_script, ...")) -> None:
    """run_exec: run one sub-stage's script inside the allocation, streaming its output."""
    env = dict(os.environ)
    io = _io()
    with connect(env) as client:
        code = programs.run(ctx.obj, env, script, stage, client, io)
    raise typer.Exit(code)


@gitlab_app.command("cleanup")
def cleanup(ctx: typer.Context) -> None:
    """cleanup_exec: release the allocation (nothing to do when there is none)."""
    env = dict(os.environ)
    io = _io()
    with connect(env) as client:
        code = programs.cleanup(ctx.obj, env, client, io)
    raise typer.Exit(code)

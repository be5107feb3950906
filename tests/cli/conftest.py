"""A real HTTP server (uvicorn in a thread) on the fake engine, for CLI commands that need one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from gpufleet.api.app import create_app
from gpufleet.main import build
from gpufleet.settings import load_settings
from tests.conftest import EXAMPLE_LAB

BIN = Path(sys.executable).parent / "gpufleet"


class Served:
    def __init__(self, server, url: str):
        self.server = server
        self.url = url

    def cli(self, *args: str, token: str | None = None) -> subprocess.CompletedProcess:
        """Run the real `gpufleet ARGS` against this server (admin token unless given)."""
        env = {**os.environ, "GPUFLEET_URL": self.url, "GPUFLEET_TOKEN": token or self.server.admin_token}
        return subprocess.run([str(BIN), *args], capture_output=True, text=True, env=env, timeout=60)


@contextmanager
def serving(app) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread on a free loopback port; yields its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        thread.join(10)


@pytest.fixture
def gf_server(tmp_path, clock):
    server = build(load_settings(home=tmp_path, executor="fake", inventory=str(EXAMPLE_LAB)))
    server.ctx.clock = server.loop.clock = server.executor.clock = clock
    with serving(create_app(server.ctx)) as url:
        yield Served(server, url)
    server.executor.close()

"""One server per data directory and per database; the port and sockets bound before any state.

Two builds on one home; the PostgreSQL advisory lock against the real PostgreSQL; then real
`gpufleet serve` processes: a second one (another port, or the same port) exits 2 with one line
and leaves the live server's inventory and server.json alone; SIGTERM removes server.json."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import pytest
from sqlalchemy import create_engine

from gpufleet.domain.errors import ServerRunning
from gpufleet.listeners import bind_unix
from gpufleet.main import build
from gpufleet.ownership import DatabaseLock, HomeLock
from gpufleet.settings import load_settings
from tests.conftest import EXAMPLE_LAB, require_engine
from tests.e2e.conftest import BIN, ServerProc, free_port


def test_two_builds_on_one_home(tmp_path):
    first = build(load_settings(home=tmp_path, executor="fake", fake_gpus=2, port=8111))
    with pytest.raises(ServerRunning) as e:
        build(load_settings(home=tmp_path, executor="fake", fake_gpus=4, port=8222))
    assert str(e.value) == f"another gpufleet server (pid {os.getpid()}, port 8111) owns {tmp_path}; stop it first"
    assert [len(n.gpus) for n in first.store.nodes()] == [2]  # the loser changed nothing
    first.close()
    again = build(load_settings(home=tmp_path, executor="fake", fake_gpus=4, port=8222))
    assert [len(n.gpus) for n in again.store.nodes()] == [4]
    again.close()


def test_the_home_lock_survives_nothing_but_its_holder(tmp_path):
    lock = HomeLock.acquire(tmp_path, 1)
    assert json.loads(lock.path.read_text()) == {"pid": os.getpid(), "port": 1}
    assert oct(lock.path.stat().st_mode & 0o777) == "0o600"
    lock.release()
    HomeLock.acquire(tmp_path, 2).release()  # released: free again


def test_postgres_advisory_lock_one_server_per_database(tmp_path):
    require_engine("GPUFLEET_TEST_PG_URL", "PostgreSQL")
    url = os.environ["GPUFLEET_TEST_PG_URL"]
    a, b = create_engine(url), create_engine(url)
    held = DatabaseLock.acquire(a)
    try:
        with pytest.raises(ServerRunning, match="owns database"):
            DatabaseLock.acquire(b)
    finally:
        held.release()
    DatabaseLock.acquire(b).release()
    a.dispose()
    b.dispose()


def test_a_stale_socket_is_replaced_a_live_one_left_alone(tmp_path):
    path = tmp_path / "s.sock"
    live = bind_unix(path)
    assert live is not None and oct(path.stat().st_mode & 0o777) == "0o666"
    assert bind_unix(path) is None  # someone serves there
    live.sock.close()  # dies without cleaning up: the file stays, nobody listens
    again = bind_unix(path)
    assert again is not None
    again.close()
    assert not path.exists()
    (tmp_path / "f").write_text("x")
    with pytest.raises(OSError):
        bind_unix(tmp_path / "f")  # not a socket: never removed


@pytest.mark.e2e
def test_second_serve_exits_2_and_touches_nothing(tmp_path):
    live = ServerProc(tmp_path, None, ["--inventory", str(EXAMPLE_LAB)]).start()
    try:
        before = ((tmp_path / "server.json").read_text(), sorted(n["name"] for n in live.cli_json("nodes")))
        for port in (free_port(), live.port):  # another port; the same port (cannot bind either)
            r = subprocess.run([str(BIN), "serve", "--fake-gpus", "1", "--port", str(port)], env=live.env,
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 2, r.stderr
            assert r.stderr.strip() == (f"error: another gpufleet server (pid {live.proc.pid}, port {live.port}) "
                                        f"owns {tmp_path}; stop it first")
        after = ((tmp_path / "server.json").read_text(), sorted(n["name"] for n in live.cli_json("nodes")))
        assert after == before
    finally:
        live.stop()
    assert live.proc.returncode == 0 and not (tmp_path / "server.json").exists()  # SIGTERM: clean


@pytest.mark.e2e
def test_a_port_in_use_exits_2_before_any_state(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "GPUFLEET_HOME": str(tmp_path / "home")}
        r = subprocess.run([str(BIN), "serve", "--fake-gpus", "1", "--port", str(port)], env=env,
                           capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().startswith("error: port: cannot listen on"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in (tmp_path / "home").iterdir()) == ["server.lock"]  # no database


@pytest.mark.e2e
def test_sigint_also_removes_server_json(tmp_path):
    s = ServerProc(tmp_path, None, ["--fake-gpus", "1"]).start()
    s.proc.send_signal(signal.SIGINT)
    s.proc.wait(20)
    deadline = time.monotonic() + 5
    while (tmp_path / "server.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not (tmp_path / "server.json").exists()

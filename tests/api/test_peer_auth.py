"""The local Unix socket: the kernel's peer credentials (SO_PEERCRED) are the authentication.

Unit level: the scope key the socket protocol sets, through the real app and services. Then a real
uvicorn serving a Unix socket with PeerCredProtocol, called by this process and (as root) by a
child that has become `nobody`."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from gpufleet.api.app import create_app
from gpufleet.api.peer import PEER_KEY, Peer, PeerCredProtocol, peer_of

NOBODY = pwd.getpwnam("nobody")


def peer_app(app, uid: int):
    """The app as the socket protocol hands it a connection of `uid`."""
    async def wrapped(scope, receive, send):
        if scope["type"] == "http":
            scope[PEER_KEY] = Peer(1, uid, uid)
        await app(scope, receive, send)
    return wrapped


def as_peer(api, uid: int) -> TestClient:
    return TestClient(peer_app(create_app(api.server.ctx), uid))


def test_root_on_the_socket_is_the_admin(api):
    who = as_peer(api, 0).get("/api/v1/whoami").json()
    assert (who["user"], who["admin"]) == ("admin", True)


def test_tenant_isolation_over_the_socket(api):
    """The isolation rows for a peer: `nobody` becomes gpufleet user nobody (tenant default, not
    admin) on first use; it sees and touches nothing of alice's (tenant vision) and is no admin."""
    alice = api.token("alice", "vision")
    a_job = api.submit(headers=alice).json()["id"]
    peer = as_peer(api, NOBODY.pw_uid)
    who = peer.get("/api/v1/whoami").json()
    assert (who["user"], who["tenant"], who["admin"]) == ("nobody", "default", False)
    assert peer.get("/api/v1/jobs").json() == []
    assert peer.get(f"/api/v1/jobs/{a_job}").status_code == 404
    assert peer.post(f"/api/v1/jobs/{a_job}/cancel").status_code == 404
    assert peer.post("/api/v1/nodes/dgx1/drain", json={"reason": "x"}).status_code == 403
    assert peer.post("/api/v1/tokens", json={"user": "nobody", "tenant": "vision", "admin": True}).status_code == 403
    assert peer.post("/api/v1/jobs", json={"command": ["true"], "tenant": "vision"}).status_code == 422
    mine = peer.post("/api/v1/jobs", json={"command": ["true"]}).json()
    assert (mine["user"], mine["tenant"]) == ("nobody", "default")
    assert any(a["action"] == "user-create" and a["target"] == "user/nobody"
               for a in api.get("/api/v1/audit", headers=api.admin).json())


def test_a_token_still_wins_on_the_socket_and_tcp_never_has_a_peer(api):
    alice = api.token("alice", "vision")
    assert as_peer(api, 0).get("/api/v1/whoami", headers=alice).json()["user"] == "alice"
    assert api.get("/api/v1/whoami").status_code == 401  # TestClient = TCP: no peer, no token


def test_accounts_that_may_not_become_a_user_are_refused(api):
    ctx = api.server.ctx
    ctx.accounts = replace(ctx.accounts, new_user_tenant=None)
    assert as_peer(api, NOBODY.pw_uid).get("/api/v1/whoami").status_code == 403  # unknown: ask an admin
    ctx.accounts = replace(ctx.accounts, new_user_tenant="default", mapping={"nobody": "root"})
    r = as_peer(api, NOBODY.pw_uid).get("/api/v1/whoami")
    assert r.status_code == 403 and "another account" in r.text  # the name nobody is root's
    assert as_peer(api, 0).get("/api/v1/whoami").json()["user"] == "nobody"  # root is gpufleet's nobody


def test_an_account_named_admin_is_not_the_admin(api, monkeypatch):
    import gpufleet.services.peers as peers
    from gpufleet.executors.local.account import Account

    real = peers.lookup_uid
    monkeypatch.setattr(peers, "lookup_uid", lambda uid: Account("admin", 4242, 4242, (4242,), "/", "/bin/sh")
                        if uid == 4242 else real(uid))
    r = as_peer(api, 4242).get("/api/v1/whoami")
    assert r.status_code == 403


# ---- a real socket --------------------------------------------------------------------------

@pytest.fixture
def socket_server(api):
    d = Path(tempfile.mkdtemp(prefix="gf-sock-", dir="/tmp"))
    os.chmod(d, 0o755)
    path = d / "gf.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    os.chmod(path, 0o666)
    tcp = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(api.server.ctx), http=PeerCredProtocol, log_level="warning",
                            access_log=False, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    t = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock, tcp])), daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    yield path, tcp.getsockname()[1]
    server.should_exit = True
    t.join(10)
    shutil.rmtree(d, ignore_errors=True)


def test_peer_of_reads_the_kernels_credentials():
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        assert peer_of(a) == Peer(os.getpid(), os.getuid(), os.getgid())
    with socket.socket() as tcp:
        assert peer_of(tcp) is None


def test_the_socket_knows_its_caller_and_tcp_does_not(socket_server):
    path, port = socket_server
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), base_url="http://gf") as c:
        who = c.get("/api/v1/whoami").json()
    assert who["admin"] is True  # this process is the server's own account (or root): admin
    assert httpx.get(f"http://127.0.0.1:{port}/api/v1/whoami").status_code == 401


@pytest.mark.skipif(os.geteuid() != 0, reason="becoming another uid needs root (CI runs this as root)")
def test_another_uid_on_the_socket_is_its_own_user(socket_server):
    path, _ = socket_server
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(NOBODY.pw_gid)
            os.setuid(NOBODY.pw_uid)
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(path))
            s.sendall(b"GET /api/v1/whoami HTTP/1.1\r\nHost: gf\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            os.write(w, data)
        finally:
            os._exit(0)
    os.close(w)
    out = b""
    while chunk := os.read(r, 65536):
        out += chunk
    os.waitpid(pid, 0)
    assert b" 200 " in out.split(b"\r\n", 1)[0]
    assert b'"user":"nobody"' in out and b'"admin":false' in out

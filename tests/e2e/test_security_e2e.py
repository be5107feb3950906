"""Jobs are not admins: the server as root, two real Unix users (created here, removed after).

alice's job runs as alice (`id -un`), cannot read admin.token, the database or bob's log, and
cannot drain a node (the token is out of reach; over the socket it is alice: 403). alice's CLI on
this host works without any token: the socket's peer credentials say who she is. Runs only as
root (CI and this machine are); skipped loudly otherwise."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_LAB
from tests.e2e.conftest import ServerProc, stop_all_jobs

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def as_root():
    if os.geteuid() != 0:
        warnings.warn("test_security_e2e needs root: it creates Unix users and runs the server as root")
        pytest.skip("NOT RUN: needs root (creates Unix users, runs the server as root); CI runs it as root")
    if not shutil.which("useradd") or not shutil.which("runuser"):
        pytest.fail("useradd and runuser are needed to run the security e2e test as root")


@pytest.fixture(scope="module")
def users():
    names = [f"gf{who}{os.getpid() % 100000}" for who in ("alice", "bob")]
    for name in names:
        subprocess.run(["useradd", "-M", "-s", "/bin/sh", name], check=True, capture_output=True)
    yield names
    for name in names:  # their jobs were stopped by `lab` (stop_all_jobs) before this runs
        subprocess.run(["userdel", "-f", name], capture_output=True)


def cli_argv() -> list[str]:
    """The CLI as another user can start it: the venv's interpreter may lie under /root (0700);
    then a system python3 of the same version with the venv's packages on its path."""
    st = os.stat(os.path.realpath(sys.executable))
    reachable = all(os.stat(p).st_mode & 0o001 for p in Path(os.path.realpath(sys.executable)).parents)
    if reachable and st.st_mode & 0o001:
        return [sys.executable, "-c", "from gpufleet.cli.main import main; main()"]
    system = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    want = f"{sys.version_info.major}.{sys.version_info.minor}"
    if not system or subprocess.run([system, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                    capture_output=True, text=True).stdout.strip() != want:
        pytest.fail(f"no python{want} that other users can run (the venv's is {sys.executable})")
    site = [p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix)]
    path = ":".join([str(ROOT / "src"), *site])
    return ["env", f"PYTHONPATH={path}", system, "-c", "from gpufleet.cli.main import main; main()"]


@pytest.fixture(scope="module")
def lab(users):
    home = Path(tempfile.mkdtemp(prefix="gf-security-"))
    sock_dir = Path(tempfile.mkdtemp(prefix="gf-security-sock-"))
    os.chmod(sock_dir, 0o755)
    sock = sock_dir / "gpufleet.sock"
    cfg = home / "server.yaml"
    cfg.write_text(f"socket: {sock}\n")
    s = ServerProc(home, None, ["--inventory", str(EXAMPLE_LAB), "--config", str(cfg)], accounts={}).start()
    s.sock = sock
    yield s
    s.stop()
    stop_all_jobs(home)
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(sock_dir, ignore_errors=True)


def as_user(lab, user: str, *args: str) -> subprocess.CompletedProcess:
    """`gpufleet ARGS` run by `user` on this host, with no token and nothing of ours in its env."""
    env = ["env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp", f"GPUFLEET_SOCKET={lab.sock}"]
    return subprocess.run(["runuser", "-u", user, "--", *env, *cli_argv(), *args], capture_output=True,
                          text=True, timeout=60, cwd="/")


def log_of(lab, job: int) -> str:
    return lab.cli("logs", str(job)).stdout


def test_jobs_run_as_their_owner_and_cannot_act_as_admin(lab, users):
    alice, bob = users
    lab.cli("token", "create", "--user", alice, "--tenant", "vision")  # alice: a user of vision
    r = as_user(lab, bob, "submit", "--", "sh", "-c", "id -un; echo bob-secret")
    assert r.returncode == 0, r.stderr
    bob_job = int(r.stdout.strip())
    assert lab.wait_state(bob_job, {"SUCCEEDED", "FAILED"})["state"] == "SUCCEEDED"
    assert log_of(lab, bob_job).split() == [bob, "bob-secret"]
    bob_log = next((lab.home / "runs" / "jobs" / str(bob_job)).rglob("output.log"))

    probe = (f'id -un; '
             f'cat {lab.home}/admin.token >/dev/null 2>&1 && echo token=READ || echo token=denied; '
             f'cat {lab.home}/gpufleet.db >/dev/null 2>&1 && echo db=READ || echo db=denied; '
             f'cat {bob_log} >/dev/null 2>&1 && echo boblog=READ || echo boblog=denied; '
             f'env | grep -c "^GPUFLEET_TOKEN=\\|^GPUFLEET_HOME=" ; '
             f'"$@" node drain dgx1 --reason pwned; echo drain=$?')
    r = as_user(lab, alice, "submit", "-e", f"GPUFLEET_SOCKET={lab.sock}", "--", "sh", "-c", probe, "probe",
                *cli_argv())
    assert r.returncode == 0, r.stderr
    job = int(r.stdout.strip())
    j = lab.wait_state(job, {"SUCCEEDED", "FAILED"}, timeout=60)
    out = log_of(lab, job)
    lines = [line for line in out.splitlines() if line]
    assert lines[:5] == [alice, "token=denied", "db=denied", "boblog=denied", "0"], out
    assert "admin" in out and lines[-1] == "drain=1", out  # over the socket it is alice: 403
    assert j["user"] == alice and j["tenant"] == "vision"
    nodes = {n["name"]: n for n in lab.cli_json("nodes")}
    assert nodes["dgx1"]["state"] == "up"


def test_a_users_cli_needs_no_token_and_sees_only_its_tenant(lab, users):
    alice, bob = users
    r = as_user(lab, alice, "jobs", "--all", "--json")
    assert r.returncode == 0, r.stderr
    mine = json.loads(r.stdout)
    assert mine and {j["user"] for j in mine} == {alice}
    r = as_user(lab, alice, "node", "drain", "dgx1", "--reason", "x")
    assert r.returncode == 1 and "admin" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = as_user(lab, alice, "nodes")
    assert r.returncode == 0 and "notice" not in r.stderr  # a root server: jobs are isolated


def test_files_of_the_server_are_root_only(lab):
    for name in ("admin.token", "gpufleet.db", "server.json", "server.lock"):
        st = os.stat(lab.home / name)
        assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600), name
    assert os.stat(lab.home).st_mode & 0o777 == 0o700
    assert os.stat(lab.sock).st_mode & 0o777 == 0o666


def test_a_user_without_an_account_is_refused_at_submit(lab):
    token = lab.cli("token", "create", "--user", "ghost-no-account", "--tenant", "vision").stdout.strip()
    r = lab.cli("submit", "--", "true", env={"GPUFLEET_TOKEN": token}, check=False)
    assert r.returncode == 2 and r.stderr.startswith("error: user:") and "no Unix account" in r.stderr

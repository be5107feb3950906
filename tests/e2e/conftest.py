"""End-to-end fixtures: a REAL `gpufleet serve` process (SQLite or PostgreSQL), driven by the real CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import EXAMPLE_LAB, require_engine
from tests.executors.slurm.conftest import slurm_cluster, tag  # noqa: F401 (fixtures of the Slurm e2e tests)

BIN = Path(sys.executable).parent / "gpufleet"


def wait(predicate, timeout: float = 90.0, what: str = ""):
    """Poll `predicate` until it returns something true (returned), or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reset_postgres(url: str) -> None:
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
    with eng.begin() as c:
        c.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        c.execute(text("CREATE SCHEMA public"))
    eng.dispose()


# A root server runs each job as its owner's Unix account and refuses users without one. The
# tests' made-up users run as `nobody` (tests/e2e/test_security_e2e.py creates real ones).
TEST_ACCOUNTS = {name: "nobody" for name in
                 ("alice", "bob", "carol", "dave", "eve", "mallory", "vic", "sam", "rob", "u1", "u2")}


def with_test_accounts(home: Path, args: list[str], accounts: dict[str, str]) -> list[str]:
    """`args` with the accounts mapping merged into their --config (or a new one), as root."""
    if os.geteuid() != 0 or not accounts:
        return args
    import yaml

    args = list(args)
    cfg: dict = {}
    if "--config" in args:
        i = args.index("--config")
        cfg = yaml.safe_load(Path(args[i + 1]).read_text()) or {}
        del args[i:i + 2]
    cfg["accounts"] = {**accounts, **(cfg.get("accounts") or {})}
    path = home / f"server-accounts-{time.time_ns()}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return [*args, "--config", str(path)]


class ServerProc:
    def __init__(self, home: Path, db: str | None, args: list[str], accounts: dict[str, str] | None = None):
        self.home, self.db = home, db
        self.args = with_test_accounts(home, args, TEST_ACCOUNTS if accounts is None else accounts)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.env = {**os.environ, "GPUFLEET_HOME": str(home), "GPUFLEET_URL": f"http://127.0.0.1:{self.port}"}
        self.env.pop("GPUFLEET_TOKEN", None)

    def start(self, timeout: float = 20.0) -> "ServerProc":
        cmd = [str(BIN), "serve", "--port", str(self.port), *self.args]
        if self.db:
            cmd += ["--db", self.db]
        self.log = open(self.home / f"server-{time.time_ns()}.log", "w")
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {Path(self.log.name).read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("server did not become ready")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()

    def cli(self, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
        r = subprocess.run([str(BIN), *args], env={**self.env, **(env or {})}, capture_output=True,
                           text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"gpufleet {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def cli_json(self, *args: str):
        return json.loads(self.cli(*args, "--json").stdout)

    def submit(self, *args: str) -> int:
        return int(self.cli("submit", *args).stdout.strip())

    def wait_log(self, job_id: int, text: str, *args: str, timeout: float = 20.0) -> str:
        """`gpufleet logs JOB ARGS` once it holds `text` (the output so far)."""
        deadline = time.monotonic() + timeout
        while True:
            out = self.cli("logs", str(job_id), *args).stdout
            if text in out:
                return out
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id}: no {text!r} in its log within {timeout}s: {out!r}")
            time.sleep(0.2)

    def wait_state(self, job_id: int, states: set[str], timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            j = self.cli_json("show", str(job_id))
            if j["state"] in states:
                return j
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} stuck in {j['state']} ({j['reason']}), wanted {states}")
            time.sleep(0.2)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return None  # the embedded default
    require_engine("GPUFLEET_TEST_PG_URL", "PostgreSQL")
    url = os.environ["GPUFLEET_TEST_PG_URL"]
    reset_postgres(url)
    return url


@pytest.fixture
def server_factory(tmp_path, db_url):
    made: list[ServerProc] = []

    def make(args: list[str] | None = None) -> ServerProc:
        s = ServerProc(tmp_path, db_url, ["--inventory", str(EXAMPLE_LAB)] if args is None else args)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()
    stop_all_jobs(tmp_path)


@pytest.fixture
def server(server_factory):
    return server_factory().start()


def stop_all_jobs(home: Path) -> None:
    """Leave nothing running: TERM the process group of every job this test's server started."""
    jobs = home / "runs" / "jobs"  # jobs/<id>/attempt-<n>/rank-<r>/ (older layout: no attempt-<n>)
    for pid_file in [*jobs.glob("*/attempt-*/rank-*/pid.json"), *jobs.glob("*/rank-*/pid.json")]:
        try:
            info = json.loads(pid_file.read_text())
            os.killpg(int(info["child_pgid"]), signal.SIGKILL)
            os.kill(int(info["shim_pid"]), signal.SIGKILL)
        except (OSError, ValueError, KeyError):
            pass


def fake_nvml_serve(home: Path, inventory: dict, remediation: dict | None = None) -> ServerProc:
    """A started local-engine server over `inventory` (the YAML file's content) whose health loop
    reads the fake NVML every second (faults are injected with `gpufleet health inject`); disk and
    memory checks off. `remediation`: the health settings' remediation (None: off)."""
    import yaml

    inv, cfg = home / "lab.yaml", home / "server.yaml"
    inv.write_text(yaml.safe_dump(inventory))
    cfg.write_text(yaml.safe_dump({"health": {
        "interval": "1s", "nvml": "fake", "remediation": remediation or {"enabled": False},
        "checks": {"disk": {"enabled": False}, "memory": {"enabled": False}}}}))
    return ServerProc(home, None, ["--inventory", str(inv), "--config", str(cfg)]).start()


def slurm_serve(home: Path, install_tag: str, **slurm) -> ServerProc:
    """A started `gpufleet serve --executor slurm` over the dev cluster, its home `home`."""
    import yaml

    home.mkdir(exist_ok=True)
    config = home / "server.yaml"
    config.write_text(yaml.safe_dump({"executor": "slurm",
                                      "slurm": {"tag": install_tag, "log_dir": str(home / "slurm-logs"), **slurm}}))
    return ServerProc(home, None, ["--config", str(config)]).start(timeout=60)


@pytest.fixture
def slurm_server(slurm_cluster, tag, tmp_path):  # noqa: F811
    """A real `gpufleet serve --executor slurm` over the dev cluster (scripts/dev-slurm.sh up)."""
    server = slurm_serve(tmp_path / "home", tag)
    yield server
    server.stop()

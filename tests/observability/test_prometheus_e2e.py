"""A REAL Prometheus (Debian package) scrapes an HTTP server that serves our registry; one series
comes back through Prometheus' HTTP API. Skipped loudly without `prometheus` outside CI; fails in CI.

To point it at the real gpufleet server later: start the server, then
`start_prometheus(f"127.0.0.1:{server_port}", "/metrics", tmp_path)` and query the same way.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import prometheus_client
import pytest

from gpufleet.domain import Gpu, Job, JobSpec, Node
from gpufleet.observability import Metrics

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "dev-prometheus.sh"


def require_prometheus() -> None:
    if shutil.which("prometheus"):
        return
    if os.environ.get("CI"):
        pytest.fail("prometheus is required in CI (apt-get install prometheus; .ci/run installs it)")
    pytest.skip("SKIPPED LOUDLY: no `prometheus` binary; apt-get install prometheus to run this end-to-end test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def start_prometheus(target: str, path: str, workdir: Path, token_file: Path | None = None) -> Iterator[str]:
    """Run scripts/dev-prometheus.sh in the foreground; yield its base URL; stop it by its pid.
    `token_file`: the scrape token it sends (a gpufleet server's <home>/metrics.token)."""
    port = free_port()
    proc = subprocess.Popen([str(SCRIPT), "run", "--target", target, "--path", path, "--port", str(port),
                             "--dir", str(workdir), "--interval", "1s",
                             *(["--token-file", str(token_file)] if token_file else [])],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"prometheus exited {proc.returncode}: {proc.stdout.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def query_until(url: str, promql: str, timeout_s: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        r = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5)
        last = r.json()
        if last.get("status") == "success" and last["data"]["result"]:
            return last["data"]["result"]
        time.sleep(0.5)
    raise AssertionError(f"no result for {promql!r} through Prometheus: {last}")


def assert_dashboard_queries_parse(url: str) -> None:
    """Every PromQL expression of deploy/grafana/gpufleet.json is accepted by the real Prometheus."""
    from tests.observability.test_grafana_dashboard import dashboard_exprs

    for expr in dashboard_exprs():
        promql = expr.replace("$model", ".*").replace("$node", ".*")
        if promql.startswith("label_values("):
            continue  # a Grafana function, not PromQL
        body = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()
        assert body["status"] == "success", (promql, body)


def test_prometheus_scrapes_our_registry_and_answers_a_query(tmp_path):
    require_prometheus()
    metrics = Metrics()
    nodes = [Node("dgx1", gpus=tuple(Gpu(i, "a100") for i in range(8)))]
    pending = [Job(i, JobSpec(("x",), tenant="vision"), submitted_at=0.0) for i in range(3)]
    metrics.update_fleet(pending, nodes, now=30.0)
    server, thread = prometheus_client.start_http_server(0, addr="127.0.0.1", registry=metrics.registry)
    try:
        target = f"127.0.0.1:{server.server_port}"
        with start_prometheus(target, "/metrics", tmp_path / "prom") as url:
            (queue,) = query_until(url, 'gpufleet_queue_length{job="gpufleet"}')
            assert float(queue["value"][1]) == 3
            assert queue["metric"]["instance"] == target
            (gpus,) = query_until(url, 'gpufleet_gpus_total{node="dgx1",model="a100"}')
            assert float(gpus["value"][1]) == 8
            up = query_until(url, "up")
            assert float(up[0]["value"][1]) == 1
            assert_dashboard_queries_parse(url)
    finally:
        server.shutdown()
        server.server_close()

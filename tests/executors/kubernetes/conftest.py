"""Fixtures for the Kubernetes executor tests, against the REAL API server of scripts/dev-k8s.sh.

Without an API server the tests skip loudly; with CI set they FAIL (a missing engine in CI is a bug).
Every test session gets its own namespace and instance label, removed at the end.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from gpufleet.domain import Allocation, Job, JobSpec, JobState
from gpufleet.executors.base import Observation, Phase

K8S_ENV = "GPUFLEET_TEST_KUBECONFIG"
EXEC = {"fake-kubelet.gpufleet.io/exec": "true"}  # the fake kubelet runs the real command
IMAGE = "registry.invalid/gpufleet/test:1"  # never pulled: the fake kubelet has no runtime


def _api_reachable(kubeconfig: str) -> str | None:
    """None when the API server answers, else why not."""
    try:
        from kubernetes import client, config

        api = config.new_client_from_config(config_file=kubeconfig)
        try:
            client.VersionApi(api).get_code(_request_timeout=5)
        finally:
            api.close()
        return None
    except Exception as e:  # noqa: BLE001 - any failure means "not there"
        return f"{type(e).__name__}: {e}"


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    path = os.environ.get(K8S_ENV)
    why = f"{K8S_ENV} is unset" if not path else _api_reachable(path)
    if why is None:
        return path  # type: ignore[return-value]
    msg = (f"the real Kubernetes API server is required but not reachable ({why}); "
           "start it with `scripts/dev-k8s.sh up && source scripts/dev-env.sh`")
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip("SKIPPED LOUDLY: " + msg)


@pytest.fixture(scope="session")
def session_tag() -> str:
    return uuid.uuid4().hex[:6]


@pytest.fixture(scope="session")
def namespace(kubeconfig: str, session_tag: str) -> Iterator[str]:
    ns = f"gft-{session_tag}"
    yield ns
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=kubeconfig)
    try:
        client.CoreV1Api(api).delete_namespace(ns, propagation_policy="Background")
    except client.exceptions.ApiException:
        pass
    api.close()


@pytest.fixture(scope="session")
def core(kubeconfig: str) -> Iterator[Any]:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=kubeconfig)
    yield client.CoreV1Api(api)
    api.close()


@pytest.fixture(scope="session")
def batch(kubeconfig: str) -> Iterator[Any]:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=kubeconfig)
    yield client.BatchV1Api(api)
    api.close()


@pytest.fixture
def make_executor(kubeconfig: str, namespace: str, session_tag: str) -> Iterator[Callable[..., Any]]:
    from gpufleet.executors.kubernetes import KubernetesConfig, KubernetesExecutor

    made: list[Any] = []

    def make(**kw: Any) -> Any:
        kw.setdefault("instance", f"t{session_tag}")
        ex = KubernetesExecutor(KubernetesConfig(kubeconfig=kubeconfig, namespace=namespace, **kw))
        made.append(ex)
        return ex

    yield make
    for ex in made:
        ex.close()


_ids = iter(range(int(time.time()) % 100_000 * 100, 10**12))


def job_of(allocation: list[Allocation], *, image: str | None = IMAGE, env: dict[str, str] | None = None,
           time_limit_s: int | None = None, command: tuple[str, ...] = ("python", "train.py"),
           tenant: str = "team-a", job_id: int | None = None) -> Job:
    spec = JobSpec(command=command, gpus=len(allocation[0].gpus), nodes=len(allocation), tenant=tenant,
                   time_limit_s=time_limit_s, env=env or {}, image=image, name="k8s-test")
    return Job(job_id if job_id is not None else next(_ids), spec, user="alice", state=JobState.RUNNING,
               allocation=tuple(allocation), submitted_at=time.time(), started_at=time.time())


def wait_phase(ex: Any, job: Job, phases: set[Phase], timeout: float = 20.0) -> Observation:
    """Wait on the executor's watch cache (no sleep loop) until `job` reaches one of `phases`."""
    end = time.monotonic() + timeout
    version = -1
    last = None
    while True:
        obs = ex.poll([job])
        last = obs[0] if obs else last
        if last is not None and last.phase in phases:
            return last
        if last is not None and last.phase.ended:
            raise AssertionError(f"job {job.id} ended {last} while waiting for {phases}")
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError(f"job {job.id}: no {phases} within {timeout}s; last {last}")
        version = ex.cache.wait_change(version, min(left, 1.0))


def eventually(fn: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


FAKE_KUBELET = Path(__file__).resolve().parents[2] / "tooling" / "fake_kubelet.py"


def _node_ready(core: Any, name: str) -> bool:
    from kubernetes.client.rest import ApiException

    try:
        node = core.read_node(name)
    except ApiException:
        return False
    ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
    return ready and not any(t.key.startswith("node.kubernetes.io/") for t in node.spec.taints or [])


@pytest.fixture(scope="session")
def own_kubelet(kubeconfig: str, core: Any, session_tag: str, tmp_path_factory: Any) -> Iterator[list[str]]:
    """3 GPU nodes served by a fake kubelet of THIS checkout (tests/tooling/fake_kubelet.py), not the
    dev cluster's long-running one (which may be an older version: log timestamps, hostPath mounts
    in exec mode). Its own log port; its nodes are deleted at the end."""
    pki = Path(kubeconfig).parent / "pki"
    certs = [pki / "kubelet.crt", pki / "kubelet.key", pki / "ca.crt"]
    if not all(os.access(c, os.R_OK) for c in certs):
        msg = f"the dev cluster's kubelet certificates ({pki}) are not readable: cannot start a fake kubelet"
        pytest.fail(msg) if os.environ.get("CI") else pytest.skip("SKIPPED LOUDLY: " + msg)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    prefix, state = f"own{session_tag}", tmp_path_factory.mktemp("own-kubelet")
    names = [f"{prefix}-{i:02d}" for i in (1, 2, 3)]
    log = open(state / "fake-kubelet.log", "w")
    proc = subprocess.Popen(
        [sys.executable, str(FAKE_KUBELET), "--kubeconfig", kubeconfig, "--nodes", "3", "--gpus", "8",
         "--prefix", prefix, "--log-port", str(port), "--tls-cert", str(certs[0]), "--tls-key", str(certs[1]),
         "--client-ca", str(certs[2]), "--state-dir", str(state)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        eventually(lambda: proc.poll() is not None or all(_node_ready(core, n) for n in names), timeout=60,
                   what=f"own fake kubelet's nodes Ready (log {state}/fake-kubelet.log)")
        assert proc.poll() is None, (state / "fake-kubelet.log").read_text()[-2000:]
        yield names
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        from kubernetes import client

        leases = client.CoordinationV1Api(core.api_client)
        for n in names:
            for delete in (lambda: core.delete_node(n), lambda: leases.delete_namespaced_lease(n, "kube-node-lease")):
                try:
                    delete()
                except Exception:  # noqa: BLE001 - never registered, or already gone
                    pass
        log.close()

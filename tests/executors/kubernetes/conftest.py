"""Fixtures for the Kubernetes executor tests, against the REAL API server of scripts/dev-k8s.sh.

Without an API server the tests skip loudly; with CI set they FAIL (a missing engine in CI is a bug).
Every test session gets its own namespace and instance label, removed at the end.
"""

from __future__ import annotations

import os
import time
import uuid
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

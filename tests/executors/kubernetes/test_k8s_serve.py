"""End to end: a real `gpufleet serve --executor kubernetes` on the real API server, driven by the CLI."""

from __future__ import annotations

import uuid

import pytest
import yaml

from tests.e2e.conftest import ServerProc

from .conftest import eventually

pytestmark = [pytest.mark.k8s, pytest.mark.e2e]


@pytest.fixture
def instance() -> str:
    return f"e{uuid.uuid4().hex[:6]}"  # one gpufleet per test: its own database, its own objects


@pytest.fixture
def k8s_server(tmp_path, kubeconfig, namespace, instance):
    cfg = tmp_path / "server.yaml"
    cfg.write_text(yaml.safe_dump({
        "kubernetes": {"namespace": namespace, "instance": instance},
        # the NVML health checks cannot reach Kubernetes nodes from the server: keep them off here
        "health": {"nvml": "off", "checks": {"gpu_inventory": {"enabled": False}}},
    }))
    args = ["--executor", "kubernetes", "--kubeconfig", kubeconfig, "--config", str(cfg)]
    servers: list[ServerProc] = []

    def start() -> ServerProc:
        s = ServerProc(tmp_path, None, args).start()
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


def test_submit_runs_as_kubernetes_job_and_logs_come_back(k8s_server, core, namespace, instance):
    s = k8s_server()
    nodes = s.cli_json("nodes")
    assert {n["name"] for n in nodes} >= {"gpu-node-01", "gpu-node-04"}
    job = s.submit("--gpus", "2", "--image", "registry.invalid/x:1", "-e", "FAKE_KUBELET_RUN_SECONDS=0.5",
                   "-e", "FAKE_KUBELET_LOG=hello through the pod log API", "--", "python", "train.py")
    done = s.wait_state(job, {"SUCCEEDED", "FAILED"})
    assert done["state"] == "SUCCEEDED", done
    assert "hello through the pod log API" in s.cli("logs", str(job)).stdout
    pods = core.list_namespaced_pod(namespace, label_selector=f"gpufleet.io/instance={instance},"
                                                              f"gpufleet.io/job-id={job}").items
    assert len(pods) == 1 and pods[0].spec.node_name in done["nodes"]


def test_submit_without_image_is_rejected_naming_the_field(k8s_server):
    r = k8s_server().cli("submit", "--gpus", "1", "--", "python", "train.py", check=False)
    assert r.returncode == 2 and "image" in r.stderr


def test_server_restart_readopts_running_gang_without_creating_twice(k8s_server, core, namespace, instance):
    s = k8s_server()
    job = s.submit("--gpus", "4", "--nodes", "2", "--image", "registry.invalid/x:1",
                   "-e", "FAKE_KUBELET_RUN_SECONDS=12", "--", "torchrun", "train.py")
    s.wait_state(job, {"RUNNING"})
    sel = f"gpufleet.io/instance={instance},gpufleet.io/job-id={job}"
    eventually(lambda: len([p for p in core.list_namespaced_pod(namespace, label_selector=sel).items
                            if p.status.phase == "Running"]) == 2, what="both ranks Running")
    s.kill9()  # gpufleet dies; the pods keep running in Kubernetes
    s2 = k8s_server()
    assert s2.cli_json("show", str(job))["state"] == "RUNNING"
    done = s2.wait_state(job, {"SUCCEEDED", "FAILED", "LOST"}, timeout=40)
    assert done["state"] == "SUCCEEDED", done
    assert len(core.list_namespaced_pod(namespace, label_selector=sel).items) == 2  # nothing created twice

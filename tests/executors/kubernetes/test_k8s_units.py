"""Pure parts of the Kubernetes executor (no API server): phase mapping, node state, manifests."""

from __future__ import annotations

import re

import pytest

from gpufleet.domain import Allocation, NodeState, ValidationError
from gpufleet.executors.base import Phase
from gpufleet.executors.kubernetes import KubernetesConfig, manifests
from gpufleet.executors.kubernetes.nodes import model_of, node_state
from gpufleet.executors.kubernetes.phases import observe_batch_job, observe_gang

from tests.tooling.fake_kubelet import kube_expand

from .conftest import job_of

CFG = KubernetesConfig(instance="gf", namespace="lab")
READY = {"conditions": [{"type": "Ready", "status": "True"}]}


def pod(rank, phase, code=None, reason="", deleting=False):
    st = {"phase": phase}
    if code is not None:
        st["containerStatuses"] = [{"state": {"terminated": {"exitCode": code, "finishedAt": "2025-01-01T00:00:00Z"}}}]
    if reason:
        st["reason"] = reason
    meta = {"name": f"p{rank}", "labels": {"gpufleet.io/rank": str(rank)}}
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {"nodeName": "n"}, "status": st}


def test_gang_phases():
    assert observe_gang(1, 2, [pod(0, "Running"), pod(1, "Running")], "h", True).phase is Phase.RUNNING
    assert observe_gang(1, 2, [pod(0, "Running"), pod(1, "Pending")], "h", True).phase is Phase.STARTING
    failed = observe_gang(1, 2, [pod(0, "Running"), pod(1, "Failed", 9)], "h", True)
    assert (failed.phase, failed.exit_code) == (Phase.FAILED, 9) and "rank 1" in failed.reason
    assert observe_gang(1, 2, [pod(0, "Succeeded", 0), pod(1, "Succeeded", 0)], "h", True).phase is Phase.SUCCEEDED
    assert observe_gang(1, 2, [pod(0, "Failed", 137, "DeadlineExceeded")], "h", True).phase is Phase.TIMEOUT
    assert observe_gang(1, 2, [pod(0, "Failed", None, "Evicted")], "h", True).phase is Phase.PREEMPTED
    assert observe_gang(1, 2, [pod(0, "Running")], "h", False).phase is Phase.STARTING
    assert observe_gang(1, 2, [pod(0, "Running")], "h", True).phase is Phase.FAILED


def test_batch_job_phases():
    done = {"metadata": {}, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    late = {"metadata": {}, "status": {"conditions": [{"type": "Failed", "status": "True",
                                                       "reason": "DeadlineExceeded"}]}}
    assert observe_batch_job(1, [done], [], "h").phase is Phase.SUCCEEDED
    assert observe_batch_job(1, [late], [pod(0, "Running", deleting=True)], "h").phase is Phase.TIMEOUT
    assert observe_batch_job(1, [{"metadata": {}}], [pod(0, "Failed", 3)], "h").exit_code == 3
    assert observe_batch_job(1, [{"metadata": {}}], [pod(0, "Pending")], "h").phase is Phase.STARTING


def test_node_state_from_cordon_taints_and_readiness():
    def node(spec=None, status=READY, ann=None):
        return {"metadata": {"name": "n", "annotations": ann or {}}, "spec": spec or {}, "status": status}

    assert node_state(CFG, node()) == (NodeState.UP, "")
    assert node_state(CFG, node({"unschedulable": True}))[0] is NodeState.DRAIN
    gpu_taint = {"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]}
    assert node_state(CFG, node(gpu_taint))[0] is NodeState.UP  # tolerated by our pods
    soft = {"taints": [{"key": "x", "effect": "PreferNoSchedule"}]}
    assert node_state(CFG, node(soft))[0] is NodeState.UP
    assert node_state(CFG, node(status={"conditions": [{"type": "Ready", "status": "False"}]}))[0] is NodeState.DOWN


def test_gfd_product_labels_become_models():
    assert model_of("NVIDIA-A100-SXM4-80GB") == "a100"
    assert model_of("NVIDIA-H100-80GB-HBM3") == "h100"
    assert model_of("Tesla-V100-SXM2-16GB") == "v100"


def test_unpinned_pods_have_no_affinity_and_gpu_request_follows_allocation():
    job = job_of([Allocation("n1", (0, 1, 2))])
    assert "affinity" in manifests.pod_spec(CFG, job, 0)
    spec = manifests.pod_spec(KubernetesConfig(pin_nodes=False), job, 0)
    assert "affinity" not in spec and spec["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "3"}


HOSTILE = ("$(HOME)", "$$", "$(GPUFLEET_JOB_ID)x", "a\n$(NODE_RANK)\nb", "'\"`id`", "$", "$(", "\u2028", "")


def test_command_and_env_reach_the_container_verbatim_through_kubelet_expansion():
    """The kubelet expands $(VAR) and turns $$ into $ in command and env values: what the user wrote
    must come out the other side unchanged (the fake kubelet ports the kubelet's expansion)."""
    env = {"A": "$(GPUFLEET_JOB_ID)", "B": "x$$y\n$(A)", "C": "$(HOME)"}
    job = job_of([Allocation("n1", (0,)), Allocation("n2", (0,))], command=("sh", "-c", *HOSTILE), env=env)
    for rank in (0, 1):
        container = manifests.pod_spec(CFG, job, rank)["containers"][0]
        seen: dict[str, str] = {}
        for e in container["env"]:
            seen[e["name"]] = kube_expand(e["value"], seen)
        assert [kube_expand(a, seen) for a in container["command"]] == ["sh", "-c", *HOSTILE]
        assert {k: seen[k] for k in env} == env
        assert seen["NODE_RANK"] == str(rank)


def test_user_text_in_labels_is_a_valid_label_value():
    job = job_of([Allocation("n1", (0,))], tenant="evil\n,gpufleet.io/instance=other " + "x" * 80)
    meta = manifests.batch_job(CFG, job)["metadata"]
    for value in meta["labels"].values():
        assert re.fullmatch(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?", value), value
    assert meta["labels"]["gpufleet.io/instance"] == "gf"


def test_job_pods_never_mount_a_service_account_token():
    """A token in the pod is a credential for the cluster: job pods get none, named account or not."""
    single = job_of([Allocation("n1", (0,))])
    gang = job_of([Allocation("n1", (0,)), Allocation("n2", (0,))])
    for cfg in (CFG, KubernetesConfig(service_account="trainer")):
        template = manifests.batch_job(cfg, single)["spec"]["template"]["spec"]
        assert template["automountServiceAccountToken"] is False
        for rank in (0, 1):
            assert manifests.gang_pod(cfg, gang, rank, "uid-1")["spec"]["automountServiceAccountToken"] is False


def test_pods_run_as_the_owners_uid_when_mapped_and_never_as_root():
    job = job_of([Allocation("n1", (0,))])
    plain = manifests.pod_spec(CFG, job, 0)
    assert "securityContext" not in plain and "securityContext" not in plain["containers"][0]
    spec = manifests.batch_job(CFG, job, (1234, 2345))["spec"]["template"]["spec"]
    assert spec["securityContext"] == {"runAsUser": 1234, "runAsGroup": 2345, "runAsNonRoot": True}
    assert spec["containers"][0]["securityContext"] == {"allowPrivilegeEscalation": False}
    gang = job_of([Allocation("n1", (0,)), Allocation("n2", (0,))])
    assert manifests.gang_pod(CFG, gang, 1, None, (1234, 2345))["spec"]["securityContext"]["runAsUser"] == 1234
    with pytest.raises(ValidationError) as e:
        manifests.pod_spec(CFG, job, 0, (0, 0))
    assert e.value.field == "user"


def test_the_watch_cache_calls_on_end_when_a_pod_or_job_ends_or_goes_away():
    from gpufleet.executors.kubernetes.cache import Reflector

    ends = []
    r = Reflector("pods", lambda **kw: None, "sel", 5, lambda: None, lambda: ends.append(1))
    labels = {"gpufleet.io/job-id": "3", "gpufleet.io/attempt": "1"}

    def pod(phase: str) -> dict:
        return {"metadata": {"name": "p", "labels": labels, "resourceVersion": "1"}, "status": {"phase": phase}}

    r._apply({"type": "ADDED", "object": pod("Pending")})
    r._apply({"type": "MODIFIED", "object": pod("Running")})
    assert ends == []
    r._apply({"type": "MODIFIED", "object": pod("Succeeded")})
    r._apply({"type": "MODIFIED", "object": pod("Succeeded")})  # no new end
    assert ends == [1]
    r._apply({"type": "DELETED", "object": pod("Succeeded")})
    assert ends == [1, 1]
    job = {"metadata": {"name": "j", "labels": labels, "resourceVersion": "2"},
           "status": {"conditions": [{"type": "Failed", "status": "True"}]}}
    r._apply({"type": "MODIFIED", "object": job})
    assert ends == [1, 1, 1]

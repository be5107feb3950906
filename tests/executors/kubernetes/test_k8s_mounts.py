"""A job's `mounts` and `pull` in its pods (unit level: the objects as sent to the API server)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gpufleet.domain import Allocation
from gpufleet.executors.kubernetes import KubernetesConfig, manifests

from .conftest import job_of

CFG = KubernetesConfig(namespace="ns", instance="t1")


def test_mounts_become_hostpath_volumes_and_read_only_mounts():
    job = job_of([Allocation("n1", (0,))])
    job.spec = replace(job.spec, mounts=("/datasets/imagenet:/data:ro", "/scratch:/scratch"))
    pod = manifests.pod_spec(CFG, job, 0)
    assert pod["volumes"][1:] == [{"name": "gpufleet-mount-0", "hostPath": {"path": "/datasets/imagenet"}},
                                  {"name": "gpufleet-mount-1", "hostPath": {"path": "/scratch"}}]
    assert pod["containers"][0]["volumeMounts"][1:] == [
        {"name": "gpufleet-mount-0", "mountPath": "/data", "readOnly": True},
        {"name": "gpufleet-mount-1", "mountPath": "/scratch", "readOnly": False}]
    plain = manifests.pod_spec(CFG, job_of([Allocation("n1", (0,))]), 0)
    assert plain["volumes"] == [{"name": "gpufleet-run", "emptyDir": {}}]  # $GPUFLEET_RUN_DIR only
    assert plain["containers"][0]["volumeMounts"] == [{"name": "gpufleet-run", "mountPath": "/gpufleet/run"}]


@pytest.mark.parametrize("pull,policy", [("always", "Always"), ("missing", "IfNotPresent"), ("never", "Never")])
def test_pull_policy_is_the_image_pull_policy(pull, policy):
    job = job_of([Allocation("n1", (0,))])
    job.spec = replace(job.spec, pull=pull)
    assert manifests.batch_job(CFG, job)["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == policy

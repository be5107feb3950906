"""The shared executor contract (tests/executors/contract.py) on the REAL API server.

Pods run in the fake kubelet's exec mode: the job's command really runs on this host with the pod's
env, and its output comes back through the apiserver's pod log API.
"""

from __future__ import annotations

import pytest

from gpufleet.domain import Allocation
from gpufleet.executors.base import Phase, master_port_for
from gpufleet.executors.kubernetes.names import base_name

from tests.executors.contract import ExecutorContract, _fields, read_logs
from .conftest import EXEC, IMAGE

pytestmark = pytest.mark.k8s


class TestKubernetesContract(ExecutorContract):
    RUNS_COMMANDS = True
    SLACK_S = 20.0
    POLL_S = 0.05
    CANCELLED_LOGS_KEPT = False  # cancel deletes the Job (propagation): its pods and logs go with it

    @pytest.fixture
    def executor(self, make_executor):
        self._make = make_executor
        return make_executor(pod_annotations=EXEC, default_image=IMAGE)

    @pytest.fixture
    def nodes(self):
        return [Allocation("gpu-node-03", (2,)), Allocation("gpu-node-04", (3,))]

    def reopen(self, executor):
        return self._make(pod_annotations=EXEC, default_image=IMAGE)

    def test_two_ranks_get_their_own_rank_env(self, executor, make_job):
        """Kubernetes variant. The device plugin, not gpufleet, picks WHICH GPUs of a node a pod gets
        and exposes exactly those (NVIDIA_VISIBLE_DEVICES, set by the plugin) renumbered from 0, so
        CUDA_VISIBLE_DEVICES is container-relative (0..n-1) and gpufleet's planned host indices are
        in GPUFLEET_GPUS. Everything else is as in the shared contract."""
        out = ("rank=$NODE_RANK world=$WORLD_SIZE master=$MASTER_ADDR:$MASTER_PORT "
               "cuda=$CUDA_VISIBLE_DEVICES nvidia=$NVIDIA_VISIBLE_DEVICES gpus=$GPUFLEET_GPUS job=$GPUFLEET_JOB_ID")
        job = make_job(seconds=0, output=out, ranks=2)
        self.launch(executor, job)
        self.wait(executor, job, {Phase.SUCCEEDED}, self.SLACK_S)
        seen = [_fields(read_logs(executor, job, rank)) for rank in (0, 1)]
        for rank, env in enumerate(seen):
            planned = job.allocation[rank].gpus
            assert env["rank"] == str(rank) and env["world"] == "2", env
            assert env["cuda"] == ",".join(str(i) for i in range(len(planned))), env
            assert env["gpus"] == ",".join(map(str, planned)), env
            assert len(env["nvidia"].split(",")) == len(planned), env  # what the device plugin chose
            assert env["job"] == str(job.id), env
        assert seen[0]["master"] == seen[1]["master"]
        assert seen[0]["master"].endswith(f":{master_port_for(job.id)}")
        assert seen[0]["master"].startswith(f"{base_name(executor.cfg.instance, job)}-0.")

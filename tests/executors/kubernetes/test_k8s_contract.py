"""The shared executor contract (tests/executors/contract.py) on the REAL API server.

Pods run in the fake kubelet's exec mode: the job's command really runs on this host with the pod's
env, and its output comes back through the apiserver's pod log API.
"""

from __future__ import annotations

from dataclasses import replace

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

    # -- images. No kubelet and no container runtime here: the fake kubelet runs a pod's command on
    # this host (the image is never pulled), so what can honestly be checked is what Kubernetes is
    # told (the pod spec as the API server stored it: image, pull policy, hostPath mounts, env) and
    # the exit code and cancel through the real API server. That a command runs INSIDE its image is
    # shown on the local engine and on Slurm (same contract cases), not here.
    IMAGE = IMAGE

    def _needs_image(self, executor):
        return IMAGE

    def containers_left(self, executor, job):
        return [p.metadata.name for p in self._core.list_namespaced_pod(
            executor.cfg.namespace, label_selector=f"gpufleet.io/job-id={job.id}").items]

    @pytest.fixture(autouse=True)
    def _keep_core(self, core):
        self._core = core

    def test_image_runs_the_command_inside_it_with_gpus_env_mounts_and_exit_code(self, executor, make_job,
                                                                                  tmp_path):
        src = self.mount_source(tmp_path)
        out = "rank=$NODE_RANK gpus=$GPUFLEET_GPUS cuda=$CUDA_VISIBLE_DEVICES job=$GPUFLEET_JOB_ID"
        job = make_job(seconds=0, exit_code=7, output=out, image=IMAGE, mounts=(f"{src}:/data:ro",))
        job.spec = replace(job.spec, pull="never")
        self.launch(executor, job)
        obs = self.wait(executor, job, {Phase.FAILED}, self.SLACK_S)
        assert obs.exit_code == 7, obs
        pod = self._core.list_namespaced_pod(executor.cfg.namespace,
                                             label_selector=f"gpufleet.io/job-id={job.id}").items[0]
        c = pod.spec.containers[0]
        assert c.image == IMAGE and c.image_pull_policy == "Never"
        assert [(v.name, v.host_path.path) for v in pod.spec.volumes if v.host_path] == [("gpufleet-mount-0", str(src))]
        assert [(m.name, m.mount_path, m.read_only) for m in c.volume_mounts if m.name.startswith("gpufleet-mount")] \
            == [("gpufleet-mount-0", "/data", True)]
        env = {e.name: e.value for e in c.env}
        planned = job.allocation[0].gpus
        assert env["GPUFLEET_GPUS"] == ",".join(map(str, planned)) and env["NODE_RANK"] == "0"
        fields = _fields(read_logs(executor, job))  # printed by the command the fake kubelet ran
        assert fields["rank"] == "0" and fields["job"] == str(job.id), fields
        self.check_container_gpus(fields, planned)

    def test_cancel_stops_the_container(self, executor, make_job):
        job = make_job(seconds=None, output="container-up", image=IMAGE)
        self.launch(executor, job)
        self.wait(executor, job, {Phase.RUNNING}, self.SLACK_S)
        self.wait_for_output(executor, job, "container-up")
        executor.cancel(job)
        self.wait(executor, job, self.CANCEL_PHASES, self.SLACK_S)
        deadline = self.clock() + self.SLACK_S
        while (left := self.containers_left(executor, job)):
            assert self.clock() < deadline, f"pods still there after the cancel: {left}"
            self.sleep(self.POLL_S)

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

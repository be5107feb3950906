"""Resilient training on Kubernetes, unit level (issue 17): the checkpoint volume setting, each
rank's subPath and env, the init container that makes the folder the job's account's, and output
progress (the newest log line's timestamp) as the heartbeat."""

from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import replace
from types import SimpleNamespace

import pytest
from kubernetes.client.rest import ApiException

from gpufleet.domain import Allocation, ValidationError
from gpufleet.executors.base import Ability
from gpufleet.executors.kubernetes import KubernetesConfig, KubernetesExecutor, manifests, progress
from gpufleet.executors.kubernetes.phases import observe_gang

from .conftest import job_of

PVC = KubernetesConfig(namespace="ns", instance="gf", checkpoint_volume={"claim": "train-ckpt"})
HOST = KubernetesConfig(namespace="ns", instance="gf", checkpoint_volume={"host_path": "/shared/ckpt"},
                        checkpoint_mount="/ckpt")


def gang(**kw):
    job = job_of([Allocation("n1", (0, 1)), Allocation("n2", (0, 1))], **kw)
    job.submitted_at = 1764943200.123
    return job


def env_of(container):
    return {e["name"]: e["value"] for e in container["env"]}


def test_every_rank_mounts_the_jobs_subpath_of_the_checkpoint_volume_and_gets_its_env():
    job = gang()
    for rank in (0, 1):
        pod = manifests.gang_pod(PVC, job, rank, "uid-1")
        vol = next(v for v in pod["spec"]["volumes"] if v["name"] == "gpufleet-checkpoints")
        assert vol == {"name": "gpufleet-checkpoints", "persistentVolumeClaim": {"claimName": "train-ckpt"}}
        c = pod["spec"]["containers"][0]
        assert {"name": "gpufleet-checkpoints", "mountPath": "/gpufleet/checkpoints",
                "subPath": f"gf-{job.id}-1764943200123"} in c["volumeMounts"]
        env = env_of(c)
        assert env["GPUFLEET_CHECKPOINT_DIR"] == "/gpufleet/checkpoints"
        assert (env["GPUFLEET_ATTEMPT"], env["GPUFLEET_RESTART_COUNT"], env["NODE_RANK"]) == ("1", "0", str(rank))
        assert env["GPUFLEET_RUN_DIR"] == "/gpufleet/run" and env["GPUFLEET_HEARTBEAT_FILE"] == "/gpufleet/run/heartbeat"
        assert "initContainers" not in pod["spec"]  # pods run as the image's user: kubelet makes the folder


def test_a_restarted_attempt_has_the_same_subpath_and_counts_the_restart():
    job = gang()
    first = manifests.gang_pod(HOST, job, 0, None)
    job.restarts = 1  # what a requeue does: attempt 2, new object names
    second = manifests.gang_pod(HOST, job, 0, None)
    assert first["metadata"]["name"] != second["metadata"]["name"]
    mount = [m for m in second["spec"]["containers"][0]["volumeMounts"] if m["name"] == "gpufleet-checkpoints"]
    assert mount == [m for m in first["spec"]["containers"][0]["volumeMounts"] if m["name"] == "gpufleet-checkpoints"]
    assert mount[0]["mountPath"] == "/ckpt"
    env = env_of(second["spec"]["containers"][0])
    assert (env["GPUFLEET_ATTEMPT"], env["GPUFLEET_RESTART_COUNT"], env["GPUFLEET_CHECKPOINT_DIR"]) == ("2", "1", "/ckpt")
    assert {"name": "gpufleet-checkpoints", "hostPath": {"path": "/shared/ckpt", "type": "Directory"}} \
        in second["spec"]["volumes"]
    other = gang(job_id=job.id)
    other.submitted_at = job.submitted_at + 1  # same id from another database: another folder
    assert manifests.gang_pod(HOST, other, 0, None)["spec"]["containers"][0]["volumeMounts"] != \
        first["spec"]["containers"][0]["volumeMounts"]


def test_user_env_cannot_move_the_checkpoint_dir_and_single_node_jobs_get_it_too():
    job = job_of([Allocation("n1", (0,))], env={"GPUFLEET_CHECKPOINT_DIR": "/etc", "GPUFLEET_RESTART_COUNT": "9"})
    template = manifests.batch_job(PVC, job)["spec"]["template"]["spec"]
    env = env_of(template["containers"][0])
    assert (env["GPUFLEET_CHECKPOINT_DIR"], env["GPUFLEET_RESTART_COUNT"]) == ("/gpufleet/checkpoints", "0")
    assert any(m.get("subPath") for m in template["containers"][0]["volumeMounts"])
    plain = env_of(manifests.pod_spec(KubernetesConfig(), job_of([Allocation("n1", (0,))]), 0)["containers"][0])
    assert "GPUFLEET_CHECKPOINT_DIR" not in plain  # no volume configured: no checkpoint directory


def test_with_run_as_user_an_init_container_makes_the_folder_as_the_owner():
    job = gang()
    spec = manifests.gang_pod(PVC, job, 1, None, run_as=(4321, 4321))["spec"]
    (init,) = spec["initContainers"]
    assert spec["securityContext"]["runAsUser"] == 4321  # the init container too (pod level)
    assert init["image"] == job.spec.image and init["securityContext"] == {"allowPrivilegeEscalation": False}
    assert init["volumeMounts"] == [{"name": "gpufleet-checkpoints", "mountPath": "/gpufleet/checkpoint-root"}]
    assert init["command"][-1] == f"/gpufleet/checkpoint-root/gf-{job.id}-1764943200123"
    assert "$$1" in init["command"][2]  # kubelet's $(VAR) expansion cannot touch the script
    assert "resources" not in init  # no GPUs: the main container's limits stand


def run_init(folder: str) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/sh", "-c", manifests.CHECKPOINT_INIT, "gpufleet-checkpoint-dir", folder],
                          capture_output=True, text=True, timeout=10)


def test_the_init_script_makes_a_private_folder_and_refuses_a_link_or_another_accounts(tmp_path):
    made = tmp_path / "gf-1-2"
    assert run_init(str(made)).returncode == 0 and made.is_dir() and made.stat().st_mode & 0o777 == 0o700
    assert run_init(str(made)).returncode == 0  # the restart finds its own folder
    link = tmp_path / "gf-1-3"
    link.symlink_to(made)
    r = run_init(str(link))
    assert r.returncode == 75 and "refused" in r.stderr
    if os.geteuid() == 0:
        theirs = tmp_path / "gf-1-4"
        theirs.mkdir()
        os.chown(theirs, 65534, 65534)
        r = subprocess.run(["setpriv", "--reuid", "4321", "--regid", "4321", "--clear-groups", "/bin/sh", "-c",
                            manifests.CHECKPOINT_INIT, "x", str(theirs)], capture_output=True, text=True, timeout=10)
        assert r.returncode == 75, r.stderr


def test_a_refused_checkpoint_folder_fails_the_rank_with_the_init_containers_exit():
    failed = {"metadata": {"name": "p1", "labels": {"gpufleet.io/rank": "1"}}, "spec": {"nodeName": "n2"},
              "status": {"phase": "Failed", "initContainerStatuses": [{"name": "gpufleet-checkpoint-dir", "state": {
                  "terminated": {"exitCode": 75, "reason": "Error", "finishedAt": "2026-01-01T00:00:00Z"}}}]}}
    running = {"metadata": {"name": "p0", "labels": {"gpufleet.io/rank": "0"}}, "spec": {}, "status": {"phase": "Running"}}
    obs = observe_gang(1, 2, [running, failed], "h", True)
    assert obs.exit_code == 75 and "init container gpufleet-checkpoint-dir" in obs.reason and "rank 1" in obs.reason


@pytest.mark.parametrize("opts,field", [
    ({"checkpoint_volume": {"claim": "a", "host_path": "/x"}}, "kubernetes.checkpoint_volume"),
    ({"checkpoint_volume": {"nfs": "server:/x"}}, "kubernetes.checkpoint_volume"),
    ({"checkpoint_volume": "/shared"}, "kubernetes.checkpoint_volume"),
    ({"checkpoint_volume": {"claim": "Bad_Name"}}, "kubernetes.checkpoint_volume.claim"),
    ({"checkpoint_volume": {"host_path": "shared/ckpt"}}, "kubernetes.checkpoint_volume.host_path"),
    ({"checkpoint_volume": {"host_path": "/shared/../etc"}}, "kubernetes.checkpoint_volume.host_path"),
    ({"checkpoint_volume": {"host_path": "/"}}, "kubernetes.checkpoint_volume.host_path"),
    ({"checkpoint_mount": "ckpt"}, "kubernetes.checkpoint_mount"),
    ({"checkpoint_mount": "/"}, "kubernetes.checkpoint_mount"),
    ({"checkpoint_server_path": "/mnt/ckpt"}, "kubernetes.checkpoint_server_path"),
])
def test_bad_checkpoint_settings_name_the_field(opts, field):
    with pytest.raises(ValidationError) as e:
        KubernetesConfig.from_mapping(opts)
    assert e.value.field == field


def test_checkpoint_settings_from_yaml_keys():
    cfg = KubernetesConfig.from_mapping({"checkpoint-volume": {"host-path": "/nfs/ckpt"}, "checkpoint_mount": "/ck"})
    assert cfg.checkpoint_volume == {"host_path": "/nfs/ckpt"} and cfg.checkpoint_subpath(7, 1.5) == "gf-7-1500"
    assert KubernetesConfig().checkpoint_subpath(7, 1.5) is None


# ------------------------------------------------------------------ output progress --
def test_the_kubelet_timestamp_of_the_newest_line_is_read():
    assert progress.line_time(b"2026-12-05T14:00:01.123456789Z loss 0.3\n") == pytest.approx(1796479201.123457)
    assert progress.line_time(b"2026-12-05T15:00:01+01:00 x\n") == 1796479201.0
    assert progress.line_time(b"") is None and progress.line_time(b"no timestamp here\n") is None
    assert progress.refresh_s(5) == 1.0 and progress.refresh_s(600) == 30.0 and progress.refresh_s(100) == 10.0


class FakeCore:
    """read_namespaced_pod_log of a few pods: bytes, or an ApiException status."""

    def __init__(self, logs):
        self.logs, self.calls = logs, []

    def read_namespaced_pod_log(self, name, namespace, **kw):
        self.calls.append((name, kw))
        out = self.logs[name]
        if isinstance(out, int):
            raise ApiException(status=out, reason="x")
        return SimpleNamespace(data=out)


def executor_over(pods, logs, clock):
    """The executor's heartbeat part over fake pods and logs (no API server, no watch threads)."""
    ex = object.__new__(KubernetesExecutor)
    ex.cfg, ex.core, ex.clock = KubernetesConfig(), FakeCore(logs), clock
    ex.cache = SimpleNamespace(objects=lambda key: ([], pods), keys=lambda: set())
    ex._lock, ex._progress = threading.Lock(), {}
    return ex


def kpod(name, phase):
    return {"metadata": {"name": name}, "status": {"phase": phase}}


def test_last_sign_of_life_is_the_newest_line_of_the_running_ranks_and_is_reused_for_a_while():
    now = [1000.0]
    pods = [kpod("r0", "Running"), kpod("r1", "Running"), kpod("r2", "Pending"), kpod("r3", "Succeeded")]
    logs = {"r0": b"2026-12-05T14:00:01Z step 1\n", "r1": b"2026-12-05T14:00:09.5Z step 2\n", "r2": 400, "r3": b""}
    ex = executor_over(pods, logs, lambda: now[0])
    job = replace(gang(), spec=replace(gang().spec, heartbeat_s=60))
    assert Ability.HEARTBEAT in KubernetesExecutor.abilities
    assert ex.last_sign_of_life(job) == 1796479209.5
    assert [(name, kw["timestamps"], kw["tail_lines"]) for name, kw in ex.core.calls] == [("r0", True, 1), ("r1", True, 1)]
    logs["r1"] = b"2026-12-05T14:01:00Z step 3\n"
    now[0] += 5  # within refresh_s(60) = 6 s: the reading is reused
    assert ex.last_sign_of_life(job) == 1796479209.5 and len(ex.core.calls) == 2
    now[0] += 2
    assert ex.last_sign_of_life(job) == 1796479260.0


def test_a_pod_without_output_shows_nothing_but_an_api_outage_is_never_a_hang():
    job = gang()
    assert executor_over([kpod("r0", "Running")], {"r0": 404}, lambda: 0.0).last_sign_of_life(job) is None
    assert executor_over([kpod("r0", "Running")], {"r0": b""}, lambda: 0.0).last_sign_of_life(job) is None
    with pytest.raises(ApiException):  # the control loop logs it and skips the check this cycle
        executor_over([kpod("r0", "Running")], {"r0": 502}, lambda: 0.0).last_sign_of_life(job)


def test_last_checkpoint_reads_the_jobs_folder_where_the_server_sees_the_volume(tmp_path):
    cfg = KubernetesConfig(instance="gf", checkpoint_volume={"host_path": "/shared/ckpt"},
                           checkpoint_server_path=str(tmp_path))
    job = gang()
    ex = executor_over([], {}, lambda: 0.0)
    assert ex.last_checkpoint(job) is None  # no server path: unknown
    ex.cfg = cfg
    folder = tmp_path / cfg.checkpoint_subpath(job.id, job.submitted_at)
    folder.mkdir()
    (folder / "step-500.pt").write_bytes(b"x")
    os.utime(folder / "step-500.pt", (1234.0, 1234.0))
    assert ex.last_checkpoint(job) == 1234.0

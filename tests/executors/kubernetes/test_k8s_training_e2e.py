"""Resilient training on Kubernetes, end to end (issue 17): a real `gpufleet serve --executor
kubernetes` on the real API server, its checkpoint volume a hostPath (`kubernetes.checkpoint_volume`),
its nodes those of a fake kubelet of this checkout, which runs each rank's command on this host with
the volume's subPath bind-mounted (exec mode, as root). A 2-node gang saves a checkpoint and hangs
(no output): the control loop sees no new log line for --heartbeat, restarts it, and attempt 2
resumes from the same folder (GPUFLEET_RESTART_COUNT=1) and succeeds. A gang that keeps printing
outlives its --heartbeat untouched. A gang whose node goes NotReady mid-run restarts on the healthy
third node and resumes from its checkpoint."""

from __future__ import annotations

import os
import time
import uuid

import pytest
import yaml

from tests.e2e.conftest import ServerProc

from .conftest import EXEC, eventually

pytestmark = [pytest.mark.k8s, pytest.mark.e2e]
IMAGE = "registry.invalid/gpufleet/train:1"
TRAIN = ('ck="$GPUFLEET_CHECKPOINT_DIR/step"; '
         'if [ "$GPUFLEET_RESTART_COUNT" -ge 1 ] && [ -f "$ck" ]; then '
         '  echo "rank $GPUFLEET_NODE_RANK resumed from step $(cat "$ck") RESTART_COUNT=$GPUFLEET_RESTART_COUNT"; exit 0; fi; '
         'if [ "$GPUFLEET_NODE_RANK" = 0 ]; then echo 41 > "$ck"; fi; '
         'echo "rank $GPUFLEET_NODE_RANK training"; exec sleep 600')


@pytest.fixture
def train_server(tmp_path, kubeconfig, namespace, own_kubelet):
    if os.geteuid() != 0:
        pytest.skip("the fake kubelet bind-mounts the checkpoint subPath only as root")
    instance = f"r{uuid.uuid4().hex[:6]}"
    ckpt, mnt = tmp_path / "ckpt", tmp_path / "mnt"  # the volume on the "nodes"; the mount point in the "container"
    ckpt.mkdir(mode=0o1777), mnt.mkdir()
    cfg = tmp_path / "server.yaml"
    cfg.write_text(yaml.safe_dump({
        "kubernetes": {"namespace": namespace, "instance": instance, "pod_annotations": EXEC,
                       "node_selector": f"kubernetes.io/hostname in ({','.join(own_kubelet)})",
                       "checkpoint_volume": {"host_path": str(ckpt)}, "checkpoint_mount": str(mnt),
                       "checkpoint_server_path": str(ckpt)},
        "health": {"nvml": "off", "checks": {"gpu_inventory": {"enabled": False}}},
    }))
    s = ServerProc(tmp_path, None, ["--executor", "kubernetes", "--kubeconfig", kubeconfig, "--config", str(cfg)])
    s.start()
    s.instance, s.ckpt, s.mnt = instance, ckpt, mnt
    yield s
    s.stop()


def pods(core, namespace, s, job):
    sel = f"gpufleet.io/instance={s.instance},gpufleet.io/job-id={job}"
    return core.list_namespaced_pod(namespace, label_selector=sel).items


def checkpoint_mount(pod):
    return next(m for m in pod.spec.containers[0].volume_mounts if m.name == "gpufleet-checkpoints")


def test_a_hung_gang_is_restarted_and_resumes_from_its_checkpoint_volume(train_server, core, namespace):
    s = train_server
    job = s.submit("--nodes", "2", "--gpus", "1", "--heartbeat", "5s", "--image", IMAGE, "--", "sh", "-c", TRAIN)
    s.wait_state(job, {"RUNNING"}, timeout=30)
    s.wait_log(job, "rank 0 training", timeout=30)
    first = eventually(lambda: len(pods(core, namespace, s, job)) == 2 and pods(core, namespace, s, job))
    sub = {checkpoint_mount(p).sub_path for p in first}
    assert len(sub) == 1 and (s.ckpt / sub.pop() / "step").read_text() == "41\n"
    done = s.wait_state(job, {"SUCCEEDED", "FAILED", "LOST"}, timeout=60)
    one, two = done["attempts"]  # attempt 1 printed one line per rank right at its start
    print(f"attempt 1 start -> attempt 2 running: {two['started_at'] - one['started_at']:.2f} s (--heartbeat 5s)")
    assert done["state"] == "SUCCEEDED" and done["restarts"] == 1, done
    assert "heartbeat stopped: no sign of life" in one["reason"] and "(--heartbeat 0:05)" in one["reason"], one
    assert two["started_at"] - one["started_at"] >= 5
    second = [p for p in pods(core, namespace, s, job) if p.metadata.labels["gpufleet.io/attempt"] == "1"]
    assert len(second) == 2
    for p in second:
        assert checkpoint_mount(p).sub_path == checkpoint_mount(first[0]).sub_path
        env = {e.name: e.value for e in p.spec.containers[0].env}
        assert (env["GPUFLEET_RESTART_COUNT"], env["GPUFLEET_ATTEMPT"]) == ("1", "2")
        assert env["GPUFLEET_CHECKPOINT_DIR"] == str(s.mnt)
    assert s.cli("logs", str(job)).stdout == "rank 0 resumed from step 41 RESTART_COUNT=1\n"
    assert "rank 1 resumed from step 41 RESTART_COUNT=1" in s.cli("logs", str(job), "--rank", "1").stdout


def test_a_gang_that_keeps_printing_outlives_its_heartbeat(train_server):
    s = train_server
    busy = 'i=0; while [ $i -lt 20 ]; do echo "rank $NODE_RANK step $i"; i=$((i + 1)); sleep 0.5; done'
    job = s.submit("--nodes", "2", "--gpus", "1", "--heartbeat", "5s", "--image", IMAGE, "--", "sh", "-c", busy)
    done = s.wait_state(job, {"SUCCEEDED", "FAILED", "LOST"}, timeout=60)
    assert done["state"] == "SUCCEEDED" and done["restarts"] == 0, done
    assert done["ended_at"] - done["started_at"] >= 9  # ran ~10 s, twice its --heartbeat


def set_not_ready(core, node: str, why: str | None) -> None:
    """A node fault as the fake kubelet reports it (annotation), applied at once (status patch)."""
    core.patch_node(node, {"metadata": {"annotations": {"fake-kubelet.gpufleet.io/not-ready": why}}})
    ready = {"type": "Ready", "status": "False" if why else "True", "reason": "KubeletNotReady" if why else "KubeletReady",
             "message": why or "fake-kubelet"}
    core.patch_node_status(node, {"status": {"conditions": [ready]}})


def test_a_faulted_gang_restarts_on_a_healthy_node_and_resumes_from_its_checkpoint(train_server, core, namespace,
                                                                                 own_kubelet):
    from .conftest import _node_ready

    s = train_server
    job = s.submit("--nodes", "2", "--gpus", "1", "--image", IMAGE, "--", "sh", "-c", TRAIN)
    first = s.wait_state(job, {"RUNNING"}, timeout=30)
    s.wait_log(job, "rank 0 training", timeout=30)
    bad = first["nodes"][1]
    t0 = time.time()
    try:
        set_not_ready(core, bad, "gpufleet e2e: node fault")
        done = s.wait_state(job, {"SUCCEEDED", "FAILED", "LOST", "CANCELLED"}, timeout=60)
        one, two = done["attempts"]
        print(f"node fault -> attempt 2 running: {two['started_at'] - t0:.2f} s")
        assert done["state"] == "SUCCEEDED" and done["restarts"] == 1, done
        assert f"node {bad} is down" in one["reason"] and "Restarting after a fault (1)" in one["reason"], one
        assert bad not in two["nodes"] and len(two["nodes"]) == 2 and set(two["nodes"]) <= set(own_kubelet), two
        assert s.cli("logs", str(job)).stdout == "rank 0 resumed from step 41 RESTART_COUNT=1\n"
        assert next(n["state"] for n in s.cli_json("nodes") if n["name"] == bad) == "down"
    finally:
        set_not_ready(core, bad, None)
        eventually(lambda: _node_ready(core, bad), timeout=60, what=f"{bad} Ready again")

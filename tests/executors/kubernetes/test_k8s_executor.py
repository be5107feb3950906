"""The Kubernetes executor against the REAL API server (scripts/dev-k8s.sh): Jobs, gangs, cancel,
time limits, cordon, foreign pods, restart re-adoption, logs through the pod log API."""

from __future__ import annotations

import json

import pytest

from gpufleet.domain import Allocation, NodeState, ValidationError
from gpufleet.executors.base import FOREIGN_GPUS_LABEL, Phase, master_port_for
from gpufleet.executors.kubernetes.names import base_name

from .conftest import EXEC, eventually, job_of, wait_phase

pytestmark = pytest.mark.k8s
FAST = {"FAKE_KUBELET_RUN_SECONDS": "0.5"}
FOREVER = {"FAKE_KUBELET_RUN_SECONDS": "-1"}


def pods_of(core, ns, job):
    return core.list_namespaced_pod(ns, label_selector=f"gpufleet.io/job-id={job.id}").items


def test_nodes_come_from_the_api(make_executor):
    nodes = {n.name: n for n in make_executor().nodes()}
    assert {"gpu-node-01", "gpu-node-02", "gpu-node-03", "gpu-node-04"} <= set(nodes)
    n1 = nodes["gpu-node-01"]
    assert len(n1.gpus) == 8 and n1.gpu_model == "a100" and n1.gpus[0].memory_mb == 81920
    assert n1.labels["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB"
    assert n1.state is NodeState.UP and n1.cpus == 64 and n1.mem_mb == 512 * 1024


def test_single_node_job_is_a_batch_job_pinned_to_the_placed_node(make_executor, core, batch, namespace):
    ex = make_executor()
    job = job_of([Allocation("gpu-node-02", (2, 3))], env=FAST, time_limit_s=3600, tenant="Team A")
    handle = ex.launch(job)
    assert handle == f"{namespace}/{base_name(ex.cfg.instance, job)}"
    assert wait_phase(ex, job, {Phase.SUCCEEDED}).exit_code == 0
    kjob = batch.read_namespaced_job(base_name(ex.cfg.instance, job), namespace)
    assert kjob.spec.active_deadline_seconds == 3600 and kjob.spec.backoff_limit == 0
    (pod,) = pods_of(core, namespace, job)
    assert pod.spec.node_name == "gpu-node-02"
    assert pod.metadata.labels["gpufleet.io/tenant"] == "Team_A"
    c = pod.spec.containers[0]
    assert c.image == "registry.invalid/gpufleet/test:1" and c.command == ["python", "train.py"]
    assert c.resources.limits["nvidia.com/gpu"] == "2"
    env = {e.name: e.value for e in c.env}
    assert env["GPUFLEET_JOB_ID"] == str(job.id) and env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert env["GPUFLEET_GPUS"] == "2,3" and "NVIDIA_VISIBLE_DEVICES" not in env  # device plugin's


def test_failed_job_reports_the_exit_code(make_executor):
    ex = make_executor()
    job = job_of([Allocation("gpu-node-01", (0,))], env={**FAST, "FAKE_KUBELET_EXIT_CODE": "3"})
    ex.launch(job)
    obs = wait_phase(ex, job, {Phase.FAILED})
    assert obs.exit_code == 3 and "exit 3" in obs.reason


def test_gang_is_pods_plus_headless_service_with_rank_env(make_executor, core, namespace):
    ex = make_executor()
    job = job_of([Allocation("gpu-node-03", (0, 1, 2, 3)), Allocation("gpu-node-04", (4, 5, 6, 7))],
                 env={"FAKE_KUBELET_RUN_SECONDS": "1"})
    ex.launch(job)
    wait_phase(ex, job, {Phase.RUNNING})
    base = base_name(ex.cfg.instance, job)
    svc = core.read_namespaced_service(base, namespace)
    assert svc.spec.cluster_ip == "None" and svc.spec.publish_not_ready_addresses
    pods = sorted(pods_of(core, namespace, job), key=lambda p: p.metadata.name)
    assert [p.metadata.name for p in pods] == [f"{base}-0", f"{base}-1"]
    assert [p.spec.node_name for p in pods] == ["gpu-node-03", "gpu-node-04"]
    master = f"{base}-0.{base}.{namespace}.svc.cluster.local"
    for rank, p in enumerate(pods):
        env = {e.name: e.value for e in p.spec.containers[0].env}
        assert (env["NODE_RANK"], env["WORLD_SIZE"], env["MASTER_ADDR"]) == (str(rank), "2", master)
        assert env["MASTER_PORT"] == str(master_port_for(job.id))
        assert p.spec.hostname == f"{base}-{rank}" and p.spec.subdomain == base
        assert p.metadata.owner_references[0].kind == "Service"
    assert wait_phase(ex, job, {Phase.SUCCEEDED}).exit_code == 0


def test_gang_rank_failure_fails_the_gang_and_stops_the_others(make_executor, core, namespace):
    ex = make_executor()
    job = job_of([Allocation("gpu-node-01", (0,)), Allocation("gpu-node-02", (0,))], env=FOREVER)
    ex.launch(job)
    wait_phase(ex, job, {Phase.RUNNING})
    rank1 = f"{base_name(ex.cfg.instance, job)}-1"
    core.patch_namespaced_pod_status(rank1, namespace, {"status": {
        "phase": "Failed", "containerStatuses": [{"name": "main", "image": "x", "imageID": "", "ready": False,
                                                  "restartCount": 0, "state": {"terminated": {"exitCode": 9}}}]}})
    obs = wait_phase(ex, job, {Phase.FAILED})
    assert obs.exit_code == 9 and "rank 1" in obs.reason
    rank0 = f"{base_name(ex.cfg.instance, job)}-0"
    eventually(lambda: core.read_namespaced_pod(rank0, namespace).status.phase == "Failed", what="rank 0 stopped")
    stopped = core.read_namespaced_pod(rank0, namespace)  # kept (with its logs), marked as stopped by us
    assert stopped.status.reason == "DeadlineExceeded" and "rank 1" in stopped.metadata.annotations[
        "gpufleet.io/stopped-because"]
    job.handle = f"{namespace}/{base_name(ex.cfg.instance, job)}"
    (again,) = make_executor().poll([job])  # after a restart the cause is still rank 1, not rank 0's stop
    assert (again.phase, again.exit_code) == (Phase.FAILED, 9) and "rank 1" in again.reason


@pytest.mark.parametrize("ranks", [1, 2])
def test_cancel_deletes_with_propagation(make_executor, core, batch, namespace, ranks):
    ex = make_executor()
    job = job_of([Allocation(f"gpu-node-0{i + 1}", (5,)) for i in range(ranks)], env=FOREVER)
    ex.launch(job)
    wait_phase(ex, job, {Phase.RUNNING})
    ex.cancel(job)
    ex.cancel(job)  # idempotent
    assert wait_phase(ex, job, {Phase.CANCELLED}).phase is Phase.CANCELLED
    eventually(lambda: not pods_of(core, namespace, job), what="pods deleted")
    base = base_name(ex.cfg.instance, job)
    kinds = batch.list_namespaced_job(namespace, label_selector=f"gpufleet.io/job-id={job.id}").items + \
        core.list_namespaced_service(namespace, label_selector=f"gpufleet.io/job-id={job.id}").items
    eventually(lambda: not batch.list_namespaced_job(namespace, label_selector=f"gpufleet.io/job-id={job.id}").items
               and not core.list_namespaced_service(namespace, label_selector=f"gpufleet.io/job-id={job.id}").items,
               what=f"{base} deleted (had {len(kinds)})")


@pytest.mark.parametrize("ranks", [1, 2])
def test_time_limit_is_active_deadline_and_gives_timeout(make_executor, ranks):
    ex = make_executor()
    job = job_of([Allocation(f"gpu-node-0{i + 1}", (6,)) for i in range(ranks)], env=FOREVER, time_limit_s=1)
    ex.launch(job)
    obs = wait_phase(ex, job, {Phase.TIMEOUT}, timeout=30)
    assert "time limit" in obs.reason


def test_drain_and_resume_are_cordon_plus_taint(make_executor, core):
    ex = make_executor()
    try:
        ex.drain("gpu-node-04", "bad HBM on GPU 3: ticket #12")
        k = core.read_node("gpu-node-04")
        assert k.spec.unschedulable
        assert any(t.key == "gpufleet.io/drain" and t.effect == "NoSchedule" for t in k.spec.taints)
        node = next(n for n in ex.nodes() if n.name == "gpu-node-04")
        assert (node.state, node.reason) == (NodeState.DRAIN, "bad HBM on GPU 3: ticket #12")
        ex.resume("gpu-node-04")
        k = core.read_node("gpu-node-04")
        assert not k.spec.unschedulable and not any(t.key == "gpufleet.io/drain" for t in k.spec.taints or [])
        assert next(n for n in ex.nodes() if n.name == "gpu-node-04").state is NodeState.UP
    finally:
        ex.resume("gpu-node-04")


def test_node_cordoned_or_tainted_by_someone_else_shows_drained(make_executor, core):
    ex = make_executor()
    try:
        core.patch_node("gpu-node-03", {"spec": {"unschedulable": True}})  # kubectl cordon
        node = next(n for n in ex.nodes() if n.name == "gpu-node-03")
        assert (node.state, node.reason) == (NodeState.DRAIN, "cordoned in Kubernetes")
        core.patch_node("gpu-node-03", {"spec": {"unschedulable": None,
                                                 "taints": [{"key": "maintenance", "value": "psu",
                                                             "effect": "NoSchedule"}]}})
        node = next(n for n in ex.nodes() if n.name == "gpu-node-03")
        assert (node.state, node.reason) == (NodeState.DRAIN, "taint maintenance=psu:NoSchedule")
    finally:
        core.patch_node("gpu-node-03", {"spec": {"unschedulable": None, "taints": None}})
    assert next(n for n in ex.nodes() if n.name == "gpu-node-03").state is NodeState.UP


def test_pods_gpufleet_did_not_create_count_as_foreign(make_executor, core, namespace):
    ex = make_executor()
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "someone-elses", "namespace": namespace},
           "spec": {"restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": "gpu-node-02"},
                    "containers": [{"name": "c", "image": "x", "env": [{"name": "FAKE_KUBELET_RUN_SECONDS",
                                                                        "value": "-1"}],
                                    "resources": {"limits": {"nvidia.com/gpu": "3"}}}]}}
    core.create_namespaced_pod(namespace, pod)
    try:
        eventually(lambda: core.read_namespaced_pod("someone-elses", namespace).status.phase == "Running")
        mine = job_of([Allocation("gpu-node-02", (7,))], env=FOREVER)
        ex.launch(mine)
        wait_phase(ex, mine, {Phase.RUNNING})
        node = next(n for n in ex.nodes() if n.name == "gpu-node-02")
        assert node.labels[FOREIGN_GPUS_LABEL] == "n:3"  # our own pod is not foreign
        ex.cancel(mine)
    finally:
        core.delete_namespaced_pod("someone-elses", namespace)


def test_restart_readopts_by_label_and_creates_nothing_twice(make_executor, core, batch, namespace):
    ex = make_executor()
    single = job_of([Allocation("gpu-node-01", (4,))], env=FOREVER)
    gang = job_of([Allocation("gpu-node-01", (3,)), Allocation("gpu-node-02", (3,))], env=FOREVER)
    for j in (single, gang):
        j.handle = ex.launch(j)
        wait_phase(ex, j, {Phase.RUNNING})
    ex.close()
    again = make_executor()  # what a restarted gpufleet builds
    assert [o.phase for o in again.poll([single, gang])] == [Phase.RUNNING, Phase.RUNNING]
    assert again.launch(single) == single.handle and again.launch(gang) == gang.handle
    assert len(pods_of(core, namespace, single)) == 1 and len(pods_of(core, namespace, gang)) == 2
    assert len(batch.list_namespaced_job(namespace, label_selector=f"gpufleet.io/job-id={single.id}").items) == 1
    for j in (single, gang):
        again.cancel(j)
        wait_phase(again, j, {Phase.CANCELLED})


def test_missing_image_is_a_clear_validation_error(make_executor):
    ex = make_executor()
    job = job_of([Allocation("gpu-node-01", (0,))], image=None)
    with pytest.raises(ValidationError) as e:
        ex.launch(job)
    assert e.value.field == "image" and "--image" in e.value.message
    with pytest.raises(ValidationError):
        ex.validate(job)


def test_logs_come_through_the_pod_log_api(make_executor):
    ex = make_executor()
    job = job_of([Allocation("gpu-node-03", (1,))], env={**FAST, "FAKE_KUBELET_LOG": "step 1 loss 0.9\nstep 2"})
    ex.launch(job)
    wait_phase(ex, job, {Phase.SUCCEEDED})
    first = ex.logs(job, 0)
    assert first.data == b"step 1 loss 0.9\nstep 2\n" and first.complete and not first.note
    rest = ex.logs(job, 7)
    assert rest.data == b"loss 0.9\nstep 2\n" and rest.offset == len(first.data)


def test_exec_mode_runs_the_command_with_rank_env(make_executor):
    ex = make_executor(pod_annotations=EXEC)
    job = job_of([Allocation("gpu-node-02", (4, 5)), Allocation("gpu-node-03", (4, 5))],
                 command=("sh", "-c", "echo rank=$NODE_RANK cuda=$CUDA_VISIBLE_DEVICES gpus=$GPUFLEET_GPUS; sleep 2; exit 4"))
    ex.launch(job)
    obs = wait_phase(ex, job, {Phase.FAILED})
    assert obs.exit_code == 4
    assert ex.logs(job, 0, rank=1).data == b"rank=1 cuda=0,1 gpus=4,5\n"


def test_exec_mode_gets_a_hostile_argv_and_env_verbatim_through_the_api_server(make_executor):
    """`$(VAR)` and `$$` would be expanded by the kubelet: gpufleet escapes them, the process gets them."""
    ex = make_executor(pod_annotations=EXEC)
    hostile = ("$(HOME)", "$$", "$(NODE_RANK)x", "a\n#b", "'\"`id`", "$")
    dump = "import json, os, sys; print(json.dumps([sys.argv[1:], os.environ['EVIL']]))"
    job = job_of([Allocation("gpu-node-01", (0,))], command=("python3", "-c", dump, *hostile),
                 env={"EVIL": "$(NODE_RANK) $$ $(HOME)"})
    ex.launch(job)
    assert wait_phase(ex, job, {Phase.SUCCEEDED}).exit_code == 0
    assert json.loads(ex.logs(job, 0).data) == [list(hostile), "$(NODE_RANK) $$ $(HOME)"]


def test_logs_without_a_pod_say_so(make_executor):
    chunk = make_executor().logs(job_of([Allocation("gpu-node-01", (0,))]), 0)
    assert chunk.complete and chunk.data == b"" and "no pod" in chunk.note


def test_unschedulable_rank_reports_why_then_fails_after_start_timeout(make_executor, core, namespace):
    ex = make_executor(start_timeout_s=3)
    too_big = tuple(range(9))  # 9 GPUs on an 8-GPU node: kube-scheduler can never bind it
    job = job_of([Allocation("gpu-node-01", (0,)), Allocation("gpu-node-02", too_big)], env=FOREVER)
    ex.launch(job)
    starting = wait_phase(ex, job, {Phase.STARTING})
    obs = wait_phase(ex, job, {Phase.FAILED}, timeout=30)
    assert "Insufficient nvidia.com/gpu" in obs.reason and "could not start" in obs.reason, (starting, obs)
    eventually(lambda: not pods_of(core, namespace, job), what="gang removed")


def test_same_job_id_from_a_fresh_database_does_not_adopt_old_objects(make_executor, core, namespace):
    ex = make_executor()
    old = job_of([Allocation("gpu-node-01", (0,))], env=FAST, job_id=424242)
    ex.launch(old)
    wait_phase(ex, old, {Phase.SUCCEEDED})
    new = job_of([Allocation("gpu-node-01", (0,))], env={**FAST, "FAKE_KUBELET_EXIT_CODE": "5"}, job_id=424242)
    new.submitted_at = old.submitted_at + 60  # another gpufleet database, same job id
    assert ex.launch(new) != ex.launch(old)
    assert wait_phase(ex, new, {Phase.FAILED}).exit_code == 5  # its own pod, not the old one
    assert len(pods_of(core, namespace, new)) == 2


def test_pods_get_no_service_account_token_and_run_as_the_owners_uid(make_executor, core, batch, namespace):
    """On the real API server: the created Job's pod template mounts no token and carries the
    owner's uid/gid (run_as_user, mapping alice -> 4321) with runAsNonRoot; a gang's pods too."""
    from gpufleet.executors.accounts import Account, Accounts

    ex = make_executor(run_as_user=True)
    ex.accounts = Accounts(Account("root", 0, 0, (0,), "/root", "/bin/sh"), {"alice": "4321"})
    job = job_of([Allocation("gpu-node-01", (0,))], env=FOREVER)
    ex.launch(job)
    template = batch.read_namespaced_job(base_name(ex.cfg.instance, job), namespace).spec.template.spec
    assert template.automount_service_account_token is False
    sc = template.security_context
    assert (sc.run_as_user, sc.run_as_group, sc.run_as_non_root) == (4321, 4321, True)
    assert template.containers[0].security_context.allow_privilege_escalation is False
    gang = job_of([Allocation("gpu-node-01", (1,)), Allocation("gpu-node-02", (1,))], env=FOREVER)
    ex.launch(gang)
    for pod in eventually(lambda: len(pods_of(core, namespace, gang)) == 2 and pods_of(core, namespace, gang)):
        assert pod.spec.automount_service_account_token is False and pod.spec.security_context.run_as_user == 4321
    ex.cancel(job), ex.cancel(gang)
    orphan = job_of([Allocation("gpu-node-01", (2,))])
    orphan.user = "no-such-user-gf"
    with pytest.raises(ValidationError) as e:
        ex.launch(orphan)
    assert e.value.field == "user" and pods_of(core, namespace, orphan) == []

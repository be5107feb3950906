"""The Slurm executor against the real local cluster (scripts/dev-slurm.sh): the shared executor
contract (CLI and slurmrestd job APIs) and what only Slurm does."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from gpufleet.domain import Allocation, Booking, Job, JobSpec, JobState, NodeState
from gpufleet.executors.base import FOREIGN_GPUS_LABEL, Phase
from gpufleet.executors.slurm import SlurmConfig, SlurmExecutor
from tests.executors.images import TEST_IMAGE, containers_named, require_test_image
from tests.executors.contract import ExecutorContract, build_job, read_logs, wait_for

from .conftest import ROOT, sh

pytestmark = pytest.mark.slurm
CONTRACT_NODES = [Allocation("gpu01", (0,)), Allocation("gpu02", (0,))]


class TestSlurmContract(ExecutorContract):
    """Time limit: Slurm's are whole minutes, so gpufleet enforces the exact second (TIMEOUT)."""

    SLACK_S = 20.0
    TIME_LIMIT_S = 2

    @pytest.fixture
    def executor(self, make_executor):
        return make_executor()

    @pytest.fixture
    def nodes(self):
        return list(CONTRACT_NODES)

    def reopen(self, executor):
        return SlurmExecutor(executor.config)

    # images: podman inside the allocation (no pyxis here), run as the job's account (root here)
    IMAGE = TEST_IMAGE

    def _needs_image(self, executor):
        assert executor.container_runtime() == "podman"  # the dev cluster has no pyxis
        return require_test_image()

    def containers_left(self, executor, job):
        return containers_named(f"gpufleet-slurm-{job.handle}-")


def test_an_image_that_cannot_be_had_fails_at_once_with_podmans_reason(make_executor):
    require_test_image()
    ex = make_executor()
    spec = JobSpec(command=("true",), image="localhost/gpufleet-absent:1", pull="never")
    job = launched(ex, job_of(spec, [Allocation("gpu01", (0,))]))
    obs = wait_for(ex, job, {Phase.FAILED}, 30)
    assert obs.exit_code == 125 and "image not known" in obs.reason, obs


class TestSlurmRestContract(TestSlurmContract):
    """The same contract with jobs submitted, polled and cancelled through slurmrestd (v0.0.38,
    rest_auth/local on the unix socket; jobs run as the REST user)."""

    @pytest.fixture
    def executor(self, make_executor, slurm_cluster):
        return make_executor(api="rest", rest_url="unix:" + slurm_cluster["rest_socket"],
                             rest_user=slurm_cluster["rest_user"])

    def _needs_image(self, executor):
        pytest.skip("REST jobs run as the REST user, whose rootless podman has its own image store "
                    "without the test image; the same script path runs in TestSlurmContract")


# ------------------------------------------------------------------------------------------ helpers


def job_of(spec: JobSpec, allocation: list[Allocation] | None = None) -> Job:
    job_id = int(time.time() * 1000) % 1_000_000_000
    return Job(job_id, spec, state=JobState.RUNNING, submitted_at=time.time(), allocation=tuple(allocation or ()))


def launched(ex: SlurmExecutor, job: Job) -> Job:
    job.handle = ex.launch(job)
    return job


def show_job(handle: str) -> dict:
    return json.loads(sh("squeue", "--json"))["jobs"] and next(
        j for j in json.loads(sh("squeue", "--json"))["jobs"] if str(j["job_id"]) == handle)


# -------------------------------------------------------------------------------------------- jobs


def test_submitted_job_carries_gres_nodelist_account_time_and_name(make_executor, cleanup, tmp_path):
    ex = make_executor()
    spec = JobSpec(command=("sleep", "60"), gpus=2, gpu_model="a100", tenant="Vision Lab", time_limit_s=150,
                   name="resnet", cpus=2, mem_mb=2048, workdir=str(tmp_path))
    job = launched(ex, job_of(spec, [Allocation("gpu02", (4, 5))]))
    cleanup["jobs"].append(job.handle)
    wait_for(ex, job, {Phase.RUNNING}, 20)
    sj = show_job(job.handle)
    assert sj["nodes"] == "gpu02" and sj["tres_per_node"] == "gres:gpu:a100:2"
    assert sj["account"] == "vision_lab" and sj["time_limit"] == 3  # minutes, rounded up
    assert sj["name"] == f"gf{job.id}-resnet" and sj["comment"].startswith(f"{ex.config.tag}:{job.id}:0:")
    assert sj["current_working_directory"] == str(tmp_path)
    assert sj["cpus"] == 2 and sj["memory_per_node"] == 2048
    ex.cancel(job)
    wait_for(ex, job, {Phase.CANCELLED}, 20)


def test_killed_by_signal_fails_with_128_plus_signal(make_executor):
    ex = make_executor()
    job = launched(ex, job_of(JobSpec(command=("sh", "-c", "kill -9 $$"), gpus=1), [Allocation("gpu04", (0,))]))
    obs = wait_for(ex, job, {Phase.FAILED}, 20)
    assert obs.exit_code == 137


def test_pending_in_slurm_reads_as_starting_with_slurms_reason(make_executor, cleanup):
    foreign = sh("sbatch", "--parsable", "-A", "rest", "--uid=slurmapi", "-w", "gpu04", "--gres=gpu:l4:2",
                 "-o", "/dev/null", "--wrap", "sleep 60").strip()
    cleanup["jobs"].append(foreign)
    ex = make_executor()
    job = launched(ex, job_of(JobSpec(command=("true",), gpus=1, gpu_model="l4"), [Allocation("gpu04", (0,))]))
    cleanup["jobs"].append(job.handle)
    time.sleep(1.0)
    [obs] = ex.poll([job])
    assert obs.phase is Phase.STARTING and "PENDING" in obs.reason and obs.handle == job.handle
    sh("scancel", foreign)
    assert wait_for(ex, job, {Phase.SUCCEEDED}, 30).exit_code == 0


def test_ranks_follow_gpufleets_order_and_slurm_gpu_ids(make_executor, tmp_path):
    """gpufleet put rank 0 on gpu02: NODE_RANK, MASTER_ADDR and the rank logs follow that order;
    CUDA_VISIBLE_DEVICES is what Slurm allocated on each node."""
    ex = make_executor()
    out = "rank=$NODE_RANK node=$GPUFLEET_NODE world=$WORLD_SIZE master=$MASTER_ADDR cuda=$CUDA_VISIBLE_DEVICES"
    spec = JobSpec(command=("sh", "-c", f'echo "{out}"'), gpus=2, nodes=2, gpu_model="a100")
    job = launched(ex, job_of(spec, [Allocation("gpu02", (0, 1)), Allocation("gpu01", (0, 1))]))
    wait_for(ex, job, {Phase.SUCCEEDED}, 30)
    lines = [read_logs(ex, job, rank).decode() for rank in (0, 1)]
    assert "rank=0 node=gpu02 world=2 master=127.0.0.1 cuda=0,1" in lines[0]
    assert "rank=1 node=gpu01 world=2 master=127.0.0.1 cuda=0,1" in lines[1]


def test_slurm_placed_job_takes_node_rank_from_slurm(make_executor):
    ex = make_executor(slurm_place=True)
    out = "rank=$NODE_RANK node=$GPUFLEET_NODE nodes=$GPUFLEET_NODELIST master=$MASTER_ADDR"
    spec = JobSpec(command=("sh", "-c", f'echo "{out}"'), gpus=1, nodes=2, gpu_model="a100",
                   constraints={"rack": "r1"})
    job = launched(ex, job_of(spec, [Allocation("gpu03", (0,)), Allocation("gpu04", (0,))]))  # ignored
    wait_for(ex, job, {Phase.SUCCEEDED}, 30)
    assert "rank=0 node=gpu01 nodes=gpu01,gpu02 master=127.0.0.1" in read_logs(ex, job, 0).decode()
    assert "rank=1 node=gpu02 nodes=gpu01,gpu02 master=127.0.0.1" in read_logs(ex, job, 1).decode()


def test_new_executor_instance_adopts_and_never_resubmits(make_executor):
    first = make_executor()
    job = job_of(JobSpec(command=("sleep", "3"), gpus=1), [Allocation("gpu03", (0,))])
    handle = first.launch(job)  # the server "crashes" before it records the handle
    second = SlurmExecutor(first.config)
    try:
        assert second.launch(job) == handle
        [obs] = second.poll([job])
        assert obs.handle == handle and obs.phase in (Phase.STARTING, Phase.RUNNING)
        names = sh("squeue", "-h", "-t", "all", "-o", "%j").split()
        assert names.count(f"gf{job.id}-sleep") == 1
        job.handle = handle
        assert wait_for(second, job, {Phase.SUCCEEDED}, 30).exit_code == 0
        assert second.launch(job) == handle
    finally:
        second.close()


def test_requeued_run_is_a_new_slurm_job(make_executor):
    ex = make_executor()
    job = launched(ex, job_of(JobSpec(command=("true",), gpus=1), [Allocation("gpu04", (0,))]))
    wait_for(ex, job, {Phase.SUCCEEDED}, 20)
    job.restarts += 1  # preempted and requeued by gpufleet: the next run must really run
    second = ex.launch(job)
    assert second != job.handle
    job.handle = second
    wait_for(ex, job, {Phase.SUCCEEDED}, 20)


def test_slurmctld_restart_loses_nothing(make_executor):
    ex = make_executor()
    job = launched(ex, job_of(JobSpec(command=("sh", "-c", "sleep 6; echo survived"), gpus=1),
                              [Allocation("gpu03", (1,))]))
    wait_for(ex, job, {Phase.RUNNING}, 20)
    pid = Path("/var/lib/gpufleet-dev/slurm/run/slurmctld.pid").read_text().strip()
    sh("kill", "-TERM", pid)
    try:
        deadline = time.time() + 20
        while Path(f"/proc/{pid}").exists() and time.time() < deadline:
            time.sleep(0.1)
        assert ex.poll([job]) == []  # Slurm unreachable: nothing is concluded
    finally:
        sh(str(ROOT / "scripts" / "dev-slurm.sh"), "up")
    assert wait_for(ex, job, {Phase.SUCCEEDED}, 30).exit_code == 0
    assert b"survived" in read_logs(ex, job)
    assert ex.launch(job) == job.handle


# ------------------------------------------------------------------------------------------- nodes


def test_nodes_come_from_slurm(make_executor):
    nodes = {n.name: n for n in make_executor().nodes()}
    assert set(nodes) >= {"gpu01", "gpu02", "gpu03", "gpu04", "gpu05"}
    a100 = nodes["gpu01"]
    assert (len(a100.gpus), a100.gpu_model, a100.cpus, a100.mem_mb) == (8, "a100", 16, 64000)
    assert [g.group for g in a100.gpus] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert a100.labels["rack"] == "r1" and a100.labels["nvlink"] == "true"
    assert (len(nodes["gpu03"].gpus), nodes["gpu03"].gpu_model) == (4, "h100")
    assert (len(nodes["gpu04"].gpus), nodes["gpu04"].gpu_model) == (2, "l4")
    spare = nodes["gpu05"]  # the third A100 node, in a rack of its own
    assert (len(spare.gpus), spare.gpu_model, spare.cpus, spare.labels["rack"]) == (8, "a100", 16, "r3")


def test_foreign_jobs_count_as_occupied(make_executor, cleanup):
    ex = make_executor()
    ours = launched(ex, job_of(JobSpec(command=("sleep", "60"), gpus=1), [Allocation("gpu03", (0,))]))
    cleanup["jobs"].append(ours.handle)
    foreign = sh("sbatch", "--parsable", "-A", "rest", "--uid=slurmapi", "-w", "gpu03", "--gres=gpu:h100:2",
                 "-o", "/dev/null", "--wrap", "sleep 60").strip()
    cleanup["jobs"].append(foreign)
    wait_for(ex, ours, {Phase.RUNNING}, 20)
    deadline = time.time() + 20
    while time.time() < deadline:
        label = next(n for n in ex.nodes() if n.name == "gpu03").labels.get(FOREIGN_GPUS_LABEL, "")
        if len(label.split(",")) == 2:
            break
        time.sleep(0.2)
    held = [int(i) for i in label.split(",")]
    assert len(held) == 2 and 0 not in held  # ours (planned on 0) is not foreign


def test_drain_and_resume_map_both_ways(make_executor, cleanup):
    ex = make_executor()
    cleanup["nodes"].append("gpu04")
    ex.drain("gpu04", "gpufleet: fan check")
    assert "gpufleet: fan check" in sh("sinfo", "-h", "-R", "-n", "gpu04", "-o", "%E")
    node = next(n for n in ex.nodes() if n.name == "gpu04")
    assert (node.state, node.reason) == (NodeState.DRAIN, "gpufleet: fan check")
    ex.resume("gpu04")
    assert next(n for n in ex.nodes() if n.name == "gpu04").state is NodeState.UP
    ex.resume("gpu04")  # resuming an up node is fine
    # drained in Slurm by someone else: gpufleet sees it with Slurm's reason, and back
    sh("scontrol", "update", "nodename=gpu04", "state=drain", "reason=ops: PSU swap")
    node = next(n for n in ex.nodes() if n.name == "gpu04")
    assert (node.state, node.reason) == (NodeState.DRAIN, "ops: PSU swap")
    sh("scontrol", "update", "nodename=gpu04", "state=resume")
    assert next(n for n in ex.nodes() if n.name == "gpu04").state is NodeState.UP


def test_booking_becomes_a_reservation_its_jobs_use(make_executor, cleanup):
    ex = make_executor()
    now = time.time()
    booking = Booking(id=int(now) % 100000, tenant="Booked Team", nodes=("gpu03",), start=now - 5, end=now + 600)
    name = ex.reservation_name(booking)
    cleanup["reservations"].append(name)
    ex.book(booking)
    ex.book(booking)  # idempotent
    shown = sh("scontrol", "show", "reservation", name)
    assert "Nodes=gpu03" in shown and "Accounts=booked_team" in shown
    spec = JobSpec(command=("sh", "-c", "echo $SLURM_JOB_RESERVATION"), gpus=4, tenant="Booked Team",
                   booking=booking.id)
    job = launched(ex, job_of(spec, [Allocation("gpu03", (0, 1, 2, 3))]))
    wait_for(ex, job, {Phase.SUCCEEDED}, 30)
    assert name in read_logs(ex, job).decode()
    ex.unbook(booking)
    ex.unbook(booking)  # idempotent
    assert name not in sh("scontrol", "show", "reservation", check=False)


def test_hostile_argv_arrives_verbatim_and_smuggles_no_sbatch_option(make_executor, cleanup, log_dir):
    """An argument or env value with newlines, #SBATCH lines, quotes, $(...) and backticks reaches the
    job verbatim as argv/env; no option it spells (nice, exclusive, comment, hold) takes effect."""
    ex = make_executor()
    out = Path(log_dir) / "argv.json"
    smuggle = "\n#SBATCH --nice=4321\n#SBATCH --exclusive\n#SBATCH --comment=pwned\n"
    hostile = (smuggle, "$(touch pwned)", "`touch pwned`", "'\"'", "a\u2028b\u0085c", "", "#SBATCH --hold")
    dump = ("import json, os, sys, time; json.dump({'argv': sys.argv[2:], 'evil': os.environ['EVIL']}, "
            "open(sys.argv[1], 'w')); time.sleep(60)")
    spec = JobSpec(command=("python3", "-c", dump, str(out), *hostile), gpus=1, name=smuggle,
                   env={"EVIL": smuggle + "$(touch pwned)'"}, workdir=log_dir)
    job = launched(ex, job_of(spec, [Allocation("gpu03", (0,))]))
    cleanup["jobs"].append(job.handle)
    wait_for(ex, job, {Phase.RUNNING}, 30)
    deadline = time.time() + 30
    while not (out.exists() and out.stat().st_size) and time.time() < deadline:
        time.sleep(0.2)
    got = json.loads(out.read_text())
    assert got == {"argv": list(hostile), "evil": smuggle + "$(touch pwned)'"}
    sj = show_job(job.handle)
    assert sj["nice"] in (None, 0) and sj["shared"] != "none" and sj["comment"].startswith(f"{ex.config.tag}:{job.id}:")
    assert sj["name"] == f"gf{job.id}-_SBATCH_--nice_4321_SBATCH_--exclusive_SBATCH_--comment_pwned_"[:len(sj["name"])]
    assert not (Path(log_dir) / "pwned").exists()
    ex.cancel(job)
    wait_for(ex, job, {Phase.CANCELLED}, 20)


def test_artifacts_of_a_real_slurm_job_from_its_shared_workdir(make_executor, cleanup, log_dir):
    ex = make_executor()
    work = Path(log_dir) / "work"
    work.mkdir()
    work.chmod(0o1777)
    spec = JobSpec(command=("sh", "-c", "mkdir -p out && echo $SLURM_JOB_ID > out/id.txt"), nodes=2,
                   workdir=str(work), artifacts=("out/*",))
    job = launched(ex, job_of(spec, list(CONTRACT_NODES)))
    cleanup["jobs"].append(job.handle)
    assert wait_for(ex, job, {Phase.SUCCEEDED}, 60).phase is Phase.SUCCEEDED
    notes: list[str] = []
    files = list(ex.artifacts(job, 1, spec.artifacts, notes))
    assert [(f.rank, f.path) for f in files] == [(0, "out/id.txt")] and notes == []
    with files[0].file as f:
        assert f.read().strip().isdigit()  # written by the job inside Slurm

"""The executor contract on LocalExecutor (real processes), and what only the local engine does:
a server killed -9 while jobs run, a shim killed -9, process-group kills, gang failure, launch that
crashed half-way, all-or-nothing launch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpufleet.domain import Allocation, Job, JobSpec, JobState
from gpufleet.executors.base import Phase
from gpufleet.executors.local import LaunchError, LocalExecutor
from gpufleet.executors.local.files import alive, read_json
from tests.executors.contract import ExecutorContract, build_job, read_logs, wait_for
from tests.executors.images import TEST_IMAGE, containers_named, require_test_image
from gpufleet.executors.local.container import name_of

pytestmark = pytest.mark.e2e
GRACE_S = 1.0
NODES = [Allocation("node-a", (0, 1)), Allocation("node-b", (3,))]


class TestLocalContract(ExecutorContract):
    SLACK_S = 10.0

    @pytest.fixture
    def executor(self, tmp_path):
        ex = LocalExecutor(tmp_path / "run", grace_s=GRACE_S)
        yield ex
        ex.close()

    @pytest.fixture
    def nodes(self):
        return list(NODES)

    def reopen(self, executor):
        return LocalExecutor(executor.run_dir, grace_s=GRACE_S)

    IMAGE = TEST_IMAGE

    def _needs_image(self, executor):
        return require_test_image()

    def containers_left(self, executor, job):
        return containers_named(f"{name_of(executor.run_dir, job.id, job.attempt, 0)[:-2]}-")


@pytest.fixture
def local(tmp_path):
    ex = LocalExecutor(tmp_path / "run", grace_s=GRACE_S)
    yield ex
    ex.close()


def shell_job(job_id: int, script: str, ranks: int = 1, **spec) -> Job:
    spec = JobSpec(command=("sh", "-c", script), nodes=ranks, **spec)
    return Job(job_id, spec, state=JobState.RUNNING, allocation=tuple(NODES[:ranks]))


def launched(ex: LocalExecutor, job: Job) -> Job:
    job.handle = ex.launch(job)
    return job


def pids(ex: LocalExecutor, job: Job, rank: int = 0, timeout: float = 10.0) -> dict:
    path = ex.job_dir(job.id) / f"rank-{rank}" / "pid.json"
    deadline = time.monotonic() + timeout
    while (p := read_json(path)) is None:
        assert time.monotonic() < deadline, f"no {path}"
        time.sleep(0.01)
    return p


def gone(pid: int, start: int | None, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid, start):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_env_workdir_and_gpus_inside_the_job(local, tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")  # the server's own value must not leak through
    script = 'echo "$CUDA_VISIBLE_DEVICES $NVIDIA_VISIBLE_DEVICES $MY_VAR $GPUFLEET_JOB_ID $(pwd)"'
    job = launched(local, shell_job(11, script, env={"MY_VAR": "x y", "CUDA_VISIBLE_DEVICES": "5"},
                                    workdir=str(tmp_path)))
    obs = wait_for(local, job, {Phase.SUCCEEDED}, 10)
    assert obs.exit_code == 0
    assert read_logs(local, job).decode() == f"0,1 0,1 x y 11 {tmp_path}\n"


def test_server_killed_9_then_restarted_reattaches_and_gets_exit_code(tmp_path):
    run_dir = tmp_path / "run"
    code = f"""
import os, signal, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from gpufleet.executors.local import LocalExecutor
from tests.executors.contract import build_job
from gpufleet.domain import Allocation
ex = LocalExecutor({str(run_dir)!r}, grace_s=1.0)
ex.launch(build_job(21, [Allocation("node-a", (0,))], seconds=1.5, exit_code=5))
os.kill(os.getpid(), signal.SIGKILL)
"""
    server = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert server.returncode == -signal.SIGKILL, server.stderr
    job = build_job(21, [Allocation("node-a", (0,))], seconds=1.5, exit_code=5)
    job.handle = str(run_dir / "jobs" / "21" / "attempt-1")
    restarted = LocalExecutor(run_dir, grace_s=GRACE_S)
    assert [o.phase for o in restarted.poll([job])] in ([Phase.STARTING], [Phase.RUNNING])
    obs = wait_for(restarted, job, {Phase.FAILED}, 10)
    assert (obs.exit_code, obs.reason) == (5, "rank 0 exited with 5")
    assert restarted.launch(job) == job.handle  # after the restart: still no second run


def test_shim_killed_9_is_lost_and_its_orphan_is_killed(local):
    job = launched(local, shell_job(31, "sleep 300"))
    p = pids(local, job)
    os.kill(p["shim_pid"], signal.SIGKILL)
    obs = wait_for(local, job, {Phase.LOST}, 10)
    assert "vanished" in obs.reason
    assert gone(p["child_pid"], p["child_start"]), "the orphaned command must not keep its GPUs"


def test_cancel_reaches_grandchildren(local, tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    job = launched(local, shell_job(41, f"sleep 300 & echo $! > {pidfile}; wait"))
    pids(local, job)
    while not pidfile.exists() or not pidfile.read_text().strip():
        time.sleep(0.01)
    grandchild = int(pidfile.read_text())
    local.cancel(job)
    obs = wait_for(local, job, {Phase.CANCELLED}, 10)
    assert obs.exit_code == 128 + signal.SIGTERM
    assert gone(grandchild, None)


def test_time_limit_kills_a_term_ignoring_job_after_the_grace(local):
    job = launched(local, shell_job(51, "trap '' TERM; while :; do sleep 0.1; done", time_limit_s=1))
    t0 = time.monotonic()
    obs = wait_for(local, job, {Phase.TIMEOUT}, 10)
    took = time.monotonic() - t0
    assert obs.exit_code == 128 + signal.SIGKILL
    assert 1 + GRACE_S - 0.2 <= took < 1 + GRACE_S + 3, took


def test_one_failed_rank_fails_the_gang_and_stops_the_others(local):
    job = launched(local, shell_job(61, '[ "$NODE_RANK" = 1 ] && exit 3; sleep 300', ranks=2))
    p0 = pids(local, job, rank=0)
    obs = wait_for(local, job, {Phase.FAILED}, 10)
    assert (obs.exit_code, obs.reason) == (3, "rank 1 exited with 3")
    assert gone(p0["child_pid"], p0["child_start"])


def test_command_not_found_fails_with_127_and_says_why(local):
    job = launched(local, Job(71, JobSpec(command=("no-such-command-gpufleet",)),
                              state=JobState.RUNNING, allocation=(NODES[0],)))
    obs = wait_for(local, job, {Phase.FAILED}, 10)
    assert obs.exit_code == 127 and "no-such-command-gpufleet" in obs.reason
    assert b"no-such-command-gpufleet" in read_logs(local, job)


def test_missing_workdir_fails_the_job_and_says_so(local, tmp_path):
    job = launched(local, shell_job(72, "true", workdir=str(tmp_path / "nope")))
    obs = wait_for(local, job, {Phase.FAILED}, 10)
    assert obs.exit_code == 1 and "workdir" in obs.reason


def test_cancel_right_after_launch_never_leaves_it_running(local):
    job = launched(local, shell_job(81, "sleep 300", ranks=2))
    local.cancel(job)
    wait_for(local, job, {Phase.CANCELLED}, 10)
    for r in (0, 1):
        p = read_json(local.job_dir(job.id) / f"rank-{r}" / "pid.json")
        assert p is None or gone(p["child_pid"], p["child_start"])


def test_launch_interrupted_before_the_spawn_is_lost_and_never_runs(local):
    job = shell_job(91, "echo ran")
    rank_dir = local.job_dir(job.id) / "rank-0"
    rank_dir.mkdir(parents=True)
    (rank_dir / "launched").touch()  # the server died right after writing the marker
    job.handle = local.launch(job)
    local.launch_timeout_s = 0.3
    obs = wait_for(local, job, {Phase.LOST}, 5)
    assert "launch interrupted" in obs.reason
    assert not (rank_dir / "output.log").exists()


def test_launch_is_all_or_nothing(local):
    job = shell_job(101, "sleep 300", ranks=2)
    bad = local.job_dir(job.id) / "rank-1" / "launch.env"
    bad.mkdir(parents=True)  # rank 1 cannot be prepared
    with pytest.raises(LaunchError, match="rank 1"):
        local.launch(job)
    with pytest.raises(LaunchError):
        local.launch(job)  # and it stays failed: nothing is started a second time
    job.handle = str(local.job_dir(job.id))
    obs = wait_for(local, job, {Phase.FAILED}, 10)
    assert obs.reason.startswith("launch failed: rank 1")
    p = read_json(local.job_dir(job.id) / "rank-0" / "pid.json")
    assert p is None or gone(p["child_pid"], p["child_start"])


def test_logs_are_read_in_pieces_and_complete_at_the_end(local):
    job = launched(local, shell_job(111, "for i in 1 2 3; do echo line$i; sleep 0.2; done"))
    first = local.logs(job, 0)
    assert not first.complete
    wait_for(local, job, {Phase.SUCCEEDED}, 10)
    rest = local.logs(job, first.offset)
    assert first.data + rest.data == b"line1\nline2\nline3\n" and rest.complete
    with pytest.raises(Exception, match="rank"):
        local.logs(job, 0, rank=1)


def test_poll_ignores_a_job_it_was_never_asked_to_launch(local):
    job = shell_job(121, "true")
    assert local.poll([job]) == []
    job.handle = "local:121"
    (obs,) = local.poll([job])
    assert obs.phase is Phase.LOST


def test_run_dir_records_what_was_launched(local):
    job = launched(local, shell_job(131, "true", ranks=2))
    wait_for(local, job, {Phase.SUCCEEDED}, 10)
    meta = json.loads((local.job_dir(job.id) / "job.json").read_text())
    assert meta["allocation"] == [{"node": "node-a", "gpus": [0, 1]}, {"node": "node-b", "gpus": [3]}]


def test_each_attempt_has_its_own_directory_and_a_restart_reattaches_the_latest(local):
    job = launched(local, shell_job(141, 'echo run $GPUFLEET_ATTEMPT; [ "$GPUFLEET_RESTART_COUNT" = 0 ] && '
                                         "sleep 300; sleep 1; exit 0", ranks=2))
    wait_for(local, job, {Phase.RUNNING}, 10)
    local.cancel(job)  # preempted
    wait_for(local, job, {Phase.CANCELLED}, 10)
    job.restarts, job.handle = 1, None  # requeued, placed again
    assert launched(local, job).handle == str(local.job_dir(141, 2))
    again = LocalExecutor(local.run_dir, grace_s=GRACE_S)  # the server restarts during attempt 2
    assert [o.phase for o in again.poll([job])] in ([Phase.STARTING], [Phase.RUNNING])
    obs = wait_for(again, job, {Phase.SUCCEEDED}, 10)
    assert obs.handle == str(local.job_dir(141, 2))
    assert again.launch(job) == job.handle  # attempt 2's markers: not spawned twice
    for n in (1, 2):
        meta = json.loads((local.job_dir(141, n) / "job.json").read_text())
        assert (meta["attempt"], meta["restart_count"]) == (n, n - 1)
        assert read_json(local.job_dir(141, n) / "rank-1" / "exit.json")["cancelled"] is (n == 1)
    assert again.logs(job, attempt=1).data == b"run 1\n"
    assert again.logs(job).data == again.logs(job, attempt=2).data == b"run 2\n"
    with pytest.raises(Exception, match="attempt"):
        again.logs(job, attempt=3)


def test_run_dir_of_an_older_gpufleet_is_read_as_attempt_1(local):
    rank = local.run_dir / "jobs" / "151" / "rank-0"  # no attempt-<n> level
    rank.mkdir(parents=True)
    (rank / "launched").touch()
    (rank / "output.log").write_bytes(b"old layout\n")
    (rank / "exit.json").write_text('{"exit_code": 0, "ended_at": 1.0}')
    job = shell_job(151, "true")
    job.handle = str(rank.parent)
    assert [o.phase for o in local.poll([job])] == [Phase.SUCCEEDED]
    assert local.logs(job).data == b"old layout\n"


def test_logs_never_follow_a_link_out_of_the_run_dir(local, tmp_path):
    """A job that swaps its output.log (or its rank directory) for a symbolic link to a file it
    should not see does not get that file served by logs(); a FIFO does not hang the reader."""
    secret = tmp_path / "admin.token"
    secret.write_text("TOP-SECRET-TOKEN\n")
    (tmp_path / "evil").mkdir()
    (tmp_path / "evil" / "output.log").symlink_to(secret)
    jobs = {}
    for job_id, swap in ((161, "rm -f $D/output.log; ln -s {secret} $D/output.log"),
                         (162, "mv $D $D.real; ln -s {evil} $D"),
                         (163, "rm -f $D/output.log; mkfifo $D/output.log")):
        d = local.job_dir(job_id) / "rank-0"
        script = "echo mine; " + swap.format(secret=secret, evil=tmp_path / "evil").replace("$D", str(d))
        jobs[job_id] = launched(local, shell_job(job_id, script))
    for job_id, job in jobs.items():
        wait_for(local, job, {Phase.SUCCEEDED, Phase.LOST}, 10)
        t0 = time.monotonic()
        chunk = local.logs(job)
        assert time.monotonic() - t0 < 2
        assert b"TOP-SECRET" not in chunk.data, job_id
        assert chunk.data == b"" and "not served" in chunk.note, (job_id, chunk)


def test_the_newest_checkpoint_write_is_found_below_the_dir_without_following_links(tmp_path):
    from gpufleet.executors.base import newest_write_below as newest_mtime

    top = tmp_path / "checkpoint"
    assert newest_mtime(top) is None  # nothing written yet
    (top / "step-100").mkdir(parents=True)
    (top / "step-100" / "model.pt").write_text("w")
    os.utime(top / "step-100" / "model.pt", (1000, 1000))
    (top / "old.pt").write_text("w")
    os.utime(top / "old.pt", (500, 500))
    outside = tmp_path / "elsewhere"
    outside.write_text("x")
    os.utime(outside, (9000, 9000))
    (top / "link").symlink_to(outside)
    os.utime(top / "link", (700, 700), follow_symlinks=False)
    assert newest_mtime(top) == 1000

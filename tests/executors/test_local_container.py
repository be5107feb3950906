"""Container jobs (`image`) on the local engine, beyond the shared contract: the job's own account
inside the container, mount sources checked with the user's rights, pull failures that fail fast
with podman's reason, time limits, a restarted server re-attaching, and a shim killed -9 (its
container is removed, not left running under conmon). Real podman, the image of
scripts/dev-images.sh."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest

from gpufleet.domain import Allocation, Job, JobSpec, JobState
from gpufleet.executors.accounts import Accounts, this_account
from gpufleet.executors.base import Phase
from gpufleet.executors.local import LocalExecutor
from gpufleet.executors.local.container import name_of
from gpufleet.executors.local.files import alive, read_json
from tests.executors.contract import read_logs, wait_for
from tests.executors.images import MARKER, containers_named, require_test_image

pytestmark = pytest.mark.e2e
ROOT = os.geteuid() == 0
_ids = iter(range(int(time.time() * 10) % 10_000_000 * 10, 10**12))


@pytest.fixture
def image() -> str:
    return require_test_image()


@pytest.fixture
def local(tmp_path):
    ex = LocalExecutor(tmp_path / "run", grace_s=1.0)
    yield ex
    ex.close()


def container_job(script: str, image: str, user: str = "admin", gpus: tuple[int, ...] = (0,), **spec) -> Job:
    s = JobSpec(command=("sh", "-c", script), image=image, **spec)
    return Job(next(_ids), s, user=user, state=JobState.RUNNING, allocation=(Allocation("node-a", gpus),))


def launched(ex: LocalExecutor, job: Job) -> Job:
    job.handle = ex.launch(job)
    return job


def left(ex: LocalExecutor, job: Job) -> list[str]:
    return containers_named(name_of(ex.run_dir, job.id, job.attempt, 0))


def pid_file(ex: LocalExecutor, job: Job, timeout: float = 10.0) -> dict:
    path = ex.job_dir(job.id, job.attempt) / "rank-0" / "pid.json"
    deadline = time.monotonic() + timeout
    while (p := read_json(path)) is None:
        assert time.monotonic() < deadline, f"no {path}"
        time.sleep(0.01)
    return p


def wait_output(ex: LocalExecutor, job: Job, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in ex.logs(job, 0).data.decode(errors="replace"):
        assert time.monotonic() < deadline, f"never printed {text!r}"
        time.sleep(0.05)


def test_a_time_limit_stops_the_container_and_gives_timeout(local, image):
    job = launched(local, container_job("echo up; sleep 600", image, time_limit_s=1))
    obs = wait_for(local, job, {Phase.TIMEOUT}, 15)
    assert "time limit" in obs.reason
    assert left(local, job) == []


def test_an_image_that_cannot_be_pulled_fails_fast_with_podmans_reason(local):
    t0 = time.monotonic()
    never = launched(local, container_job("true", "localhost/gpufleet-absent:1", pull="never"))
    obs = wait_for(local, never, {Phase.FAILED}, 15)
    assert obs.exit_code == 125 and "container:" in obs.reason and "image not known" in obs.reason, obs
    gone = launched(local, container_job("true", "registry.invalid/gpufleet/absent:1", pull="always"))
    obs = wait_for(local, gone, {Phase.FAILED}, 30)
    assert "container:" in obs.reason and "registry.invalid" in obs.reason, obs
    assert time.monotonic() - t0 < 30  # not after a time limit: at once


def test_a_command_missing_from_the_image_fails_with_why(local, image):
    spec = JobSpec(command=("no-such-command-here",), image=image)
    job = launched(local, Job(next(_ids), spec, state=JobState.RUNNING, allocation=(Allocation("node-a", (0,)),)))
    obs = wait_for(local, job, {Phase.FAILED}, 15)
    assert obs.exit_code == 127 and "no-such-command-here" in obs.reason, obs


def test_a_restarted_server_reattaches_a_running_container(local, image):
    job = launched(local, container_job("echo started; sleep 2; cat /gpufleet-image-marker", image))
    wait_for(local, job, {Phase.RUNNING}, 10)
    again = LocalExecutor(local.run_dir, grace_s=1.0)
    try:
        assert [o.phase for o in again.poll([job])] == [Phase.RUNNING]
        assert wait_for(again, job, {Phase.SUCCEEDED}, 15).exit_code == 0
        log = read_logs(again, job).decode()
        assert log.count("started") == 1 and MARKER in log, log
    finally:
        again.close()


def test_a_shim_killed_9_leaves_no_container_running(local, image):
    job = launched(local, container_job("echo up; sleep 600", image))
    p = pid_file(local, job)
    wait_output(local, job, "up")
    assert left(local, job), "the container should be running"
    os.kill(p["shim_pid"], signal.SIGKILL)
    obs = wait_for(local, job, {Phase.LOST}, 10)
    assert "vanished" in obs.reason
    deadline = time.monotonic() + 15
    while left(local, job) or alive(p["child_pid"], p["child_start"]):
        assert time.monotonic() < deadline, f"left running: {left(local, job)}"
        local.poll([job])
        time.sleep(0.1)


needs_root = pytest.mark.skipif(not ROOT, reason="running jobs as their owners needs a root server (CI is root)")


@needs_root
def test_the_container_runs_as_the_jobs_account_and_the_user_must_reach_its_mounts(tmp_path, image):
    nobody = pwd.getpwnam("nobody")
    cleanup: list[Path] = []
    ex = LocalExecutor(tmp_path / "run", accounts=Accounts(this_account(), mapping={"alice": "nobody"},
                                                          run_as_owner=True))
    try:
        open_dir = Path(tempfile.mkdtemp(prefix="gpufleet-mount-", dir="/tmp"))  # pytest's base dir is 0700
        cleanup.append(open_dir)
        (open_dir / "in.txt").write_text("for-everyone\n")
        (open_dir / "in.txt").chmod(0o644)
        open_dir.chmod(0o755)
        job = launched(ex, container_job("id -u; id -g; cat /data/in.txt; touch /data/x || echo read-only; "
                                         "echo hi > $GPUFLEET_RESULTS_DIR/r.txt && echo results-ok",
                                         image, user="alice", mounts=(f"{open_dir}:/data:ro",)))
        assert wait_for(ex, job, {Phase.SUCCEEDED}, 15).exit_code == 0
        log = read_logs(ex, job).decode().split()
        assert log[:3] == [str(nobody.pw_uid), str(nobody.pw_gid), "for-everyone"], log
        assert "read-only" in log and "results-ok" in log, log

        private = tmp_path / "root-only"
        private.mkdir(mode=0o700)
        (private / "secret").write_text("s3cret\n")
        job = launched(ex, container_job("cat /data/secret", image, user="alice",
                                         mounts=(f"{private}:/data:ro",)))
        obs = wait_for(ex, job, {Phase.FAILED}, 15)
        assert "mount source" in obs.reason and str(private) in obs.reason and "nobody" in obs.reason, obs
        assert "s3cret" not in read_logs(ex, job).decode()
        assert left(ex, job) == []
    finally:
        ex.close()
        for d in cleanup:
            shutil.rmtree(d, ignore_errors=True)

"""Sessions on the local engine (executors/local/sessions.py): one more process on a pty in a
running job's allocation, with the rank's environment and account, its exit code, resize, ^C."""

from __future__ import annotations

import os
import select
import time

import pytest

from gpufleet.domain import Allocation, Job, JobSpec, JobState, ValidationError
from gpufleet.executors.accounts import Account, Accounts, lookup, this_account
from gpufleet.executors.base import Phase
from gpufleet.executors.local import LocalExecutor
from tests.executors.contract import wait_for

pytestmark = pytest.mark.e2e


def running_job(job_id: int, user: str = "admin", gpus=(2, 3)) -> Job:
    return Job(job_id, JobSpec(command=("sleep", "30"), gpus=len(gpus)), user=user, state=JobState.RUNNING,
               allocation=(Allocation("node-a", tuple(gpus)),))


def read_until(fd: int, text: bytes, timeout: float = 10.0) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while text not in out:
        left = deadline - time.monotonic()
        assert left > 0, f"no {text!r} in {out!r}"
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the process is gone
                break
            if not chunk:
                break
            out += chunk
    return out


def launched(ex: LocalExecutor, job: Job) -> Job:
    job.handle = ex.launch(job)
    wait_for(ex, job, {Phase.RUNNING}, 10)
    deadline = time.monotonic() + 10
    while not (ex.job_dir(job.id) / "rank-0" / "pid.json").exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return job


@pytest.fixture
def ex(tmp_path):
    e = LocalExecutor(tmp_path / "run", grace_s=0.5)
    yield e
    for job_dir in (tmp_path / "run" / "jobs").glob("*"):
        for rank in job_dir.glob("attempt-*/rank-*"):
            (rank / "stop").write_text("cancel")
    e.close()


def test_a_command_gets_the_rank_environment_and_its_exit_code(ex):
    job = launched(ex, running_job(1))
    p = ex.open_session(job, ["sh", "-c", 'echo "gpus=$CUDA_VISIBLE_DEVICES job=$GPUFLEET_JOB_ID"; exit 3'],
                        tty_mode=False)
    out = read_until(p.fd, b"job=1")
    assert b"gpus=2,3 job=1\n" in out  # raw: no CRLF
    assert p.wait(10) == 3
    p.close()
    ex.cancel(job)


def test_a_shell_on_a_pty_resizes_and_takes_ctrl_c(ex):
    job = launched(ex, running_job(2))
    p = ex.open_session(job, ["sh"], rows=30, cols=100)
    os.write(p.fd, b"stty size\n")
    assert b"30 100" in read_until(p.fd, b"30 100")
    p.resize(40, 120)
    os.write(p.fd, b"stty size\n")
    assert b"40 120" in read_until(p.fd, b"40 120")
    os.write(p.fd, b"sleep 30\n")
    time.sleep(0.3)
    started = time.monotonic()
    os.write(p.fd, b"\x03")  # ^C through the line discipline: SIGINT to the foreground group
    os.write(p.fd, b"echo back-$((6*7))\n")
    read_until(p.fd, b"back-42")
    assert time.monotonic() - started < 5  # the sleep was interrupted
    os.write(p.fd, b"exit 7\n")
    assert p.wait(10) == 7
    p.close()
    ex.cancel(job)


def test_no_session_in_a_job_that_is_not_running(ex):
    job = running_job(3)
    with pytest.raises(ValidationError, match="not running"):
        ex.open_session(job, ["true"])  # RUNNING in the store, but never launched here
    job.state = JobState.SUCCEEDED
    with pytest.raises(ValidationError, match="SUCCEEDED"):
        ex.open_session(job, ["true"])


@pytest.mark.skipif(os.geteuid() != 0 or lookup("nobody") is None, reason="needs root and the account nobody")
def test_a_root_server_runs_the_session_as_the_job_owner(tmp_path):
    acc = Accounts(this_account(), {"alice": "nobody"}, run_as_owner=True)
    e = LocalExecutor(tmp_path / "run", grace_s=0.5, accounts=acc)
    job = launched(e, running_job(4, user="alice"))
    p = e.open_session(job, ["sh", "-c", "id -un; pwd"], tty_mode=False)
    out = read_until(p.fd, b"work")
    assert out.split()[0] == b"nobody" and out.split()[1].endswith(b"rank-0/work")
    assert p.wait(10) == 0
    p.close()
    e.cancel(job)
    e.close()


def test_a_session_in_a_container_job_runs_inside_its_container(ex):
    from tests.executors.images import MARKER, require_test_image

    image = require_test_image()
    job = running_job(5)
    job.spec = JobSpec(command=("sleep", "30"), gpus=2, image=image)
    launched(ex, job)
    deadline = time.monotonic() + 30
    while True:  # podman is up a moment after the shim wrote pid.json
        p = ex.open_session(job, ["sh", "-c", "cat /gpufleet-image-marker; echo job=$GPUFLEET_JOB_ID"],
                            tty_mode=False)
        out = read_until(p.fd, b"job=", 30)
        code = p.wait(30)
        out += read_until(p.fd, b"\n", 5) if b"job=5" not in out else b""
        p.close()
        if code == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert code == 0, out
    assert MARKER.encode() in out and b"job=5" in out  # the image's files, the job's environment
    ex.cancel(job)

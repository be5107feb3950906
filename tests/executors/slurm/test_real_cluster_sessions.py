"""Sessions on the real Slurm dev cluster (executors/slurm/sessions.py): `srun --overlap --pty`
into a running job's allocation: its GPUs, a command's exit code, a shell on a pty with ^C."""

from __future__ import annotations

import os
import time

import pytest

from gpufleet.domain import Allocation, JobSpec
from gpufleet.executors.base import Phase
from tests.executors.contract import wait_for
from tests.executors.test_local_sessions import read_until

from .test_real_cluster import job_of, launched

pytestmark = pytest.mark.slurm


def test_a_session_runs_in_the_allocation_with_its_gpus_and_exit_code(make_executor):
    ex = make_executor()
    job = launched(ex, job_of(JobSpec(command=("sleep", "120"), gpus=1, gpu_model="l4"), [Allocation("gpu04", (1,))]))
    try:
        wait_for(ex, job, {Phase.RUNNING}, 30)
        p = ex.open_session(job, ["sh", "-c", 'echo "cvd=$CUDA_VISIBLE_DEVICES node=$SLURMD_NODENAME"; exit 4'],
                            tty_mode=False)
        out = read_until(p.fd, b"node=gpu04", 30)
        assert b"cvd=" in out and b"cvd=\n" not in out  # the step has a GPU of the job
        assert p.wait(30) == 4
        p.close()
        p = ex.open_session(job, [], rows=30, cols=90)  # the account's shell on a pty
        os.write(p.fd, b"stty size\n")
        read_until(p.fd, b"30 90", 30)
        os.write(p.fd, b"sleep 30\n")
        time.sleep(1.0)
        started = time.monotonic()
        os.write(p.fd, b"\x03")
        os.write(p.fd, b"echo back-$((6*7))\n")
        read_until(p.fd, b"back-42", 15)
        assert time.monotonic() - started < 10
        os.write(p.fd, b"exit 3\n")
        assert p.wait(30) == 3
        p.close()
    finally:
        ex.cancel(job)

"""The local labgrid board farm of scripts/dev-boards.sh: a real labgrid-coordinator and exporter,
boards board1/board2 (sshd on loopback ports, an HTTP PDU, pty consoles, a marker file as flash)."""

from __future__ import annotations

import os
import time
import urllib.request
from pathlib import Path

import pytest

from gpufleet.domain import Allocation, Job, JobSpec, JobState
from gpufleet.executors.base import Observation, Phase
from tests.conftest import require_engine


class Farm:
    def __init__(self):
        self.coordinator = os.environ["GPUFLEET_BOARDS_COORDINATOR"]
        self.dir = Path(os.environ["GPUFLEET_BOARDS_DIR"])
        self.key = os.environ["GPUFLEET_BOARDS_KEY"]
        self.flash = os.environ["GPUFLEET_BOARDS_FLASH"]

    def options(self, **more) -> dict:
        return {"coordinator": self.coordinator, "ssh_key": self.key, "flash_command": self.flash,
                "places": ["board1", "board2"], "ssh_timeout_s": 20, **more}

    def power(self, board: str, on: bool) -> None:
        urllib.request.urlopen(f"http://127.0.0.1:2300/relay/{board}/{int(on)}", timeout=10).read()

    def acquired(self, board: str) -> str | None:
        from gpufleet.executors.labgrid.coordinator import Coordinator

        c = Coordinator(self.coordinator, "gpufleet-test-observer")
        try:
            return c.places()[board].acquired
        finally:
            c.close()


@pytest.fixture(scope="session")
def farm() -> Farm:
    require_engine("GPUFLEET_TEST_BOARDS", "the labgrid board farm (scripts/dev-boards.sh)")
    return Farm()


_ids = iter(range(int(time.time() * 1000) % 1_000_000_000, 2_000_000_000))


def board_job(place: str, *command: str, env: dict | None = None, time_limit_s: int | None = None,
              **spec) -> Job:
    return Job(id=next(_ids), spec=JobSpec(command=command, env=env or {}, time_limit_s=time_limit_s, **spec),
               state=JobState.RUNNING, allocation=(Allocation(place, (0,)),))


def wait_end(executor, job: Job, timeout: float = 30.0) -> Observation:
    deadline = time.monotonic() + timeout
    while True:
        obs = [o for o in executor.poll([job]) if o.job_id == job.id]
        if obs and obs[0].phase.ended:
            return obs[0]
        assert time.monotonic() < deadline, f"job {job.id} did not end within {timeout}s: {obs}"
        time.sleep(0.2)


def wait_running(executor, job: Job, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        obs = executor.poll([job])
        assert not (obs and obs[0].phase.ended), f"ended early: {obs}"
        if obs and obs[0].phase is Phase.RUNNING and executor.logs(job).data:
            return
        assert time.monotonic() < deadline, f"job {job.id} not running within {timeout}s"
        time.sleep(0.2)

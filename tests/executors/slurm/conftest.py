"""The real local Slurm cluster (scripts/dev-slurm.sh up) for the tests marked `slurm`.

Absent Slurm: a loud skip on a workstation, a failure in CI (env CI set)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from gpufleet.executors.slurm import SlurmConfig, SlurmExecutor

ENV_FILE = Path("/var/lib/gpufleet-dev/slurm.env")
ROOT = Path(__file__).resolve().parents[3]


def slurm_answers() -> bool:
    if shutil.which("scontrol") is None:
        return False
    try:
        return subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.fixture(scope="session")
def slurm_cluster() -> dict[str, str]:
    """Fails (CI) or skips (elsewhere) when there is no cluster; fails when one was promised
    (GPUFLEET_TEST_SLURM=1) but does not answer."""
    promised = os.environ.get("GPUFLEET_TEST_SLURM")
    if not promised and not slurm_answers():
        why = "the local Slurm cluster is not running (GPUFLEET_TEST_SLURM unset, `scontrol ping` fails)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; CI must start it with scripts/dev-slurm.sh up")
        pytest.skip(f"SKIPPED LOUDLY: {why}. Start it: sudo scripts/dev-slurm.sh up && source scripts/dev-env.sh")
    if not slurm_answers():
        pytest.fail("GPUFLEET_TEST_SLURM is set but slurmctld does not answer `scontrol ping`")
    return {
        "jobs_dir": os.environ.get("GPUFLEET_SLURM_JOBS_DIR", "/var/lib/gpufleet-dev/slurm/jobs"),
        "rest_socket": os.environ.get("GPUFLEET_SLURM_REST_SOCKET",
                                      "/var/lib/gpufleet-dev/slurm/run/rest/slurmrestd.sock"),
        "rest_user": os.environ.get("GPUFLEET_SLURM_REST_USER", "slurmapi"),
    }


@pytest.fixture(scope="session")
def tag() -> str:
    """This test session's gpufleet installation tag: other sessions' jobs are foreign to it."""
    return f"gftest{uuid.uuid4().hex[:8]}"


@pytest.fixture
def log_dir(slurm_cluster) -> str:
    """Job output folder every Slurm user can write (REST jobs run as the REST user)."""
    path = Path(slurm_cluster["jobs_dir"]) / f"t-{uuid.uuid4().hex[:10]}"
    path.mkdir(parents=True)
    path.chmod(0o1777)
    yield str(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_executor(slurm_cluster, tag, log_dir):
    made: list[SlurmExecutor] = []

    def build(**overrides) -> SlurmExecutor:
        ex = SlurmExecutor(SlurmConfig(**{"tag": tag, "log_dir": log_dir, **overrides}))
        made.append(ex)
        return ex

    yield build
    for ex in made:
        ex.close()


@pytest.fixture
def cleanup():
    """Slurm job ids / nodes / reservations to put back after the test, whatever happens."""
    state = {"jobs": [], "nodes": [], "reservations": []}
    yield state
    for job_id in state["jobs"]:
        sh("scancel", str(job_id), check=False)
    for node in state["nodes"]:
        sh("scontrol", "update", f"nodename={node}", "state=resume", check=False)
    for name in state["reservations"]:
        sh("scontrol", "delete", f"reservationname={name}", check=False)


def sh(*args: str, check: bool = True) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=60).stdout

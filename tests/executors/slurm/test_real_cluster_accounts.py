"""Who a Slurm job runs as and what environment it gets, against the real local cluster: nothing
of the server's environment reaches a job (sbatch and slurmrestd), and a root server runs each job
as its owner's Unix account (sbatch --uid/--gid), refusing a user without one."""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import pytest

from gpufleet.domain import Allocation, Job, JobSpec, JobState, ValidationError
from gpufleet.executors.accounts import Accounts, this_account
from gpufleet.executors.base import Ability, Phase
from tests.executors.contract import read_logs, wait_for

from .conftest import sh

pytestmark = pytest.mark.slurm
MARKER = "gf-server-secret-" + uuid.uuid4().hex[:8]
PRINT_ENV = ("bash", "-c", "env; echo END-OF-ENV")


def job_of(spec: JobSpec, node: str = "gpu04", user: str = "admin") -> Job:
    job_id = int(time.time() * 1000) % 1_000_000_000
    return Job(job_id, spec, state=JobState.RUNNING, submitted_at=time.time(), allocation=(Allocation(node, ()),),
               user=user)


def run_to_end(ex, job: Job) -> str:
    job.handle = ex.launch(job)
    try:
        wait_for(ex, job, {Phase.SUCCEEDED}, 60)
    finally:
        sh("scancel", str(job.handle), check=False)
    return read_logs(ex, job, timeout=20).decode(errors="replace")


def env_of(output: str) -> dict[str, str]:
    assert "END-OF-ENV" in output, output
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line and not line.startswith(" "))


@pytest.fixture
def server_secrets(monkeypatch):
    """What a server process's environment holds that no job may see."""
    monkeypatch.setenv("GPUFLEET_TOKEN", MARKER)
    monkeypatch.setenv("GPUFLEET_HOME", "/var/lib/" + MARKER)
    monkeypatch.setenv("GF_SERVER_ONLY", MARKER)


@pytest.mark.parametrize("api", ["cli", "rest"])
def test_job_environment_is_built_not_the_servers(make_executor, slurm_cluster, server_secrets, api):
    rest = {"api": "rest", "rest_url": "unix:" + slurm_cluster["rest_socket"],
            "rest_user": slurm_cluster["rest_user"]} if api == "rest" else {}
    ex = make_executor(**rest)
    out = run_to_end(ex, job_of(JobSpec(command=PRINT_ENV, env={"MINE": "kept"})))
    assert MARKER not in out
    env = env_of(out)
    assert not {"GPUFLEET_TOKEN", "GPUFLEET_HOME", "GF_SERVER_ONLY"} & set(env)
    assert env["MINE"] == "kept" and env["GPUFLEET_JOB_ID"]
    assert env["PATH"].split(":")[:3] == ["/usr/local/bin", "/usr/bin", "/bin"]
    assert env["USER"] == (slurm_cluster["rest_user"] if api == "rest" else this_account().name)
    assert {"HOME", "LANG", "SLURM_JOB_ID"} <= set(env)


@pytest.fixture
def unix_user():
    """A real Unix account created for this test (and its Slurm user association removed after)."""
    if os.geteuid() != 0:
        pytest.skip("SKIPPED LOUDLY: creating a Unix user and submitting as it (sbatch --uid) needs root")
    name = "gft" + uuid.uuid4().hex[:8]
    subprocess.run(["useradd", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/bin/sh", name],
                   check=True, capture_output=True)
    yield name
    subprocess.run(["sacctmgr", "-i", "delete", "user", name], capture_output=True)
    subprocess.run(["userdel", name], capture_output=True)


def owner_accounts(mapping: dict[str, str] | None = None) -> Accounts:
    return Accounts(this_account(), dict(mapping or {}), run_as_owner=True)


def test_root_server_runs_each_job_as_its_owner(make_executor, unix_user):
    ex = make_executor(account_parent="root")
    ex.accounts = owner_accounts({"alice": unix_user}).for_engine(ex.abilities)
    assert Ability.RUN_AS_OWNER in ex.abilities and ex.accounts.run_as_owner
    out = run_to_end(ex, job_of(JobSpec(command=("bash", "-c", "id -un; id -u; echo HOME=$HOME; pwd")),
                                user="alice"))
    lines = out.split()
    uid = int(subprocess.run(["id", "-u", unix_user], capture_output=True, text=True).stdout)
    assert lines[:2] == [unix_user, str(uid)], out
    folder = os.path.join(ex.config.log_dir, unix_user)  # its own 0700 output folder
    assert "HOME=/nonexistent" in lines and lines[-1] == folder  # no home: starts there
    st = os.lstat(folder)
    assert st.st_uid == uid and st.st_mode & 0o777 == 0o700
    assert "root" not in lines[:2]


def test_root_server_refuses_a_job_whose_owner_has_no_account(make_executor):
    if os.geteuid() != 0:
        pytest.skip("SKIPPED LOUDLY: jobs run as their owners only when the server is root")
    ex = make_executor()
    ex.accounts = owner_accounts().for_engine(ex.abilities)
    with pytest.raises(ValidationError) as e:
        ex.launch(job_of(JobSpec(command=("true",)), user="nosuchuser-gf"))
    assert e.value.field == "user" and "no Unix account" in str(e.value)


def test_rest_api_does_not_claim_to_run_jobs_as_their_owners(make_executor, slurm_cluster):
    ex = make_executor(api="rest", rest_url="unix:" + slurm_cluster["rest_socket"],
                       rest_user=slurm_cluster["rest_user"])
    assert Ability.RUN_AS_OWNER not in ex.abilities
    accounts = owner_accounts().for_engine(ex.abilities, ex.runs_jobs_as)
    assert not accounts.run_as_owner and slurm_cluster["rest_user"] in accounts.notice

"""Who a local job runs as (gpufleet user -> Unix account), who is admin on the socket, and the
environment a job gets (built, never inherited). Real processes where privileges are dropped."""

from __future__ import annotations

import os
import pwd
import stat

import pytest

from gpufleet.domain import Allocation, Job, JobSpec, JobState, ValidationError
from gpufleet.executors.base import Phase
from gpufleet.executors.local import LaunchError, LocalExecutor
from gpufleet.executors.accounts import DEFAULT_PATH, Account, Accounts, job_env, lookup, this_account
from tests.executors.contract import read_logs, wait_for

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="dropping privileges needs root (CI runs these as root)")
NOBODY = "nobody"


def accounts(run_as_owner: bool = True, **kw) -> Accounts:
    return Accounts(this_account(), run_as_owner=run_as_owner, **kw)


def test_lookup_resolves_uid_gid_groups_home():
    me = pwd.getpwuid(os.geteuid())
    a = lookup(me.pw_name)
    assert (a.name, a.uid, a.gid, a.home) == (me.pw_name, me.pw_uid, me.pw_gid, me.pw_dir)
    assert me.pw_gid in a.groups
    assert lookup("no-such-user-gpufleet") is None
    assert lookup("../etc") is None and lookup("") is None


def test_mapping_same_name_by_default_and_bootstrap_admin_is_the_server_account():
    acc = accounts(mapping={"alice": NOBODY})
    assert acc.account_name("alice") == NOBODY
    assert acc.account_name("bob") == "bob"
    assert acc.account_name("admin") == this_account().name
    assert acc.resolve("alice").name == NOBODY
    assert acc.resolve("admin").uid == os.geteuid()


def test_a_user_without_an_account_is_refused_naming_user():
    acc = accounts()
    with pytest.raises(ValidationError) as e:
        acc.check("ghost-user-xyz")
    assert e.value.field == "user" and "ghost-user-xyz" in e.value.message
    accounts(run_as_owner=False).check("ghost-user-xyz")  # not root: every job runs as the server


def test_not_root_every_job_runs_as_the_server_account_and_says_so():
    acc = accounts(run_as_owner=False)
    assert acc.resolve("alice") == this_account()
    assert "not a security boundary" in acc.notice
    assert accounts().notice is None


def test_reverse_mapping_never_lends_a_taken_name():
    server = Account("svc", 990, 990, (990,), "/", "/bin/sh")
    acc = Accounts(server, {"robert": "bob"}, run_as_owner=True)
    assert acc.user_of("bob") == "robert"
    assert acc.user_of("robert") == ""  # gpufleet's robert is the account bob
    assert acc.user_of("svc") == "admin"
    assert acc.user_of("admin") == ""  # a Unix account named admin is not gpufleet's admin
    assert acc.user_of("carol") == "carol"


def test_admin_on_the_socket_is_root_the_server_or_the_admin_group():
    server = Account("svc", 990, 990, (990,), "/", "/bin/sh")
    root_gid = 0
    acc = Accounts(server, {}, admin_group="root")
    member = Account("carol", 1001, 1001, (1001, root_gid), "/", "/bin/sh")
    other = Account("dave", 1002, 1002, (1002,), "/", "/bin/sh")
    assert acc.is_admin(0, None) and acc.is_admin(990, None)
    assert acc.is_admin(1001, member)
    assert not acc.is_admin(1002, other)
    assert not Accounts(server, {}).is_admin(1001, member)  # no admin group configured
    assert not Accounts(server, {}, admin_group="no-such-group-xyz").is_admin(1002, other)


def test_job_env_is_built_not_inherited(monkeypatch):
    monkeypatch.setenv("GPUFLEET_HOME", "/secret")
    monkeypatch.setenv("GPUFLEET_TOKEN", "gf_secret")
    a = Account("alice", 1000, 1000, (1000,), "/home/alice", "/bin/bash")
    env = job_env(a, {"MY": "1", "PATH": "/opt/bin", "CUDA_VISIBLE_DEVICES": "7"},
                  {"CUDA_VISIBLE_DEVICES": "0,1", "GPUFLEET_JOB_ID": "3"})
    assert env == {"HOME": "/home/alice", "USER": "alice", "LOGNAME": "alice", "SHELL": "/bin/bash",
                   "PATH": "/opt/bin", "LANG": "C.UTF-8", "MY": "1", "CUDA_VISIBLE_DEVICES": "0,1",
                   "GPUFLEET_JOB_ID": "3"}
    assert job_env(a, {}, {}, lang="de_DE.UTF-8")["PATH"] == DEFAULT_PATH
    assert job_env(a, {}, {}, lang="de_DE.UTF-8")["LANG"] == "de_DE.UTF-8"


# ---- real processes ----------------------------------------------------------------------------

def job(job_id: int, script: str, user: str = "alice", **spec) -> Job:
    s = JobSpec(command=("sh", "-c", script), **spec)
    return Job(job_id, s, user=user, state=JobState.RUNNING, allocation=(Allocation("n", (0,)),))


def run(ex: LocalExecutor, j: Job) -> tuple[Phase, str]:
    j.handle = ex.launch(j)
    obs = wait_for(ex, j, {Phase.SUCCEEDED, Phase.FAILED}, 15)
    return obs.phase, read_logs(ex, j).decode()


def test_the_shim_passes_nothing_of_the_server_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUFLEET_HOME", str(tmp_path))
    monkeypatch.setenv("GPUFLEET_TOKEN", "gf_secret")
    monkeypatch.setenv("SERVER_ONLY", "x")
    ex = LocalExecutor(tmp_path / "run", grace_s=1.0, accounts=accounts(run_as_owner=False))
    phase, out = run(ex, job(1, "env", env={"MINE": "1"}))
    names = {line.split("=", 1)[0] for line in out.splitlines()}
    assert phase is Phase.SUCCEEDED
    assert not names & {"GPUFLEET_HOME", "GPUFLEET_TOKEN", "SERVER_ONLY"}
    assert {"HOME", "USER", "LOGNAME", "PATH", "LANG", "MINE", "GPUFLEET_JOB_ID"} <= names
    assert f"PATH={DEFAULT_PATH}" in out.splitlines()
    ex.close()


@needs_root
def test_a_root_server_runs_the_job_as_its_owner(tmp_path):
    ex = LocalExecutor(tmp_path / "run", grace_s=1.0, accounts=accounts(mapping={"alice": NOBODY}))
    script = ('id -un; id -u; echo "$HOME $USER"; cat ../launch.env >/dev/null 2>&1 || echo no-env; '
              'cat ../run_as >/dev/null 2>&1 || echo no-run-as; echo hi > mine; umask')
    phase, out = run(ex, job(2, script))
    nobody = pwd.getpwnam(NOBODY)
    assert phase is Phase.SUCCEEDED, out
    assert out.split("\n")[:6] == [NOBODY, str(nobody.pw_uid), f"{nobody.pw_dir} {NOBODY}", "no-env",
                                   "no-run-as", "0022"]
    rank = ex.job_dir(2) / "rank-0"
    work = rank / "work"
    assert (work.stat().st_uid, stat.S_IMODE(work.stat().st_mode)) == (nobody.pw_uid, 0o700)
    assert (work / "mine").stat().st_uid == nobody.pw_uid
    log = rank / "output.log"
    assert (log.stat().st_uid, stat.S_IMODE(log.stat().st_mode)) == (nobody.pw_uid, 0o600)
    for control in ("launch.env", "run_as", "launched"):
        st = (rank / control).stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600), control
    assert stat.S_IMODE(rank.stat().st_mode) == 0o700 and rank.stat().st_uid == 0
    ex.close()


@needs_root
def test_a_named_workdir_is_entered_with_the_owners_rights_only(tmp_path):
    secret = tmp_path / "root-only"
    secret.mkdir(mode=0o700)
    ex = LocalExecutor(tmp_path / "run", grace_s=1.0, accounts=accounts(mapping={"alice": NOBODY}))
    j = job(3, "pwd", workdir=str(secret))
    j.handle = ex.launch(j)
    obs = wait_for(ex, j, {Phase.SUCCEEDED, Phase.FAILED}, 15)
    assert obs.phase is Phase.FAILED
    assert "not usable" in read_logs(ex, j).decode()
    ex.close()


@needs_root
def test_a_job_of_a_user_without_an_account_fails_at_launch_with_the_reason(tmp_path):
    ex = LocalExecutor(tmp_path / "run", grace_s=1.0, accounts=accounts())
    j = job(4, "true", user="ghost-user-xyz")
    with pytest.raises(LaunchError, match="no Unix account"):
        ex.launch(j)
    j.handle = str(ex.job_dir(4))
    obs = ex.poll([j])[0]
    assert obs.phase is Phase.FAILED and "no Unix account" in obs.reason
    ex.close()


def test_jobs_run_as_owners_only_on_engines_that_declare_it():
    """What services check at submit follows the engine's declared ability (no isinstance): a root
    server refuses a user without an account on local and Slurm (sbatch), not on Slurm REST
    (every job runs as the REST user, said in the notice), Kubernetes or the fake engine."""
    from gpufleet.executors.base import Ability
    from gpufleet.executors.fake import FakeExecutor
    from gpufleet.executors.kubernetes import KubernetesExecutor
    from gpufleet.executors.slurm import SlurmConfig, SlurmExecutor

    root = Accounts(Account("root", 0, 0, (0,), "/root", "/bin/sh"), run_as_owner=True)
    for abilities in (LocalExecutor.abilities, SlurmExecutor.abilities):
        assert Ability.RUN_AS_OWNER in abilities
        with pytest.raises(ValidationError):
            root.for_engine(abilities).check("ghost-user-xyz")
        assert root.for_engine(abilities).notice is None
    rest = SlurmExecutor(SlurmConfig(api="rest", rest_url="unix:/nonexistent", rest_user="slurmapi",
                                     log_dir="/tmp/gf-test-slurm-logs"), api=object(), admin=object())
    for abilities, runs_as in ((rest.abilities, rest.runs_jobs_as), (KubernetesExecutor.abilities, None),
                               (FakeExecutor.abilities, None)):
        acc = root.for_engine(abilities, runs_as)
        acc.check("ghost-user-xyz")
        assert not acc.run_as_owner and acc.notice.startswith(f"every job runs as {runs_as or 'root'} ")

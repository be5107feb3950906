"""SlurmExecutor's own logic on captured real Slurm output, with a stand-in for the Slurm API
(unit level; the real cluster tests are in test_real_cluster.py)."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from pathlib import Path

import pytest

from gpufleet.domain import Allocation, Job, JobSpec, JobState, ValidationError
from gpufleet.executors.base import FOREIGN_GPUS_LABEL, Ability, Phase
from gpufleet.executors.slurm import SlurmConfig, SlurmExecutor
from gpufleet.executors.slurm.client import Admin, Runner
from gpufleet.executors.slurm.parse import SlurmJob
from gpufleet.scheduler import schedule
from tests.scheduler.builders import make_job, make_snapshot, nodes_of

FIXTURES = Path(__file__).parent / "fixtures"


class StubApi:
    """Answers with the captured `squeue --json` / `sinfo --json`; records submits and cancels."""

    def __init__(self):
        self.jobs_json = json.loads((FIXTURES / "squeue.json").read_text())["jobs"]
        self.nodes_json = json.loads((FIXTURES / "sinfo_drain_down.json").read_text())["nodes"]
        self.submitted, self.cancelled = [], []

    def submit(self, req):
        self.submitted.append(req)
        return 1000 + len(self.submitted)

    def jobs(self):
        return self.jobs_json

    def nodes(self):
        return self.nodes_json

    def cancel(self, job_id):
        self.cancelled.append(job_id)


class StubAdmin(Admin):
    def __init__(self):
        super().__init__(Runner())
        self.calls = []
        self.accounting: list[SlurmJob] = []

    def ensure_account(self, account, user, parent="root", wait_s=10.0):
        self.calls.append(("account", account))

    def mark_job(self, job_id, admin_comment):
        self.calls.append(("mark", job_id, admin_comment))

    def sacct(self, job_ids=(), name=None, since=None):
        return [j for j in self.accounting if not job_ids or j.job_id in job_ids]

    def min_job_age(self):
        return 300

    topology_text = ""  # `scontrol show topology` (nothing: no topology plugin)

    def topology(self):
        self.calls.append(("topology",))
        return self.topology_text


def make(tmp_path, clock=lambda: 1795314100.0):
    api, admin = StubApi(), StubAdmin()
    ex = SlurmExecutor(SlurmConfig(tag="gpufleet-test", log_dir=str(tmp_path)), api=api, admin=admin, clock=clock)
    return ex, api, admin


def adopted_job(**kw) -> Job:
    """gpufleet job 7, which the fixture's Slurm job 5 runs (comment gpufleet-test:7:0:1795314000000:...)."""
    spec = JobSpec(command=("sleep", "30"), gpus=2, nodes=2, **kw)
    return Job(7, spec, state=JobState.RUNNING, submitted_at=1795314000.0,
               allocation=(Allocation("gpu01", (0, 1)), Allocation("gpu02", (0, 1))))


def test_launch_finds_the_job_a_previous_process_submitted(tmp_path):
    ex, api, _ = make(tmp_path)
    assert ex.launch(adopted_job()) == "5"
    assert api.submitted == []


def test_launch_submits_once_per_run(tmp_path):
    ex, api, admin = make(tmp_path)
    job = adopted_job(tenant="Team A")
    job.restarts = 1  # a requeued job is a new Slurm job
    first = ex.launch(job)
    assert ex.launch(job) == first and len(api.submitted) == 1
    req = api.submitted[0]
    assert req.account == "team_a" and ("account", "team_a") in admin.calls
    assert req.nodelist == "gpu01,gpu02" and req.comment.startswith("gpufleet-test:7:1:")


def test_poll_maps_by_handle_and_identity(tmp_path):
    ex, _, _ = make(tmp_path)
    job = adopted_job()
    [obs] = ex.poll([job])  # no handle yet: found by identity
    assert (obs.phase, obs.handle) == (Phase.RUNNING, "5")
    stranger = adopted_job()
    stranger.id, stranger.handle = 99, "1"  # Slurm job 1 is not gpufleet job 99: not adopted
    assert ex.poll([stranger])[0].phase is Phase.LOST


def test_poll_falls_back_to_accounting(tmp_path):
    ex, _, admin = make(tmp_path)
    job = adopted_job()
    job.id, job.handle = 8, "77"
    admin.accounting = [SlurmJob(77, "gf8-x", "OUT_OF_MEMORY", exit_code=137, comment="")]
    [obs] = ex.poll([job])
    assert (obs.phase, obs.exit_code, obs.reason) == (Phase.FAILED, 137, "OUT_OF_MEMORY")


def test_exact_time_limit_cancels_and_marks(tmp_path):
    start = 1795314000.0
    for j in StubApi().jobs_json:
        if j["job_id"] == 5:
            start = j["start_time"]
    ex, api, admin = make(tmp_path, clock=lambda: start + 11)
    [obs] = ex.poll([adopted_job(time_limit_s=10)])
    assert obs.phase is Phase.RUNNING  # until Slurm says it ended
    assert ("mark", 5, "gpufleet:timeout") in admin.calls and api.cancelled == [5]
    ex.poll([adopted_job(time_limit_s=10)])
    assert api.cancelled == [5]  # once


def test_nodes_mark_foreign_gpus(tmp_path):
    ex, api, _ = make(tmp_path)
    nodes = {n.name: n for n in ex.nodes()}
    assert nodes["gpu01"].labels[FOREIGN_GPUS_LABEL] == "4,5,6"  # the foreign job; ours hold 0,1
    assert FOREIGN_GPUS_LABEL not in nodes["gpu02"].labels


def test_foreign_gpus_never_overlap_what_gpufleet_planned(tmp_path):
    """gpufleet planned 4,5 on gpu01 but Slurm gave ours 0,1 and the foreign job 4-6: the count of
    foreign GPUs stays 3 and none of them is reported on 4 or 5."""
    ex, api, _ = make(tmp_path)
    for j in api.jobs_json:
        if j["job_id"] == 5:
            j["comment"] = "gpufleet-test:7:0:1795314000000:gpu01=4,5;gpu02=0,1"
    nodes = {n.name: n for n in ex.nodes()}
    assert nodes["gpu01"].labels[FOREIGN_GPUS_LABEL] == "0,1,6"


def test_nodes_carry_slurms_switches_over_a_feature_of_that_name(tmp_path):
    ex, api, admin = make(tmp_path)
    admin.topology_text = (FIXTURES / "topology_tree_dev.txt").read_text()
    api.nodes_json[0]["features"] = api.nodes_json[0]["active_features"] = "a100,switch:old"
    nodes = {n.name: n for n in ex.nodes()}
    assert {n: node.labels["switch"] for n, node in nodes.items()} == {
        "gpu01": "sw1", "gpu02": "sw1", "gpu03": "sw2", "gpu04": "sw2"}
    assert nodes["gpu03"].labels["slurm.switches"] == "sw2,spine" and nodes["gpu03"].labels["rack"] == "r2"
    assert nodes["gpu01"].labels[FOREIGN_GPUS_LABEL] == "4,5,6"  # foreign GPUs still marked


def test_slurms_switches_keep_a_gang_in_one_block(tmp_path):
    """Slurm topology -> executor labels -> scheduler: four idle A100 nodes without racks, sw1 =
    gpu01 gpu03 gpu04, sw2 = gpu02. Blind to switches the scheduler takes the first two nodes
    (gpu01 + gpu02, across switches); with Slurm's topology it keeps the gang under sw1."""
    ex, api, admin = make(tmp_path)
    api.jobs_json = []
    one = next(d for d in api.nodes_json if d["name"] == "gpu01")
    api.nodes_json = [{**copy.deepcopy(one), "name": f"gpu0{i}", "features": "a100,nvlink",
                       "active_features": "a100,nvlink"} for i in range(1, 5)]
    admin.topology_text = ("SwitchName=sw1 Level=0 LinkSpeed=1 Nodes=gpu[01,03-04]\n"
                           "SwitchName=sw2 Level=0 LinkSpeed=1 Nodes=gpu02\n"
                           "SwitchName=top Level=1 LinkSpeed=1 Nodes=gpu[01-04] Switches=sw[1-2]\n")
    nodes = ex.nodes()
    gang = make_job(gpus=8, nodes=2, gpu_model="a100")

    def place(with_nodes):
        return sorted(nodes_of(schedule(make_snapshot(with_nodes, pending=[gang]), 0.0), gang.id))

    blind = [dataclasses.replace(n, labels={k: v for k, v in n.labels.items() if k != "switch"}) for n in nodes]
    assert place(blind) == ["gpu01", "gpu02"]
    assert place(nodes) == ["gpu01", "gpu03"]


def test_topology_is_read_once_until_the_node_set_changes(tmp_path):
    clock = [1795314100.0]
    ex, api, admin = make(tmp_path, clock=lambda: clock[0])
    admin.topology_text = (FIXTURES / "topology_block.txt").read_text()
    for _ in range(3):
        assert {n.labels["block"] for n in ex.nodes()} == {"b1"}
    assert admin.calls.count(("topology",)) == 1
    api.nodes_json = api.nodes_json[:3]  # a node left the cluster
    ex.nodes()
    assert admin.calls.count(("topology",)) == 2
    clock[0] += SlurmConfig().topology_refresh_s
    ex.nodes()
    assert admin.calls.count(("topology",)) == 3


def test_no_topology_plugin_leaves_the_labels_of_the_features(tmp_path):
    ex, _, admin = make(tmp_path)
    nodes = {n.name: n for n in ex.nodes()}
    assert "switch" not in nodes["gpu01"].labels and nodes["gpu01"].labels["rack"] == "r1"
    assert admin.calls.count(("topology",)) == 1


def test_topology_off_never_runs_scontrol(tmp_path):
    admin = StubAdmin()
    ex = SlurmExecutor(SlurmConfig(tag="gpufleet-test", log_dir=str(tmp_path), topology=False), api=StubApi(),
                       admin=admin, clock=lambda: 1795314100.0)
    ex.nodes()
    assert ("topology",) not in admin.calls


def test_logs_read_from_offset(tmp_path):
    ex, _, _ = make(tmp_path)
    job = adopted_job()
    chunk = ex.logs(job)
    assert chunk.data == b"" and not chunk.complete and "no output yet" in chunk.note
    (tmp_path / "gf7.0.out").write_bytes(b"hello\nworld\n")
    first = ex.logs(job, 0)
    assert first.data == b"hello\nworld\n" and first.offset == 12 and not first.complete
    job.state = JobState.SUCCEEDED
    assert ex.logs(job, 6) == type(first)(b"world\n", 12, True)


def test_logs_of_each_attempt_are_its_own_slurm_job_output(tmp_path):
    ex, _, _ = make(tmp_path)
    job = adopted_job()
    (tmp_path / "gf7.0.out").write_bytes(b"first run\n")
    (tmp_path / "gf7.1.out").write_bytes(b"second run\n")
    job.restarts = 1  # requeued and running again: attempt 2 (Slurm output gf<id>.<restarts>.out)
    job.handle = None
    assert ex.logs(job).data == ex.logs(job, attempt=2).data == b"second run\n"
    older = ex.logs(job, attempt=1)
    assert older.data == b"first run\n" and older.complete  # an earlier attempt is over
    with pytest.raises(ValidationError, match="attempt"):
        ex.logs(job, attempt=3)


def test_logs_never_follow_a_link_in_the_log_folder(tmp_path):
    """The log folder is writable by every job (mode 1777): a link planted as a job's output file
    (to the server's admin.token, say) is not served."""
    ex, _, _ = make(tmp_path)
    secret = tmp_path.parent / f"{tmp_path.name}-admin.token"
    secret.write_text("TOP-SECRET\n")
    (tmp_path / "gf7.0.out").symlink_to(secret)
    chunk = ex.logs(adopted_job())
    assert chunk.data == b"" and "not served" in chunk.note


# ------------------------------------------------------------------- who a job runs as, its environment

def _owner_accounts(mapping):
    from gpufleet.executors.accounts import Account, Accounts

    return Accounts(Account("root", 0, 0, (0,), "/root", "/bin/bash"), mapping, run_as_owner=True)


def test_root_server_submits_each_job_as_its_owner(tmp_path):
    import pwd

    nobody = pwd.getpwnam("nobody")
    ex, api, _ = make(tmp_path)
    ex.accounts = _owner_accounts({"alice": "nobody"}).for_engine(ex.abilities)
    job = adopted_job()
    job.id, job.user = 70, "alice"
    ex.launch(job)
    req = api.submitted[0]
    assert (req.uid, req.gid) == (nobody.pw_uid, nobody.pw_gid)
    assert f"--uid={nobody.pw_uid}" in req.sbatch_args() and f"--gid={nobody.pw_gid}" in req.sbatch_args()
    assert req.environment["USER"] == req.environment["LOGNAME"] == "nobody"
    assert req.environment["HOME"] == nobody.pw_dir
    folder = tmp_path / "nobody"  # the owner's own output folder: no other tenant reads or plants there
    assert req.output == str(folder / f"gf{job.id}.0.out")
    if os.geteuid() == 0:
        assert folder.stat().st_uid == nobody.pw_uid and folder.stat().st_mode & 0o777 == 0o700


def test_a_planted_link_for_an_owners_log_folder_fails_the_launch(tmp_path):
    ex, api, _ = make(tmp_path)
    ex.accounts = _owner_accounts({"alice": "nobody"}).for_engine(ex.abilities)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "nobody").symlink_to(tmp_path / "elsewhere")
    job = adopted_job()
    job.id, job.user = 74, "alice"
    with pytest.raises(ValueError, match="not a directory of nobody's alone"):
        ex.launch(job)
    assert api.submitted == []


def test_root_server_fails_the_launch_of_a_job_whose_owner_has_no_account(tmp_path):
    ex, api, _ = make(tmp_path)
    ex.accounts = _owner_accounts({}).for_engine(ex.abilities)
    job = adopted_job()
    job.id, job.user = 71, "no-such-user-gf"
    with pytest.raises(ValidationError) as e:
        ex.launch(job)
    assert e.value.field == "user" and api.submitted == []


def test_job_environment_is_built_from_the_account_not_inherited(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUFLEET_TOKEN", "server-secret")
    ex, api, _ = make(tmp_path)
    job = adopted_job()
    job.id = 72
    ex.launch(job)
    req = api.submitted[0]
    assert set(req.environment) == {"HOME", "USER", "LOGNAME", "SHELL", "PATH", "LANG"}
    assert req.uid is None and not any("--uid" in a for a in req.sbatch_args())


def test_rest_executor_runs_every_job_as_the_rest_user(tmp_path):
    cfg = SlurmConfig(tag="gpufleet-test", log_dir=str(tmp_path), api="rest", rest_url="unix:/nonexistent",
                      rest_user="nobody")
    ex = SlurmExecutor(cfg, api=StubApi(), admin=StubAdmin(), accounts=_owner_accounts({}))
    assert Ability.RUN_AS_OWNER not in ex.abilities and not ex.accounts.run_as_owner
    assert "every job runs as nobody" in ex.accounts.notice
    job = adopted_job()
    job.id, job.user = 73, "no-such-user-gf"  # not refused: REST runs it as the REST user
    ex.launch(job)
    assert ex.api.submitted[0].environment["USER"] == "nobody" and ex.api.submitted[0].uid is None


def test_sbatch_runs_with_the_jobs_environment_only(tmp_path, monkeypatch):
    """--export=ALL exports sbatch's environment: it must be the built one, never the server's."""
    from gpufleet.executors.slurm.client import CliApi
    from gpufleet.executors.slurm.script import SubmitRequest

    monkeypatch.setenv("GPUFLEET_TOKEN", "server-secret")
    monkeypatch.setenv("SLURM_CONF", "/etc/slurm/slurm.conf")
    seen = tmp_path / "env.txt"
    fake = tmp_path / "sbatch"
    fake.write_text(f"#!/bin/sh\nenv > {seen}\necho 4242\n")
    fake.chmod(0o755)
    req = SubmitRequest(script="#!/bin/bash\ntrue\n", name="gf1-x", comment="c", account="a", nodes=1, gres=None,
                        output=str(tmp_path / "o"), environment={"PATH": "/usr/bin:/bin", "HOME": "/h", "USER": "u"})
    assert CliApi(Runner(bin_dir=str(tmp_path))).submit(req) == 4242
    env = dict(line.split("=", 1) for line in seen.read_text().splitlines() if "=" in line)
    assert "GPUFLEET_TOKEN" not in env and "server-secret" not in seen.read_text()
    assert env["HOME"] == "/h" and env["USER"] == "u" and env["SLURM_CONF"] == "/etc/slurm/slurm.conf"


def test_rest_job_environment_is_the_built_one(monkeypatch):
    from gpufleet.executors.slurm.client import rest_job
    from gpufleet.executors.slurm.script import SubmitRequest

    monkeypatch.setenv("PATH", "/server/only/bin:/usr/bin")
    req = SubmitRequest(script="", name="n", comment="c", account="a", nodes=1, gres=None, output="/tmp/o",
                        environment={"PATH": "/usr/local/bin:/usr/bin:/bin", "USER": "u"})
    assert rest_job(req)["environment"] == {"PATH": "/usr/local/bin:/usr/bin:/bin", "USER": "u"}
    assert rest_job(req)["requeue"] is False  # sbatch --no-requeue: gpufleet owns restarts


def test_artifacts_come_from_the_workdir_the_job_names_once(tmp_path):
    ex = SlurmExecutor(SlurmConfig(tag="gpufleet-test", log_dir=str(tmp_path)), api=StubApi(), admin=StubAdmin())
    assert Ability.ARTIFACTS in ex.abilities
    work = tmp_path / "shared" / "work"
    (work / "out").mkdir(parents=True)
    (work / "out" / "r.json").write_text("{}")
    (work / "out" / "leak.json").symlink_to(tmp_path / "secret")
    job = Job(id=5, spec=JobSpec(command=("true",), nodes=2, workdir=str(work)),
              allocation=(Allocation("gpu01", (0,)), Allocation("gpu02", (0,))))
    notes: list[str] = []
    files = list(ex.artifacts(job, 1, ["out/*.json"], notes))
    assert [(f.rank, f.path) for f in files] == [(0, "out/r.json")]  # a shared directory: once
    for f in files:
        f.file.close()
    assert any("leak.json" in n for n in notes)
    nowhere: list[str] = []
    assert list(ex.artifacts(Job(id=6, spec=JobSpec(command=("true",))), 1, ["*"], nowhere)) == []
    assert "names (-C)" in nowhere[0]


def test_last_sign_of_life_is_the_newest_heartbeat_or_output_of_the_running_attempt(tmp_path):
    ex, _, _ = make(tmp_path)
    assert Ability.HEARTBEAT in ex.abilities
    job = adopted_job(heartbeat_s=60)
    job.restarts = 1  # attempt 2: gf7.1.*
    assert ex.last_sign_of_life(job) is None  # nothing written yet
    (tmp_path / "gf7.1.out").write_text("step 1\n")
    os.utime(tmp_path / "gf7.1.out", (100.0, 100.0))
    assert ex.last_sign_of_life(job) == 100.0
    beat = tmp_path / "gf7.1.d" / "rank-1" / "run" / "heartbeat"
    beat.parent.mkdir(parents=True)
    beat.write_text("")
    os.utime(beat, (250.0, 250.0))
    (tmp_path / "gf7.0.out").write_text("attempt 1 wrote later\n")  # another attempt: not this run's
    os.utime(tmp_path / "gf7.0.out", (900.0, 900.0))
    assert ex.last_sign_of_life(job) == 250.0
    beat.unlink()
    beat.symlink_to(tmp_path / "gf7.0.out")  # a link the job planted: its own mtime, not the target's
    os.utime(beat, (300.0, 300.0), follow_symlinks=False)
    assert ex.last_sign_of_life(job) == 300.0


def test_each_job_gets_a_checkpoint_dir_in_the_shared_folder_the_same_for_every_attempt(tmp_path):
    from tests.executors.slurm.test_script import decoded

    ex, api, _ = make(tmp_path)
    root = tmp_path / ".checkpoints"
    assert root.is_dir() and root.stat().st_mode & 0o7777 == 0o1777  # ranks of every user make theirs there
    job = adopted_job()
    job.id = 8
    ex.launch(job)
    job.restarts = 1
    ex.launch(job)
    first, second = (decoded(r.script, "gpufleet_ckpt") for r in api.submitted)
    assert first == second == [f"{root}/gpufleet-test-8-1795314000000"]
    other = SlurmExecutor(SlurmConfig(tag="t", log_dir=str(tmp_path), checkpoint_dir=str(tmp_path / "ck")),
                          api=StubApi(), admin=StubAdmin())
    assert other.checkpoint_root == str(tmp_path / "ck") and (tmp_path / "ck").is_dir()


def test_launched_jobs_are_watched_until_they_leave_slurm(tmp_path):
    ex, api, _ = make(tmp_path)
    assert Ability.WATCH in ex.abilities and Ability.CONCURRENT_LAUNCH in ex.abilities
    live: set[int] = set()
    api.live_ids = lambda: set(live)
    woke = []
    ex.ends._listeners.append(lambda: woke.append(1))  # what watch() adds, without its thread
    job = adopted_job()
    job.restarts = 1  # a new run: submitted
    job_id = int(ex.launch(job))
    live.add(job_id)
    assert ex.ends.look() is False
    live.clear()
    assert ex.ends.look() is True and woke == [1]

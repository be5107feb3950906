"""A real server process, the real CLI, real child processes. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import stat
import time

import pytest

pytestmark = pytest.mark.e2e


def test_job_sees_exactly_its_gpus_and_logs_come_back(server):
    job = server.submit("--gpus", "2", "--gpu-model", "a100", "--", "sh", "-c",
                        'echo "CUDA=$CUDA_VISIBLE_DEVICES NV=$NVIDIA_VISIBLE_DEVICES ID=$GPUFLEET_JOB_ID"')
    j = server.wait_state(job, {"SUCCEEDED", "FAILED"})
    assert j["state"] == "SUCCEEDED" and j["exit_code"] == 0
    gpus = ",".join(map(str, j["gpus"]["dgx1"]))
    assert server.cli("logs", str(job)).stdout.strip() == f"CUDA={gpus} NV={gpus} ID={job}"
    for key in ("id", "state", "exit_code", "nodes", "gpus", "reason", "submitted_at", "started_at", "ended_at"):
        assert key in j
    assert j["started_at"] >= j["submitted_at"] and j["ended_at"] >= j["started_at"]


def test_exit_code_time_limit_and_cancel(server):
    failing = server.submit("--", "sh", "-c", "exit 7")
    slow = server.submit("--time-limit", "1s", "--", "sleep", "60")
    victim = server.submit("--", "sleep", "60")
    assert server.wait_state(failing, {"FAILED"})["exit_code"] == 7
    server.wait_state(victim, {"RUNNING"})
    assert "cancel" in server.cli("cancel", str(victim)).stdout
    assert server.wait_state(victim, {"CANCELLED"}, timeout=15)["state"] == "CANCELLED"
    t = server.wait_state(slow, {"TIMEOUT"}, timeout=20)
    assert t["ended_at"] - t["started_at"] < 10


def test_two_node_job_rank_environment(server):
    job = server.submit("-N", "2", "--gpus", "2", "--gpu-model", "rtx4090", "--", "sh", "-c",
                        "echo $NODE_RANK $WORLD_SIZE $MASTER_ADDR $MASTER_PORT $CUDA_VISIBLE_DEVICES $GPUFLEET_NODE_RANK")
    j = server.wait_state(job, {"SUCCEEDED", "FAILED"})
    assert j["state"] == "SUCCEEDED", j
    lines = [server.cli("logs", str(job), "--rank", str(r)).stdout.split() for r in (0, 1)]
    assert [line[0] for line in lines] == ["0", "1"]
    assert all(line[1] == "2" and line[5] == line[0] for line in lines)
    assert lines[0][2:4] == lines[1][2:4]  # same master address and port
    assert sorted(j["nodes"]) == ["desk-001", "desk-002"]


def test_bad_input_exits_2_naming_the_field_and_stores_nothing(server):
    cases = [
        (["--gpus", "0", "--", "true"], "gpus"),
        (["--gpus", "-2", "--", "true"], "gpus"),
        (["--gpus", "64", "--", "true"], "gpus"),
        (["--gpu-model", "b200", "--", "true"], "gpu_model"),
        (["--time-limit", "soon", "--", "true"], "time_limit"),
        (["--tenant", "ghosts", "--", "true"], "tenant"),
        ([], "command"),
    ]
    for args, field in cases:
        r = server.cli("submit", *args, check=False)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert field in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    assert server.cli_json("jobs", "--all") == []


def test_yaml_job_file_mirrors_flags(server, tmp_path):
    f = tmp_path / "job.yaml"
    f.write_text("name: from-yaml\ngpus: 1\ngpu-model: orin\ntime_limit: 10m\nenv: {GREETING: hi}\n"
                 "command: [sh, -c, 'echo $GREETING $CUDA_VISIBLE_DEVICES']\n")
    job = int(server.cli_json("submit", str(f))["id"])
    j = server.wait_state(job, {"SUCCEEDED", "FAILED"})
    assert j["name"] == "from-yaml" and j["nodes"] == ["orin1"] and j["request"]["time_limit"] == 600
    assert server.cli("logs", str(job)).stdout.strip() == "hi 0"
    bad = tmp_path / "bad.yaml"
    bad.write_text("gpus: 1\ncolour: red\ncommand: ['true']\n")
    r = server.cli("submit", str(bad), check=False)
    assert r.returncode == 2 and "colour" in r.stderr


def test_admin_token_file_is_private_and_users_see_their_tenant(server):
    mode = stat.S_IMODE(os.stat(server.home / "admin.token").st_mode)
    assert mode == 0o600
    token = server.cli("token", "create", "--user", "alice", "--tenant", "vision").stdout.strip()
    alice = {"GPUFLEET_TOKEN": token}
    mine = int(server.cli("submit", "--", "sleep", "30", env=alice).stdout)
    theirs = server.submit("--tenant", "speech", "--", "sleep", "30")
    import json
    seen = [j["id"] for j in json.loads(server.cli("jobs", "--json", env=alice).stdout)]
    assert seen == [mine]
    r = server.cli("cancel", str(theirs), env=alice, check=False)
    assert r.returncode != 0 and "not found" in r.stderr
    r = server.cli("node", "drain", "dgx1", "--reason", "x", env=alice, check=False)
    assert r.returncode != 0 and "admin" in r.stderr
    server.cli("cancel", str(mine), str(theirs))


def test_nodes_drain_resume_and_tenants(server):
    server.cli("node", "drain", "dgx1", "--reason", "fan noise")
    nodes = {n["name"]: n for n in server.cli_json("nodes")}
    assert nodes["dgx1"]["state"] == "drain" and nodes["dgx1"]["reason"] == "fan noise"
    job = server.submit("--gpu-model", "a100", "--", "true")
    time.sleep(1.0)
    j = server.cli_json("show", str(job))
    assert j["state"] == "PENDING" and j["reason"]
    server.cli("node", "resume", "dgx1")
    server.wait_state(job, {"SUCCEEDED"})
    table = server.cli("jobs", "--all").stdout
    assert str(job) in table and "SUCCEEDED" in table
    assert {t["name"] for t in server.cli_json("tenants")} >= {"default", "vision", "speech"}


def test_kill9_loses_nothing_and_launches_nothing_twice(server, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    gate = marks / "gate"  # jobs run until the test opens the gate: no race with a slow machine
    cmd = f'echo $GPUFLEET_JOB_ID >> {marks}/started; while [ ! -e {gate} ]; do sleep 0.05; done; echo done'
    running = [server.submit("--gpus", "8", "--gpu-model", "a100", "--", "sh", "-c", cmd)]
    queued = [server.submit("--gpus", "8", "--gpu-model", "a100", "--", "sh", "-c", cmd) for _ in range(2)]
    server.wait_state(running[0], {"RUNNING"})
    server.kill9()
    assert (marks / "started").read_text().split() == [str(running[0])]
    server.start()
    assert server.wait_state(running[0], {"RUNNING"})["restarts"] == 0  # re-attached, not relaunched
    gate.touch()
    for job in running + queued:
        assert server.wait_state(job, {"SUCCEEDED", "FAILED", "LOST"}, timeout=40)["state"] == "SUCCEEDED"
    started = (marks / "started").read_text().split()
    assert sorted(started) == sorted(str(j) for j in running + queued)  # each exactly once
    assert server.cli("logs", str(running[0])).stdout.strip() == "done"


def test_restart_marks_vanished_job_lost(server):
    job = server.submit("--restart", "never", "--", "sleep", "60")  # the default restarts it (a fault)
    j = server.wait_state(job, {"RUNNING"})
    server.kill9()
    kill_job_processes(server.home, job)
    server.start()
    lost = server.wait_state(job, {"LOST", "FAILED"}, timeout=20)
    assert lost["state"] == "LOST" and lost["reason"]
    assert j["nodes"]


def kill_job_processes(home, job_id: int) -> None:
    """kill -9 exactly the shim and the command of one job, by the pids its shim recorded."""
    for pid_file in (home / "runs" / "jobs" / str(job_id)).glob("attempt-*/rank-*/pid.json"):
        info = json.loads(pid_file.read_text())
        for key in ("shim_pid", "child_pgid"):  # the shim first: it must not see its child die
            try:
                (os.killpg if key == "child_pgid" else os.kill)(int(info[key]), signal.SIGKILL)
            except (KeyError, ProcessLookupError):
                pass


def test_no_gpu_and_no_flags_starts_with_a_notice(server_factory):
    import httpx

    s = server_factory([]).start()  # the embedded default: NVML, else nothing
    log = open(s.log.name).read()
    nodes = s.cli_json("nodes")
    if "NVML unavailable" in log or "no NVIDIA GPU" in log:
        assert sum(n["gpus_total"] for n in nodes) == 0
        r = s.cli("submit", "--", "true", check=False)
        assert r.returncode == 2 and "gpus" in r.stderr
    metrics = f"http://127.0.0.1:{s.port}/metrics"
    assert httpx.get(metrics).status_code == 401  # per-tenant series: not for anyone who reaches the port
    scrape = (s.home / "metrics.token").read_text().strip()
    assert httpx.get(metrics, headers={"Authorization": f"Bearer {scrape}"}).status_code == 200

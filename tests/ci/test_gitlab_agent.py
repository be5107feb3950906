"""The allocation's agent: runs handed-over stage scripts (real bash, short), stops them on
request, ends on release or a lost heartbeat."""

from __future__ import annotations

import os

import pytest

from gpufleet.ci.gitlab.agent import HEARTBEAT_LOST, Agent
from gpufleet.ci.gitlab.files import AllocDir


@pytest.fixture
def alloc(tmp_path):
    a = AllocDir.of(tmp_path, "3")
    a.create()
    a.beat()
    return a


def test_a_stage_runs_with_the_allocation_env_and_its_exit_code_is_kept(alloc, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    stage = alloc.add_stage("step_script", b'echo "gpus=$CUDA_VISIBLE_DEVICES"; echo oops >&2; exit 9\n')
    Agent(alloc, heartbeat_timeout=60, grace_s=1).run_stage(stage)
    assert stage.exit_code() == 9
    assert stage.output.read_bytes() == b"gpus=4,5\noops\n"
    assert alloc.next_stage() is None


def test_a_stop_request_terminates_the_script_and_what_it_started(alloc, tmp_path):
    stop = alloc.path / "stages" / "001-step_script" / "stop"  # run got SIGTERM while the script runs
    stage = alloc.add_stage("step_script", f"sleep 30 & echo $! > {tmp_path}/child; touch {stop}; wait\n".encode())
    Agent(alloc, heartbeat_timeout=60, grace_s=1).run_stage(stage)
    assert stage.exit_code() == 128 + 15
    child = int((tmp_path / "child").read_text())
    assert not alive(child)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def test_a_script_that_ignores_term_is_killed_after_the_grace(alloc):
    stop = alloc.path / "stages" / "001-step_script" / "stop"
    stage = alloc.add_stage("step_script", f"trap '' TERM; touch {stop}; sleep 30\n".encode())
    Agent(alloc, heartbeat_timeout=60, grace_s=0.3).run_stage(stage)
    assert stage.exit_code() == 128 + 9


def test_the_agent_ends_on_release_and_on_a_lost_heartbeat(alloc, monkeypatch):
    monkeypatch.setenv("GPUFLEET_NODE", "desk-001")
    agent = Agent(alloc, heartbeat_timeout=60, grace_s=1)
    assert agent.why_end() is None
    alloc.release()
    assert agent.serve(rank=0) == 0
    assert alloc.ready()["node"] == "desk-001"
    (alloc.path / "release").unlink()
    os.utime(alloc.path / "heartbeat", (1, 1))  # the runner host vanished long ago
    assert agent.serve(rank=1) == HEARTBEAT_LOST
    agent.terminated = True
    assert agent.why_end() == 128 + 15


def test_only_rank_0_runs_stages(alloc):
    stage = alloc.add_stage("step_script", b"exit 0\n")
    alloc.release()
    assert Agent(alloc, 60, 1).serve(rank=1) == 0
    assert stage.exit_code() is None

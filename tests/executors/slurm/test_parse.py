"""Parsing of what Slurm 22.05 really printed (fixtures captured from scripts/dev-slurm.sh's cluster)
and of the newer OpenAPI shapes (v0.0.39+) that later Slurm releases print."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpufleet.domain import NodeState
from gpufleet.executors.base import Phase
from gpufleet.executors.slurm.parse import (
    decode_exit, expand_hostlist, gpu_indices, gpus_of_node, job_from_json, jobs_from_sacct, node_from_json,
    parse_gres, phase_of,
)

FIXTURES = Path(__file__).parent / "fixtures"


def squeue() -> dict[int, dict]:
    return {j["job_id"]: j for j in json.loads((FIXTURES / "squeue.json").read_text())["jobs"]}


def sinfo() -> dict[str, dict]:
    return {n["name"]: n for n in json.loads((FIXTURES / "sinfo_drain_down.json").read_text())["nodes"]}


@pytest.mark.parametrize("text, expected", [
    ("gpu01", ("gpu01",)),
    ("gpu[01-03]", ("gpu01", "gpu02", "gpu03")),
    ("gpu[01-02,07],login1", ("gpu01", "gpu02", "gpu07", "login1")),
    ("n[8-10]", ("n8", "n9", "n10")),
    ("rack[1-2]-n[1-2]", ("rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2")),
    ("", ()), ("None assigned", ()), (None, ()),
])
def test_expand_hostlist(text, expected):
    assert expand_hostlist(text) == expected


def test_gres_strings():
    assert [(e.model, e.count, e.sockets) for e in parse_gres("gpu:a100:8(S:0-1)")] == [("a100", 8, (0, 1))]
    assert gpu_indices("gpu:a100:5(IDX:0-1,4-6)") == (0, 1, 4, 5, 6)
    assert gpu_indices("gpu:h100:0(IDX:N/A)") == ()
    assert [(e.model, e.count) for e in parse_gres("gpu:4,mps:100")] == [("", 4)]
    assert [(e.model, e.count) for e in parse_gres("gres:gpu:l4:1")] == [("l4", 1)]
    two = parse_gres("gpu:a100:1(IDX:0),gpu:v100:2(IDX:1-2)")
    assert [(e.model, e.indices) for e in two] == [("a100", (0,)), ("v100", (1, 2))]


def test_gpus_split_into_socket_groups():
    gpus = gpus_of_node("gpu:a100:8(S:0-1)", 2)
    assert [g.group for g in gpus] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert {g.model for g in gpus} == {"a100"}
    assert [g.group for g in gpus_of_node("gpu:l4:2")] == [0, 0]
    mixed = gpus_of_node("gpu:a100:2(S:0),gpu:v100:2(S:1)")
    assert [(g.index, g.model, g.group) for g in mixed] == [(0, "a100", 0), (1, "a100", 0), (2, "v100", 1), (3, "v100", 1)]


def test_exit_codes_are_decoded_from_wait_status():
    assert decode_exit(768) == 3
    assert decode_exit(15) == 128 + 15  # killed by SIGTERM
    assert decode_exit(0) == 0


def test_jobs_from_real_squeue_json():
    jobs = {j: job_from_json(d) for j, d in squeue().items()}
    failed, foreign, timeout, running, pending = jobs[1], jobs[6], jobs[4], jobs[5], jobs[8]
    assert phase_of(failed) == (Phase.FAILED, 3, "NonZeroExitCode")
    assert phase_of(timeout)[:2] == (Phase.TIMEOUT, 143)
    assert phase_of(jobs[2])[0] is Phase.CANCELLED
    assert running.nodes == ("gpu01", "gpu02")
    assert running.gpus == {"gpu01": (0, 1), "gpu02": (0, 1)}
    assert running.comment.startswith("gpufleet-test:7:0:")
    assert phase_of(running)[0] is Phase.RUNNING and running.start_time
    assert foreign.gpus == {"gpu01": (4, 5, 6)}
    assert phase_of(pending) == (Phase.STARTING, None, "Slurm: PENDING (Resources)")


@pytest.mark.parametrize("state, phase, reason", [
    ("NODE_FAIL", Phase.LOST, "Slurm: NODE_FAIL (a node of the job failed)"),  # a fault: restarted
    ("OUT_OF_MEMORY", Phase.FAILED, "OUT_OF_MEMORY"),
    ("PREEMPTED", Phase.PREEMPTED, "Preempted in Slurm"),
    ("BOOT_FAIL", Phase.LOST, "Slurm: BOOT_FAIL (a node of the job failed to boot)"),
    ("DEADLINE", Phase.TIMEOUT, "TimeLimit"),
    ("COMPLETING", Phase.RUNNING, "Slurm: COMPLETING"),
    ("SUSPENDED", Phase.RUNNING, "Slurm: SUSPENDED"),
    ("REQUEUED", Phase.STARTING, "Slurm: REQUEUED"),
])
def test_other_states_map_to_phases(state, phase, reason):
    d = dict(squeue()[1], job_state=state, state_reason="None")
    assert phase_of(job_from_json(d))[0] is phase
    assert phase_of(job_from_json(d))[2] == reason


def test_cancel_at_exact_time_limit_reads_as_timeout():
    d = dict(squeue()[2], admin_comment="gpufleet:timeout")
    assert phase_of(job_from_json(d), "gpufleet:timeout")[0] is Phase.TIMEOUT
    assert phase_of(job_from_json(d))[0] is Phase.CANCELLED


def test_newer_openapi_shapes_are_read_too():
    """Slurm 23.02+ (v0.0.39+) prints states as lists and numbers as {set, number} objects."""
    d = dict(squeue()[1])
    d.update(job_state=["FAILED"], start_time={"set": True, "infinite": False, "number": 1795314079},
             end_time={"set": True, "number": 1795314081},
             exit_code={"status": ["EXITED"], "return_code": {"set": True, "number": 3}})
    job = job_from_json(d)
    assert (job.state, job.exit_code, job.start_time) == ("FAILED", 3, 1795314079.0)
    node = node_from_json(dict(sinfo()["gpu03"], state=["IDLE", "DRAIN"], state_flags=None), 0.0)
    assert node.state is NodeState.DRAIN


def test_sacct_text():
    jobs = {j.job_id: j for j in jobs_from_sacct((FIXTURES / "sacct.txt").read_text())}
    assert phase_of(jobs[1])[:2] == (Phase.FAILED, 3)
    assert phase_of(jobs[2])[:2] == (Phase.CANCELLED, 128 + 15)
    assert jobs[3].nodes == ()
    assert phase_of(jobs[4])[0] is Phase.TIMEOUT
    assert jobs[4].comment == "gpufleet-test:9:0:0" and jobs[1].end_time


def test_nodes_from_real_sinfo_json():
    nodes = {name: node_from_json(d, 5.0) for name, d in sinfo().items()}
    a100 = nodes["gpu01"]
    assert (a100.cpus, a100.mem_mb, a100.address, a100.state) == (16, 64000, "127.0.0.1", NodeState.UP)
    assert len(a100.gpus) == 8 and a100.gpu_model == "a100"
    assert a100.labels["rack"] == "r1" and a100.labels["nvlink"] == "true"
    assert a100.attribute("rack") == "r1"
    drained = nodes["gpu03"]
    assert (drained.state, drained.reason) == (NodeState.DRAIN, "bad fan (ops ticket 12)")
    down = nodes["gpu04"]
    assert (down.state, down.reason) == (NodeState.DOWN, "cable")
    assert [g.model for g in down.gpus] == ["l4", "l4"]

"""Resilient training on the real dev Slurm cluster (issue 17): a 2-node gang keeps a checkpoint in
$GPUFLEET_CHECKPOINT_DIR (the shared checkpoint folder); one of its nodes fails mid-run (Slurm marks
it DOWN and drained, as a node health check would: the job ends NODE_FAIL), gpufleet restarts the
gang as attempt 2 on the healthy nodes, which resumes from the checkpoint
(GPUFLEET_RESTART_COUNT=1) and succeeds; the faulty node stays drained."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.e2e.test_training_e2e import TRAIN, node_state

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]


def scontrol(*args: str) -> None:
    subprocess.run(["scontrol", *args], check=True, capture_output=True, text=True, timeout=30)


def test_a_faulted_gang_on_slurm_restarts_on_healthy_nodes_and_resumes_from_its_checkpoint(slurm_server):
    s = slurm_server
    job = s.submit("--nodes", "2", "--gpus", "1", "--gpu-model", "a100", "--", "sh", "-c", TRAIN)
    first = s.wait_state(job, {"RUNNING"}, timeout=60)
    s.wait_log(job, "rank 0 training", timeout=60)
    bad = first["nodes"][1]
    t0 = time.time()
    try:
        # the node fails: Slurm kills its jobs (NODE_FAIL); drained so it does not return to service
        scontrol("update", f"nodename={bad}", "state=down", "reason=gpufleet-e2e-fault")
        scontrol("update", f"nodename={bad}", "state=drain", "reason=gpufleet-e2e-fault")
        done = s.wait_state(job, {"SUCCEEDED", "FAILED", "LOST"}, timeout=120)
        one, two = done["attempts"]
        print(f"node fault -> attempt 2 running: {two['started_at'] - t0:.2f} s")
        assert done["state"] == "SUCCEEDED", done
        assert one["state"] == "PENDING" and "Restarting after a fault (1)" in one["reason"], one
        assert "NODE_FAIL" in one["reason"] or bad in one["reason"], one
        assert bad not in two["nodes"] and len(two["nodes"]) == 2, two
        log = s.cli("logs", str(job)).stdout
        assert log.strip().endswith("rank 0 resumed from step 41 RESTART_COUNT=1"), log
        assert node_state(s, bad) == "drain"
    finally:
        scontrol("update", f"nodename={bad}", "state=resume")

"""A priority preemption on the local engine, through the real server and CLI: the victim runs again
as a second attempt to SUCCEEDED, with its own log and GPUFLEET_RESTART_COUNT=1."""

from __future__ import annotations

import pytest

from tests.conftest import EXAMPLE_LAB

pytestmark = pytest.mark.e2e

# attempt 1 waits to be preempted; attempt 2 (a restart) finishes at once
VICTIM = ('echo "attempt $GPUFLEET_ATTEMPT GPUFLEET_RESTART_COUNT=$GPUFLEET_RESTART_COUNT"; '
          'if [ "$GPUFLEET_RESTART_COUNT" = 0 ]; then sleep 600; fi; echo done')


@pytest.fixture
def server(server_factory):
    return server_factory(["--inventory", str(EXAMPLE_LAB), "--policy", "priority"]).start()


def test_a_preempted_job_runs_again_as_attempt_2(server):
    # orin1 is the lab's only node with an orin GPU (one): the two jobs cannot both run
    low = server.submit("--gpu-model", "orin", "--gpus", "1", "--priority", "0", "--", "sh", "-c", VICTIM)
    server.wait_state(low, {"RUNNING"})
    first_run = server.wait_log(low, "GPUFLEET_RESTART_COUNT=0")
    high = server.submit("--gpu-model", "orin", "--gpus", "1", "--priority", "100", "--",
                         "sh", "-c", "echo urgent; sleep 1")
    server.wait_state(high, {"SUCCEEDED"}, timeout=60)
    done = server.wait_state(low, {"SUCCEEDED"}, timeout=60)
    assert done["restarts"] == 1
    one, two = done["attempts"]
    assert (one["n"], one["state"], two["n"], two["state"], two["exit_code"]) == (1, "PENDING", 2, "SUCCEEDED", 0)
    assert "reempt" in one["reason"] and one["nodes"] == two["nodes"] == ["orin1"]
    assert [e["attempt"] for e in done["events"] if "RUNNING" in (e["old"], e["new"])] == [1, 1, 2, 2]

    show = server.cli("show", str(low)).stdout
    assert "attempts" in show and "REQUEUED" in show and "SUCCEEDED" in show, show
    log1 = server.cli("logs", str(low), "--attempt", "1").stdout
    log2 = server.cli("logs", str(low), "--attempt", "2").stdout
    assert log1 == first_run == "attempt 1 GPUFLEET_RESTART_COUNT=0\n", log1
    assert log2 == "attempt 2 GPUFLEET_RESTART_COUNT=1\ndone\n", log2
    assert server.cli("logs", str(low)).stdout == log2  # the latest by default
    bad = server.cli("logs", str(low), "--attempt", "3", check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("error: attempt:"), bad.stderr
    assert server.cli("logs", str(high)).stdout == "urgent\n"

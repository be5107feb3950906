"""Resilient training on the local engine, through a real server and the CLI (issue 17): a 2-node
gang keeps a checkpoint in $GPUFLEET_CHECKPOINT_DIR; a GPU fault on one of its nodes (fake NVML
XID) drains that node and restarts the gang as attempt 2 on healthy nodes, which resumes from the
checkpoint (GPUFLEET_RESTART_COUNT=1) and succeeds. A gang whose heartbeat stops is restarted."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import ServerProc, fake_nvml_serve, stop_all_jobs

pytestmark = pytest.mark.e2e

INVENTORY = {
    "tenants": [{"name": "default", "quota": {"a100": 8}}],
    "nodes": [{"name": f"n{i}", "gpus": 1, "gpu_model": "a100"} for i in (1, 2, 3)],
}
# attempt 1: rank 0 saves step 41, both ranks train "forever"; a restart resumes and finishes
TRAIN = ('ck="$GPUFLEET_CHECKPOINT_DIR/step"; '
         'if [ "$GPUFLEET_RESTART_COUNT" -ge 1 ] && [ -f "$ck" ]; then '
         '  echo "rank $GPUFLEET_NODE_RANK resumed from step $(cat "$ck") RESTART_COUNT=$GPUFLEET_RESTART_COUNT"; exit 0; fi; '
         'if [ "$GPUFLEET_NODE_RANK" = 0 ]; then echo 41 > "$ck"; fi; '
         'echo "rank $GPUFLEET_NODE_RANK training"; sleep 600')


# the faulted node stays drained through a long burn-in (the healing is tests/e2e/test_ops_e2e.py)
KEEP_DRAINED = {"max_rounds": 1, "burn_in": {"command": ["sleep", "120"], "timeout": "5m"}}


@pytest.fixture
def server(tmp_path):
    s = fake_nvml_serve(tmp_path, INVENTORY, KEEP_DRAINED)
    yield s
    s.stop()
    stop_all_jobs(tmp_path)


def node_state(s: ServerProc, name: str) -> str:
    return next(n["state"] for n in s.cli_json("nodes") if n["name"] == name)


def test_a_faulted_gang_restarts_on_healthy_nodes_and_resumes_from_its_checkpoint(server):
    s = server
    job = s.submit("--nodes", "2", "--gpus", "1", "--", "sh", "-c", TRAIN)
    first = s.wait_state(job, {"RUNNING"})
    s.wait_log(job, "rank 0 training")
    bad = first["nodes"][1]
    t0 = time.time()
    s.cli("health", "inject", bad, "xid", "--gpu", "0", "--xid", "79")
    done = s.wait_state(job, {"SUCCEEDED", "FAILED"}, timeout=60)
    one, two = done["attempts"]
    print(f"node fault -> attempt 2 running: {two['started_at'] - t0:.2f} s")
    assert bad not in two["nodes"] and len(two["nodes"]) == 2
    assert one["state"] == "PENDING" and "Restarting after a fault (1)" in one["reason"], one
    assert bad in one["reason"] and two["state"] == "SUCCEEDED"
    log = s.cli("logs", str(job)).stdout
    assert log == "rank 0 resumed from step 41 RESTART_COUNT=1\n", log
    assert node_state(s, bad) == "drain"


def test_a_hung_gang_is_restarted_and_restart_on_failure_retries(server):
    s = server
    # attempt 1 prints once and hangs silently; attempt 2 finishes
    hung = s.submit("--nodes", "2", "--gpus", "1", "--heartbeat", "5s", "--", "sh", "-c",
                    'echo "attempt $GPUFLEET_ATTEMPT"; [ "$GPUFLEET_RESTART_COUNT" = 0 ] && sleep 600; true')
    done = s.wait_state(hung, {"SUCCEEDED"}, timeout=60)
    assert "heartbeat stopped" in done["attempts"][0]["reason"] and done["restarts"] == 1
    flaky = s.submit("--restart", "on-failure:1", "--", "sh", "-c", 'exit "$((1 - GPUFLEET_RESTART_COUNT))"')
    done = s.wait_state(flaky, {"SUCCEEDED"}, timeout=30)
    assert [a["exit_code"] for a in done["attempts"]] == [1, 0]
    bad = s.cli("submit", "--restart", "always", "--", "true", check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("error: restart:"), bad.stderr

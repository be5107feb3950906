"""A real `gpufleet serve` with two node pools: this host's (fake GPUs, the local engine) and the
labgrid farm's boards. Board jobs go to the boards through the same queue; kill -9 of the server
while a board job holds its place: the restarted server re-adopts the job, and the place is
released when it ends."""

from __future__ import annotations

import time

import pytest
import yaml

from tests.e2e.conftest import ServerProc

pytestmark = [pytest.mark.boards, pytest.mark.e2e]


@pytest.fixture
def server(farm, tmp_path):
    cfg = tmp_path / "server.yaml"
    cfg.write_text(yaml.safe_dump({"pools": {"boards": {"executor": "labgrid", **farm.options()}}}))
    s = ServerProc(tmp_path, None, ["--fake-gpus", "2", "--config", str(cfg)])
    yield s
    s.stop()


def test_board_and_host_jobs_side_by_side_and_kill9_while_a_board_is_locked(server, farm):
    server.start()
    nodes = {n["name"]: n for n in server.cli_json("nodes")}
    assert {"board1", "board2"} <= set(nodes) and len(nodes) >= 3  # the host's node(s) and the boards
    board = server.submit("--constraint", "pool=boards,board=agx-orin-devkit", "--",
                          "sh", "-c", "echo on $BOARD_NAME; sleep 4; echo done on $BOARD_NAME")
    host = server.submit("--", "sh", "-c", "echo on the host")
    assert server.wait_state(host, {"SUCCEEDED"})["nodes"][0] not in ("board1", "board2")
    server.wait_log(board, "on board1", timeout=20)
    assert farm.acquired("board1") is not None  # locked while the job runs
    server.kill9()
    server.start()  # a new server on the same home and database
    j = server.wait_state(board, {"SUCCEEDED", "FAILED", "LOST"}, timeout=30)
    assert j["state"] == "SUCCEEDED", j
    assert "done on board1" in server.cli("logs", str(board)).stdout
    deadline = time.monotonic() + 10
    while farm.acquired("board1") is not None:  # released by the job's end, never left locked
        assert time.monotonic() < deadline, "board1 is still acquired"
        time.sleep(0.2)

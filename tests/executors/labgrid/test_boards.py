"""Board jobs on the real labgrid farm of scripts/dev-boards.sh: SSH with the job's environment,
the serial console in the log, flashing, a board whose power-on fails is drained, cancel and time
limit stop the command on the board, the place is locked while the job runs and released after."""

from __future__ import annotations

import time

import pytest

from gpufleet.domain import NodeState
from gpufleet.domain.board import BoardPolicy
from gpufleet.executors.base import Phase
from gpufleet.executors.labgrid import create
from gpufleet.executors.labgrid.coordinator import holder
from tests.executors.labgrid.conftest import board_job, wait_end, wait_running

pytestmark = [pytest.mark.boards, pytest.mark.e2e]


@pytest.fixture
def executor(farm, tmp_path):
    ex = create(farm.options(), tmp_path)
    yield ex
    ex.close()


def test_a_job_runs_on_the_board_over_ssh_with_its_env_and_the_serial_console_in_its_log(executor, farm):
    job = board_job("board1", "sh", "-c", 'echo "on $BOARD_NAME job=$GPUFLEET_JOB_ID greeting=$GREETING";'
                    ' echo console-line-$GPUFLEET_JOB_ID > $BOARD_CONSOLE; sleep 0.5',
                    env={"GREETING": "hello board"}, board=BoardPolicy(power_cycle=True))
    job.handle = executor.launch(job)
    assert farm.acquired("board1") == holder("gpufleet")  # locked for the job
    obs = wait_end(executor, job)
    assert obs.phase is Phase.SUCCEEDED and obs.exit_code == 0
    log = executor.logs(job).data.decode()
    assert f"on board1 job={job.id} greeting=hello board" in log  # ran on the board, with its env
    assert "[serial] [board1] U-Boot" in log and "[serial] [board1] login: ready" in log  # the power-cycle's boot
    assert f"[serial] console-line-{job.id}" in log  # what the job wrote to the console, beside stdout
    assert farm.acquired("board1") is None  # released after
    assert executor.logs(job).complete


def test_a_flash_job_replaces_the_image_before_the_command(executor, farm, tmp_path):
    image = tmp_path / "l4t.img"
    image.write_text(f"l4t-r36.3-{time.time_ns()}\n")
    job = board_job("board1", "sh", "-c", "cat $BOARD_DIR/marker",
                    board=BoardPolicy(image=str(image), flash=True))
    executor.launch(job)
    obs = wait_end(executor, job)
    assert obs.phase is Phase.SUCCEEDED, executor.logs(job).data.decode()
    marker = image.read_text().strip()
    assert (farm.dir / "board1" / "marker").read_text().strip() == marker
    log = executor.logs(job).data.decode()
    assert f"flashed board1 with {marker}" in log and f"\n{marker}\n" in log, log  # the board booted the new image
    assert f"booting image: {marker}" in log, log  # on its console


def test_a_board_whose_power_on_fails_is_drained_with_the_reason(executor, farm):
    broken = farm.dir / "board2" / "power-broken"
    broken.touch()
    try:
        job = board_job("board2", "true", board=BoardPolicy(power_cycle=True))
        executor.launch(job)
        obs = wait_end(executor, job)
        assert obs.phase is Phase.FAILED and "power-on failed" in obs.reason
        node = {n.name: n for n in executor.nodes()}["board2"]
        assert node.state is NodeState.DRAIN and "power-on failed" in node.reason
        assert farm.acquired("board2") is None
        events, _ = executor.board_health.unread()  # and handed to the health loop's remediation
        assert [(e["place"], e["check"], e["ok"]) for e in events] == [("board2", "board", False)]
        assert events[0]["message"].startswith("power-on failed") and events[0]["facts"]["job"] == job.id
    finally:
        broken.unlink(missing_ok=True)
        executor.resume("board2")
        farm.power("board2", True)


def test_cancel_and_the_time_limit_stop_the_command_on_the_board(executor, farm):
    mark = f"/tmp/gpufleet-board-test-{time.time_ns()}"
    cancelled = board_job("board1", "sh", "-c", f"echo started; sleep 30; touch {mark}-c")
    limited = board_job("board2", "sh", "-c", f"echo started; sleep 30; touch {mark}-t", time_limit_s=3)
    executor.launch(cancelled)
    executor.launch(limited)
    wait_running(executor, cancelled)  # the command runs on the board (it printed)
    executor.cancel(cancelled)
    assert wait_end(executor, cancelled, 20).phase is Phase.CANCELLED
    obs = wait_end(executor, limited, 25)
    assert obs.phase is Phase.TIMEOUT and "time limit" in obs.reason
    import subprocess
    left = subprocess.run(["pgrep", "-f", f"touch {mark}"], capture_output=True, text=True).stdout
    assert left == "", f"the command still runs on a board: {left}"
    assert farm.acquired("board1") is None and farm.acquired("board2") is None


def test_a_place_left_locked_by_a_crashed_server_is_released_by_the_next_sync(executor, farm):
    from gpufleet.executors.labgrid.coordinator import Coordinator

    crashed = Coordinator(farm.coordinator, "gpufleet")  # acquired, then the server died before its runner
    try:
        crashed.acquire("board2")
        assert farm.acquired("board2") == holder("gpufleet")
    finally:
        crashed.close()
    nodes = {n.name: n for n in executor.nodes()}
    assert farm.acquired("board2") is None
    assert nodes["board2"].state is NodeState.UP


def test_a_failing_golden_check_drains_the_board_and_a_passing_one_brings_it_back(farm, tmp_path):
    bad = farm.dir / "board2" / "golden-fail"
    ex = create(farm.options(places=["board2"], golden_command=f"test ! -e {bad} && echo golden-ok",
                             golden_every_s=1, golden_power_cycle=False), tmp_path)

    def board2(want: NodeState, timeout: float = 25.0):
        deadline = time.monotonic() + timeout
        while True:
            node = {n.name: n for n in ex.nodes()}["board2"]
            if node.state is want and node.labels.get("board-health") != "checking":
                return node
            assert time.monotonic() < deadline, f"board2 is {node.state} ({node.reason}), not {want}"
            time.sleep(0.3)

    bad.touch()
    try:
        node = board2(NodeState.DRAIN)
        assert node.reason.startswith("board health: golden check failed")
        ex.drain("board1", "an admin's drain")  # not board health's: never lifted by a check
        bad.unlink()
        board2(NodeState.UP)
        assert ex._drains() == {"board1": "an admin's drain"}
        verdicts = [ok for _, ok in ex.golden._state("board2")["history"]]  # flakiness history per board
        assert verdicts[0] is False and verdicts[-1] is True, verdicts
    finally:
        bad.unlink(missing_ok=True)
        deadline = time.monotonic() + 20
        while ex.golden.running() and time.monotonic() < deadline:  # let a check under way finish
            ex.nodes()
            time.sleep(0.3)
        ex.close()
    assert farm.acquired("board2") is None

"""`gpufleet show` lists attempts, `gpufleet logs --attempt N` reads one run, `logs -f` follows a job
through a requeue onto its next attempt (real CLI processes, real HTTP, fake engine)."""

from __future__ import annotations

import os
import subprocess

from gpufleet.domain import JobState
from tests.cli.conftest import BIN
from tests.cli.test_cli_bad_input import one_error_line

OUTPUT = "GPUFLEET_FAKE_OUTPUT=run $GPUFLEET_ATTEMPT GPUFLEET_RESTART_COUNT=$GPUFLEET_RESTART_COUNT"


def submit(gf_server) -> int:
    r = gf_server.cli("submit", "-e", OUTPUT, "-e", "GPUFLEET_FAKE_RESTARTED_SECONDS=5", "--", "train")
    assert r.returncode == 0, r.stderr
    return int(r.stdout)


def requeue(server, job: int) -> None:
    server.ctx.store.set_action(job, "requeue", "preempted by job 99", JobState.RUNNING)
    server.loop.cycle()  # signals it
    server.loop.cycle()  # sees it stopped: requeued, placed again as attempt 2


def test_show_lists_attempts_and_logs_reads_each(gf_server):
    server = gf_server.server
    job = submit(gf_server)
    server.loop.cycle()
    requeue(server, job)
    server.executor.clock.advance(6)
    server.loop.cycle()
    show = gf_server.cli("show", str(job))
    assert show.returncode == 0, show.stderr
    text = show.stdout
    assert "attempts" in text and "REQUEUED" in text and "SUCCEEDED" in text, text
    assert "preempted by job 99" in text
    one = gf_server.cli("logs", str(job), "--attempt", "1")
    two = gf_server.cli("logs", str(job), "--attempt", "2")
    latest = gf_server.cli("logs", str(job))
    assert one.stdout == "run 1 GPUFLEET_RESTART_COUNT=0\n", one
    assert two.stdout == latest.stdout == "run 2 GPUFLEET_RESTART_COUNT=1\n", two
    one_error_line(gf_server.cli("logs", str(job), "--attempt", "3"), "attempt")
    one_error_line(gf_server.cli("logs", str(job), "--attempt", "0"), "attempt")


def test_logs_follow_goes_on_to_the_next_attempt(gf_server):
    server = gf_server.server
    job = submit(gf_server)
    server.loop.cycle()
    env = {**os.environ, "GPUFLEET_URL": gf_server.url, "GPUFLEET_TOKEN": server.admin_token}
    follow = subprocess.Popen([str(BIN), "logs", "-f", str(job)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert follow.stdout.readline() == "run 1 GPUFLEET_RESTART_COUNT=0\n"  # it follows attempt 1
        requeue(server, job)
        server.executor.clock.advance(6)
        server.loop.cycle()
        out, err = follow.communicate(timeout=30)
    finally:
        follow.kill()
    assert follow.returncode == 0, err
    assert out == "run 2 GPUFLEET_RESTART_COUNT=1\n"
    assert "--- attempt 2 ---" in err

"""Interactive sessions end to end (docs/sessions.md): the real `gpufleet shell/attach/exec` in a
real pty (pexpect) against a real `gpufleet serve` on the local engine: the pending reason shown
live, a command's output, the session's GPUs, resize, Ctrl-C, the exit code, ending the job."""

from __future__ import annotations

import re
import time

import pexpect
import pytest

from tests.e2e.conftest import BIN

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(server_factory):  # SQLite only: the relay does not depend on the database
    return server_factory().start()


@pytest.fixture(params=["sqlite"])
def db_url(request):
    return None


def spawn(server, *args: str, rows: int = 30, cols: int = 100) -> pexpect.spawn:
    return pexpect.spawn(str(BIN), list(args), env=server.env, timeout=20, dimensions=(rows, cols),
                         encoding="utf-8", codec_errors="replace")


def prompt(child: pexpect.spawn) -> None:
    """A prompt we can find whatever the account's shell is."""
    child.expect(r"[#$] $")
    child.sendline("PS1='gf''> '; export PS1")
    child.expect("gf> ")


def run(child: pexpect.spawn, line: str, pattern: str) -> re.Match:
    child.sendline(line)
    child.expect(pattern)
    m = child.match
    child.expect("gf> ")
    return m


def test_shell_waits_then_gives_a_terminal_with_the_jobs_gpus(server):
    blocker = server.submit("--gpu-model", "orin", "--name", "blocker", "--", "sleep", "60")
    server.wait_state(blocker, {"RUNNING"})
    child = spawn(server, "shell", "--gpu-model", "orin", "--time-limit", "5m")
    child.expect(r"job (\d+) submitted")
    job = int(child.match.group(1))
    child.expect(rf"job {job} pending: \S")  # the reason, live, while it waits for the blocker's GPU
    server.cli("cancel", str(blocker))
    child.expect(rf"job {job} is running on orin1")
    prompt(child)
    gpus = server.cli_json("show", str(job))["gpus"]["orin1"]
    m = run(child, 'echo "gpus=$CUDA_VISIBLE_DEVICES id=$GPUFLEET_JOB_ID"', r"gpus=([\d,]*) id=(\d+)\r\n")
    assert m.group(1) == ",".join(map(str, gpus)) and int(m.group(2)) == job
    run(child, "stty size", r"30 100\r\n")
    child.setwinsize(40, 120)  # SIGWINCH here -> a resize message -> TIOCSWINSZ there
    time.sleep(0.3)
    run(child, "stty size", r"40 120\r\n")
    child.sendline("sleep 30")
    time.sleep(0.5)
    started = time.monotonic()
    child.sendcontrol("c")  # reaches the remote sleep
    child.expect("gf> ")
    assert time.monotonic() - started < 5
    child.sendline("exit 3")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 3  # the shell's exit code is the CLI's
    ended = server.wait_state(job, {"CANCELLED"})  # leaving the shell ended the job
    assert "session ended" in ended["reason"]


def test_exec_and_attach_in_a_running_job(server):
    job = server.submit("--gpus", "1", "--gpu-model", "rtx4090", "--", "sleep", "60")
    server.wait_state(job, {"RUNNING"})
    deadline = time.monotonic() + 10
    while True:  # RUNNING in the store a moment before its process is up
        r = server.cli("exec", str(job), "--", "sh", "-c", 'echo "out-$GPUFLEET_JOB_ID"; exit 5', check=False)
        if r.returncode != 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.returncode == 5, r.stderr
    assert r.stdout == f"out-{job}\n"  # no terminal here: the output as written, no CRLF
    child = spawn(server, "attach", str(job))
    prompt(child)
    run(child, "echo $GPUFLEET_JOB_ID", rf"{job}\r\n")
    child.sendline("exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert server.cli_json("show", str(job))["state"] == "RUNNING"  # attach does not end the job
    assert server.cli("exec", "999999", "--", "true", check=False).returncode != 0
    server.cli("cancel", str(job))


def test_an_idle_shell_is_warned_then_ended(server):
    child = spawn(server, "shell", "--gpus", "1", "--idle-timeout", "2s")
    child.expect(r"job (\d+) is running")
    job = int(re.search(r"job (\d+)", child.after).group(1))
    child.expect("no input for 2s: this session ends in 1s unless you type something")
    child.expect("this session ends now")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 129
    assert "idle" in server.wait_state(job, {"CANCELLED"})["reason"]



@pytest.mark.slurm
def test_shell_on_slurm_is_an_srun_pty_in_the_allocation(slurm_server):
    child = spawn(slurm_server, "shell", "--gpus", "1", "--gpu-model", "l4", "--time-limit", "5m")
    child.expect(r"job (\d+) is running on gpu04", timeout=60)
    job = int(child.match.group(1))
    prompt(child)
    slurm_id = slurm_server.cli_json("show", str(job))["handle"].split(":")[-1]
    m = run(child, 'echo "slurm=$SLURM_JOB_ID gpus=$CUDA_VISIBLE_DEVICES id=$GPUFLEET_JOB_ID"',
            r"slurm=(\d+) gpus=(\d[\d,]*) id=(\d+)\r\n")
    assert (m.group(1), int(m.group(3))) == (slurm_id, job)  # a step of the job's allocation, its GPU
    child.sendline("sleep 30")
    time.sleep(1.0)
    started = time.monotonic()
    child.sendcontrol("c")
    child.expect("gf> ")
    assert time.monotonic() - started < 10
    child.sendline("exit 3")
    child.expect(pexpect.EOF, timeout=30)
    child.close()
    assert child.exitstatus == 3
    slurm_server.wait_state(job, {"CANCELLED"}, timeout=60)

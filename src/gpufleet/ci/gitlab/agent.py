"""The allocation's program: `python -m gpufleet.ci.gitlab.agent --dir DIR`. It is the command of
the gpufleet job that `gpufleet ci gitlab prepare` submits, so it runs on the job's node with the
job's GPUs and rank environment (CUDA_VISIBLE_DEVICES, ...), and holds them until it ends:

- rank 0 runs each stage script that `run` drops into DIR/stages/ (one at a time, in order) with
  `bash`, in its own process group, stdout and stderr into the stage's output.log, and records its
  exit code; other ranks of a multi-node allocation only hold their node's GPUs;
- it ends with 0 when cleanup writes DIR/release, and with 3 when the runner's heartbeat is older
  than --heartbeat-timeout (the runner host vanished: the allocation is reaped, not left holding
  GPUs until its time limit);
- on SIGTERM (a cancel, the time limit) it stops the running script (TERM, grace, KILL) first.

Standard library only (files.py): it must start fast and depend on nothing on the node.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from gpufleet.ci.gitlab.files import AllocDir, StageDir

POLL_S = 0.1
HEARTBEAT_LOST = 3


class Agent:
    def __init__(self, alloc: AllocDir, heartbeat_timeout: float, grace_s: float, shell: str = "bash"):
        self.alloc, self.heartbeat_timeout, self.grace_s, self.shell = alloc, heartbeat_timeout, grace_s, shell
        self.terminated = False

    def say(self, text: str) -> None:
        print(f"gpufleet-agent: {text}", flush=True)

    def why_end(self) -> int | None:
        """The agent's exit code when it must end now, else None."""
        if self.terminated:
            return 128 + signal.SIGTERM
        if self.alloc.released():
            return 0
        if self.alloc.heartbeat_age() > self.heartbeat_timeout:
            self.say(f"no heartbeat from the runner for {self.heartbeat_timeout:g}s: releasing the allocation")
            return HEARTBEAT_LOST
        return None

    def serve(self, rank: int) -> int:
        if rank == 0:
            self.alloc.write_ready({"job_id": os.environ.get("GPUFLEET_JOB_ID"), "pid": os.getpid(),
                                    "node": os.environ.get("GPUFLEET_NODE"),
                                    "gpus": os.environ.get("CUDA_VISIBLE_DEVICES", "")})
        self.say(f"rank {rank} holding GPUs [{os.environ.get('CUDA_VISIBLE_DEVICES', '')}] "
                 f"on {os.environ.get('GPUFLEET_NODE', '?')}")
        while True:
            code = self.why_end()
            if code is not None:
                return code
            stage = self.alloc.next_stage() if rank == 0 else None
            if stage is not None:
                self.run_stage(stage)
            else:
                time.sleep(POLL_S)

    def run_stage(self, stage: StageDir) -> None:
        self.say(f"stage {stage.name}: started")
        with open(stage.output, "ab", buffering=0) as out:
            try:
                proc = subprocess.Popen([self.shell, str(stage.script)], stdin=subprocess.DEVNULL,
                                        stdout=out, stderr=subprocess.STDOUT, process_group=0)
            except OSError as e:
                out.write(f"gpufleet: cannot start {self.shell}: {e}\n".encode())
                stage.set_exit_code(127)
                return
            code = self.wait(proc, stage)
        stage.set_exit_code(code)
        self.say(f"stage {stage.name}: exit {code}")

    def wait(self, proc: subprocess.Popen, stage: StageDir) -> int:
        kill_at = None
        while proc.poll() is None:
            if kill_at is None and (stage.stopped() or self.why_end() is not None):
                _killpg(proc.pid, signal.SIGTERM)
                kill_at = time.monotonic() + self.grace_s
            elif kill_at is not None and time.monotonic() >= kill_at:
                _killpg(proc.pid, signal.SIGKILL)
            time.sleep(POLL_S)
        _killpg(proc.pid, signal.SIGKILL)  # what the script left behind in its group
        rc = proc.returncode
        return 128 - rc if rc < 0 else rc


def _killpg(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gpufleet-agent")
    p.add_argument("--dir", required=True, help="the allocation directory")
    p.add_argument("--heartbeat-timeout", type=float, default=120.0)
    p.add_argument("--grace", type=float, default=5.0, help="seconds between TERM and KILL of a script")
    p.add_argument("--shell", default="bash")
    a = p.parse_args(argv)
    agent = Agent(AllocDir(Path(a.dir)), a.heartbeat_timeout, a.grace, a.shell)

    def on_term(signum, frame):
        agent.terminated = True

    signal.signal(signal.SIGTERM, on_term)
    return agent.serve(int(os.environ.get("NODE_RANK", "0") or 0))


if __name__ == "__main__":
    sys.exit(main())

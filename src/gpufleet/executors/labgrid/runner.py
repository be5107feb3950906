"""One board job's life, in its own process (`python -m gpufleet.executors.labgrid.runner RUN_DIR`),
detached from the server so that a server restart (or kill -9) leaves it running; the restarted
server re-adopts it from RUN_DIR.

The place is already acquired by the server (as gpufleet's identity). Through labgrid's own
drivers on a RemotePlace: 1. serial capture (SerialDriver on the place's NetworkSerialPort) into
the job's log, lines prefixed "[serial] "  2. optional flash (power off, the configured flashing
command, power on)  3. optional power-cycle (NetworkPowerDriver); a failing power-on ends the job
with `drain` set: the server drains the board with the reason  4. wait for SSH (SSHDriver's
control master)  5. the command over that SSH connection with the job's environment; the time
limit and a cancel (SIGTERM to this process) kill it on the board  6. power off if configured
7. release the place, then write status.json (what `poll` reads).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

TERM_EXIT = 128 + 15


class Output:
    """The job's log: the command's output and the serial console, line by line."""

    def __init__(self, path: Path):
        self.f = open(path, "ab", buffering=0)
        self.lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self.lock:
            self.f.write(data)

    def note(self, text: str) -> None:
        self.write(f"[gpufleet] {text}\n".encode())


class Runner:
    def __init__(self, run_dir: Path):
        self.dir = run_dir
        self.job = json.loads((run_dir / "job.json").read_text())
        self.out = Output(run_dir / "output.log")
        self.cancelled = threading.Event()
        self.proc: subprocess.Popen | None = None
        self.target = None
        self.power = None
        self.ssh = None

    # labgrid ------------------------------------------------------------------------------------
    def _target(self):
        os.environ["LG_COORDINATOR"] = self.job["coordinator"]
        os.environ["LG_USERNAME"] = self.job["identity"]
        from labgrid import Target
        from labgrid.resource.remote import RemotePlace

        deadline = time.monotonic() + 10
        while True:
            self.target = Target(self.job["place"])
            try:
                RemotePlace(self.target, name=self.job["place"])
                return self.target
            except Exception as e:  # the session's view may trail the server's acquire briefly
                if "not acquired" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
                from labgrid.resource.remote import RemotePlaceManager

                session = RemotePlaceManager.get().session
                if session is not None:  # let it take in the coordinator's updates
                    session.loop.run_until_complete(session.sync_with_coordinator())

    def _has(self, cls: str) -> bool:
        return any(type(r).__name__ == cls for r in self.target.resources)

    def _power(self):
        if self.power is None:
            from labgrid.driver import NetworkPowerDriver

            self.power = NetworkPowerDriver(self.target, name=None)
            self.target.activate(self.power)
        return self.power

    def _serial(self) -> None:
        from labgrid.driver import SerialDriver

        drv = SerialDriver(self.target, name=None)
        self.target.activate(drv)
        log = open(self.dir / "serial.log", "ab", buffering=0)

        def pump() -> None:
            pending = b""
            while True:
                try:
                    data = drv.read(size=4096, timeout=0.2)
                except Exception:
                    data = b""
                    if self.cancelled.is_set():
                        return
                    time.sleep(0.2)
                if not data:
                    continue
                log.write(data)
                pending += data.replace(b"\r", b"")
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self.out.write(b"[serial] " + line + b"\n")

        threading.Thread(target=pump, name="serial", daemon=True).start()

    # steps ----------------------------------------------------------------------------------------
    def run(self) -> dict:
        self._target()
        if self.job.get("serial", True) and self._has("NetworkSerialPort"):
            self._serial()
        board = self.job.get("board") or {}
        if board.get("flash"):
            status = self._flash(board)
            if status:
                return status
        elif self._cycle(board) and self._has("NetworkPowerPort"):
            status = self._power_on(cycle=True)
            if status:
                return status
        elif self._has("NetworkPowerPort") and not self._power().get():
            status = self._power_on(cycle=False)
            if status:
                return status
        if self.cancelled.is_set():
            return {"phase": "cancelled", "exit_code": TERM_EXIT, "reason": "cancelled before the command started"}
        status = self._wait_ssh()
        return status or self._command()

    def _cycle(self, board: dict) -> bool:
        """The spec's board.power_cycle, else the farm's default."""
        asked = board.get("power_cycle")
        return bool(self.job.get("power_cycle") if asked is None else asked)

    def _power_on(self, cycle: bool) -> dict | None:
        try:
            if cycle:
                self.out.note("power-cycling the board")
                self._power().off()
            self._power().on()
            return None
        except Exception as e:
            why = f"power-on failed: {e}"
            self.out.note(why)
            return {"phase": "failed", "exit_code": None, "reason": why, "drain": why}

    def _flash(self, board: dict) -> dict | None:
        cmd = self.job.get("flash_command")
        if not cmd:
            return {"phase": "failed", "exit_code": None,
                    "reason": "board.flash asked, but this farm has no flash_command configured"}
        if self._has("NetworkPowerPort"):
            try:
                self._power().off()
            except Exception as e:
                return {"phase": "failed", "exit_code": None, "reason": f"power-off failed: {e}", "drain": f"power-off failed: {e}"}
        line = cmd.format(place=shlex.quote(self.job["place"]), image=shlex.quote(board.get("image", "")),
                          board=shlex.quote(self.job.get("tags", {}).get("board", "")))
        self.out.note(f"flashing {board.get('image', '')}")
        try:
            # labgrid-client in the flash script acts on the place as gpufleet (same host, identity)
            env = {**os.environ, "LG_COORDINATOR": self.job["coordinator"], "LG_PLACE": self.job["place"],
                   "LG_USERNAME": self.job["identity"], "GPUFLEET_BOARD_IMAGE": board.get("image", "")}
            r = subprocess.run(["sh", "-c", line], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=self.job.get("flash_timeout_s", 1800), env=env)
        except subprocess.TimeoutExpired:
            return {"phase": "failed", "exit_code": None, "reason": "flash timed out", "drain": "flash timed out"}
        self.out.write(r.stdout)
        if r.returncode != 0:
            why = f"flash failed (exit {r.returncode})"
            return {"phase": "failed", "exit_code": None, "reason": why, "drain": why}
        return self._power_on(cycle=False) if self._has("NetworkPowerPort") else None

    def _wait_ssh(self) -> dict | None:
        from labgrid.driver import SSHDriver

        self.ssh = SSHDriver(self.target, name=None, keyfile=self.job.get("ssh_key", ""),
                             connection_timeout=float(self.job.get("ssh_timeout_s", 60)))
        try:
            self.target.activate(self.ssh)
            return None
        except Exception as e:
            why = f"board did not answer SSH: {e}"
            self.out.note(why)
            return {"phase": "failed", "exit_code": None, "reason": why, "drain": why}

    def _ssh_argv(self, remote: str) -> list[str]:
        ns = self.ssh.networkservice
        return ["ssh", "-x", *self.ssh.ssh_prefix, "-p", str(ns.port), "-l", self.ssh._get_username(),
                ns.address, remote]

    def _command(self) -> dict:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.job["env"].items())
        inner = " ".join(shlex.quote(a) for a in self.job["command"])
        pidfile = f"/tmp/gpufleet-job-{self.job['job_id']}-a{self.job['attempt']}.pid"
        self.pidfile = pidfile
        # sshd makes the remote shell a session (and process group) leader: its pid is the group
        remote = f"echo $$ > {pidfile}; exec env {env} sh -c {shlex.quote(inner)}"
        self.proc = subprocess.Popen(self._ssh_argv(remote), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        pump = threading.Thread(target=self._pump, daemon=True)
        pump.start()
        limit = self.job.get("time_limit_s")
        deadline = time.monotonic() + limit if limit else None
        while self.proc.poll() is None:
            if self.cancelled.is_set():
                self._kill_remote()
                return {"phase": "cancelled", "exit_code": TERM_EXIT, "reason": "cancelled"}
            if deadline is not None and time.monotonic() >= deadline:
                self._kill_remote()
                return {"phase": "timeout", "exit_code": TERM_EXIT, "reason": f"time limit ({limit}s) reached"}
            time.sleep(0.1)
        pump.join(5)
        code = self.proc.returncode
        if code == 255:
            return {"phase": "failed", "exit_code": code, "reason": "the SSH connection to the board failed"}
        return {"phase": "succeeded" if code == 0 else "failed", "exit_code": code,
                "reason": "exited with 0" if code == 0 else f"exited with {code}"}

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in iter(self.proc.stdout.readline, b""):
            self.out.write(line)

    def _kill_remote(self) -> None:
        kill = f"kill -TERM -- -$(cat {self.pidfile}) 2>/dev/null; sleep 1; kill -KILL -- -$(cat {self.pidfile}) 2>/dev/null; rm -f {self.pidfile}"
        try:
            subprocess.run(self._ssh_argv(kill), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=15)
        except Exception:
            pass
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()

    def finish(self) -> None:
        if self.job.get("power_off_after") and self.target is not None and self._has("NetworkPowerPort"):
            try:
                self._power().off()
            except Exception as e:
                self.out.note(f"power-off after the job failed: {e}")
        try:
            if self.target is not None:
                self.target.deactivate_all_drivers()
        except Exception:
            pass


def release(job: dict) -> None:
    """Release the place through the RemotePlace's own session (the coordinator takes one stream
    per connection, and gRPC shares one connection per process)."""
    from labgrid.remote.generated import labgrid_coordinator_pb2 as pb
    from labgrid.resource.remote import RemotePlaceManager

    from gpufleet.executors.labgrid.coordinator import Coordinator, holder

    session = RemotePlaceManager.get().session
    if session is None:  # the target never came up: a session of our own
        c = Coordinator(job["coordinator"], job["identity"])
        try:
            c.release(job["place"])
        finally:
            c.close()
        return

    async def go() -> None:
        await session.sync_with_coordinator()
        p = session.places.get(job["place"])
        if p is not None and p.acquired == holder(job["identity"]):
            await session.stub.ReleasePlace(pb.ReleasePlaceRequest(placename=p.name, fromuser=p.acquired))
            await session.sync_with_coordinator()

    session.loop.run_until_complete(go())


def main(run_dir: str) -> int:
    d = Path(run_dir)
    r = Runner(d)
    signal.signal(signal.SIGTERM, lambda *_: r.cancelled.set())
    try:
        status = r.run()
    except Exception as e:
        status = {"phase": "failed", "exit_code": None, "reason": f"board job failed: {e}"}
        r.out.note(status["reason"])
    if r.cancelled.is_set() and status.get("phase") not in ("cancelled", "timeout"):
        status = {**status, "phase": "cancelled", "reason": "cancelled"}
    r.finish()
    try:
        release(r.job)
        status["released"] = True
    except Exception as e:  # the server releases it when it sees this run over
        r.out.note(f"could not release place {r.job['place']}: {e}")
    status["at"] = time.time()
    tmp = d / "status.json.tmp"
    tmp.write_text(json.dumps(status))
    os.replace(tmp, d / "status.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

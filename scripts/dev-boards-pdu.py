#!/usr/bin/env python3
"""The dev board farm's power distribution unit (scripts/dev-boards.sh): labgrid's `simplerest`
NetworkPowerPort model talks to it.

    GET /relay/<board>/1   power on:  the board "boots" (banner on its serial console, sshd starts)
    GET /relay/<board>/0   power off: sshd stops
    GET /relay/<board>     "1" when the board is on, else "0"

A board whose directory holds a file `power-broken` fails to power on (HTTP 500), as a dead
supply would.

It is the farm's serial console server too (what ser2net is on a real exporter): per board a pty
whose slave is linked at <board>/console (the board writes its console there) and whose master is
served raw on TCP <serial port> (labgrid's NetworkSerialPort, protocol raw); with no client
connected the console's output is dropped, so a board never blocks on its console.

Usage: dev-boards-pdu.py <boards dir> <pdu port> [<board>=<serial port> ...]
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
import threading
import tty
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BOARDS = Path(sys.argv[1])


def pid_of(board: Path) -> int | None:
    try:
        pid = int((board / "sshd.pid").read_text().split()[0])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, IndexError):
        return None


def console(board: Path, line: str) -> None:
    """Write one line to the board's serial console (the pty); never block the PDU on it."""
    try:
        fd = os.open(board / "console", os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY)
        try:
            os.write(fd, (line + "\r\n").encode())
        finally:
            os.close(fd)
    except OSError:
        pass


def power_on(board: Path) -> None:
    if (board / "power-broken").exists():
        raise RuntimeError("power supply fault")
    if pid_of(board) is not None:
        return
    image = (board / "marker").read_text().strip() if (board / "marker").exists() else "none"
    console(board, f"[{board.name}] U-Boot 2024.01 (gpufleet dev board)")
    console(board, f"[{board.name}] booting image: {image}")
    subprocess.run(["/usr/sbin/sshd", "-f", str(board / "sshd_config"), "-E", str(board / "sshd.log")],
                   check=True)
    for _ in range(50):
        if pid_of(board) is not None:
            break
        time.sleep(0.02)
    console(board, f"[{board.name}] login: ready")


def power_off(board: Path) -> None:
    pid = pid_of(board)
    if pid is not None:
        console(board, f"[{board.name}] reboot: Power down")
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if pid_of(board) is None:
                break
            time.sleep(0.02)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        parts = [p for p in self.path.split("/") if p]
        if len(parts) < 2 or parts[0] != "relay" or not (BOARDS / parts[1]).is_dir():
            return self._reply(404, "no such relay")
        board = BOARDS / parts[1]
        try:
            if len(parts) == 2:
                return self._reply(200, "1" if pid_of(board) is not None else "0")
            (power_on if parts[2] == "1" else power_off)(board)
            return self._reply(200, parts[2])
        except Exception as e:
            return self._reply(500, f"{board.name}: {e}")

    def _reply(self, code: int, text: str) -> None:
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        return None


def serial_server(board: Path, port: int) -> None:
    """The board's console pty, relayed to whoever is connected to 127.0.0.1:<port>."""
    master, slave = os.openpty()
    tty.setraw(slave)  # the slave stays open here: writers that come and go never EOF the master
    link = board / "console"
    tmp = board / "console.new"
    tmp.unlink(missing_ok=True)
    os.symlink(os.ttyname(slave), tmp)
    os.replace(tmp, link)
    listener = socket.create_server(("127.0.0.1", port), reuse_port=False)
    clients: list[socket.socket] = []
    while True:
        ready, _, _ = select.select([listener, master, *clients], [], [])
        # a new client first: the console output that woke us up with it is its, too
        for r in sorted(ready, key=lambda x: x is not listener):
            if r is listener:
                c, _ = listener.accept()
                c.setblocking(False)
                clients.append(c)
            elif r is master:
                data = os.read(master, 4096)
                for c in list(clients):
                    try:
                        c.send(data)
                    except (BlockingIOError, OSError):
                        pass  # a slow or gone reader loses console output, as on a real line
            else:
                try:
                    data = r.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    clients.remove(r)
                    r.close()
                else:
                    os.write(master, data)  # typed into the console: the board's shell would read it


if __name__ == "__main__":
    for arg in sys.argv[3:]:
        name, serial_port = arg.split("=")
        threading.Thread(target=serial_server, args=(BOARDS / name, int(serial_port)), daemon=True).start()
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Handler).serve_forever()

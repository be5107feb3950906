"""The per-rank shim of the local executor: a tiny detached supervisor of one user command.

    python -I -S shim.py RANK_DIR TIME_LIMIT_S GRACE_S WORKDIR -- COMMAND ARGS...
    (also runnable as `python -m gpufleet.executors.local.shim ...`)

It is started in its own session (so it survives a kill -9 of the server) and:
  1. starts COMMAND in its own process group, stdout+stderr appended to RANK_DIR/output.log,
     env = exactly the NUL-separated K=V pairs of RANK_DIR/launch.env (nothing inherited), cwd =
     WORKDIR; as the account in RANK_DIR/run_as when that file exists (a root server: the shim
     stays root, the child drops to the job owner's uid/gid/groups before exec);
  2. atomically writes RANK_DIR/pid.json {shim_pid, shim_start, child_pid, child_pgid, child_start,
     started_at} (start times: field 22 of /proc/<pid>/stat, so a reused pid is never mistaken);
  3. enforces TIME_LIMIT_S (0 = none): TERM to the child's process group, GRACE_S, then KILL;
  4. on SIGTERM/SIGINT/SIGHUP (a stop: cancel, gang stop...) does the same TERM/grace/KILL; the
     reason is the word in RANK_DIR/stop ("cancel" when there is no such file);
  5. when the child exits, KILLs what is left of its process group, then atomically writes
     RANK_DIR/exit.json {exit_code (128+signal for signals), timed_out, cancelled, stopped_by,
     started_at, ended_at, error}.

A container job (RANK_DIR/container exists, see executors/local/container.py) is the same with
COMMAND = `podman run --rm --name NAME ... IMAGE CMD`: podman is the child, in the foreground, and
forwards TERM to the container (--init: its pid 1 passes it on). Differences: with `run_as`, the
bind-mount sources the user named are first checked in a grandchild that has dropped to the
user's account (the user must be able to reach them himself), then podman runs as root and starts
the container as that account (`--user`, no capabilities, no-new-privileges); at KILL time and
when the child has ended, `podman rm -f NAME` makes sure no container outlives the shim (conmon,
not podman, is the container's parent); a podman failure (exit 125-127 with an `Error:` line, e.g.
an image that cannot be pulled) becomes the rank's error.

`shim.py --session RANK_DIR WORKDIR -- COMMAND ...` (see executors/local/sessions.py) is the other
use: one more process in a running rank's allocation (`gpufleet shell/attach/exec`), with the
rank's environment (launch.env), as its account (run_as), in its workdir; started by the server
in a new session with a pty as stdin/stdout/stderr, it takes that pty as its controlling terminal
and execs COMMAND (an empty one: the account's $SHELL). In a container job it execs
`podman exec -it NAME COMMAND` instead (the container's user, environment and GPUs).

Start latency matters (it is submit->running latency), so this module imports only builtin /
C modules: no json, no subprocess, no enum-based `signal` wrapper, nothing of gpufleet.
"""

import os
import select
import sys
import time

try:  # the C module: `signal` itself pulls in enum (several ms of start-up)
    import _signal as sig
except ImportError:  # pragma: no cover - other interpreters
    import signal as sig  # type: ignore[no-redef]

STOP_SIGNALS = (sig.SIGTERM, sig.SIGINT, sig.SIGHUP)
RESET_SIGNALS = tuple(getattr(sig, n) for n in ("SIGCHLD", "SIGPIPE", "SIGXFSZ") if hasattr(sig, n))
MAX_SLEEP_S = 5.0  # safety net: re-check even if a wake-up were missed


def proc_start(pid):
    """Start time of `pid` in clock ticks since boot (None where there is no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return int(data[data.rindex(b")") + 2:].split()[19])


def _json_value(v):
    if v is None:
        return "null"
    if v is True or v is False:
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    out = []
    for c in str(v):
        if c in '"\\' or ord(c) < 0x20:
            out.append("\\u%04x" % ord(c))
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def write_json(path, obj):
    """Atomic write of a flat dict as JSON (tmp + rename)."""
    text = "{" + ", ".join(f'"{k}": {_json_value(v)}' for k, v in obj.items()) + "}\n"
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def read_stop(rank_dir):
    """The stop reason written by the executor, None when there is none."""
    try:
        with open(os.path.join(rank_dir, "stop")) as f:
            return f.read().strip() or "cancel"
    except OSError:
        return None


def _read_pairs(path):
    """NUL-separated K=V pairs of `path` as a dict; None when there is no such file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    out = {}
    for item in data.split(b"\0"):
        if item:
            k, _, v = item.decode("utf-8", "surrogateescape").partition("=")
            out[k] = v
    return out


def read_env(rank_dir):
    """The command's whole environment: launch.env as the executor built it. Nothing of the shim's
    own environment (the server's) is passed on."""
    return _read_pairs(os.path.join(rank_dir, "launch.env")) or {}


def read_run_as(rank_dir):
    """The account to run the command as (written by a root server), None: stay who we are.
    {"uid", "gid", "groups": [..], "name", "home", "cwd_first": bool}."""
    d = _read_pairs(os.path.join(rank_dir, "run_as"))
    if d is None:
        return None
    return {"uid": int(d["uid"]), "gid": int(d["gid"]), "name": d.get("name", ""),
            "groups": [int(g) for g in d.get("groups", "").split(",") if g],
            "home": d.get("home", "/"), "cwd_first": d.get("cwd_first") == "1"}


def read_container(rank_dir):
    """The container of this rank (a container job), None for a bare command.
    {"podman": path, "name": container name, "ro": [paths], "rw": [paths]}: the paths are the
    bind-mount sources the user named, checked with the user's own rights before podman runs."""
    d = _read_pairs(os.path.join(rank_dir, "container"))
    if d is None:
        return None
    return {"podman": d.get("podman", "podman"), "name": d["name"],
            "ro": [p for p in d.get("ro", "").split("\n") if p],
            "rw": [p for p in d.get("rw", "").split("\n") if p]}


def check_paths_as(run_as, container):
    """In a grandchild that has dropped to `run_as`: can the user reach every mount source
    (read, and write where mounted read-write)? Raises OSError naming the first that fails."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            drop_privileges(run_as)
            for path, write in [(p, False) for p in container["ro"]] + [(p, True) for p in container["rw"]]:
                try:
                    st = os.stat(path)
                except OSError as e:
                    raise RuntimeError(f"{path}: {e.strerror}") from None
                mode = os.R_OK | (os.W_OK if write else 0) | (os.X_OK if (st.st_mode & 0o170000) == 0o040000 else 0)
                if not os.access(path, mode):
                    raise RuntimeError(f"{path}: not {'writable' if write else 'readable'}")
        except BaseException as e:  # noqa: BLE001
            os.write(w, str(e).encode(errors="replace") or b"error")
        finally:
            os._exit(0)
    os.close(w)
    msg = b""
    while True:
        b = os.read(r, 4096)
        if not b:
            break
        msg += b
    os.close(r)
    os.waitpid(pid, 0)
    if msg:
        raise RuntimeError("mount source " + msg.decode(errors="replace"))


def run_podman(container, *args):
    """`podman ARGS` (as the shim: root on a root server), output to the shim's log; waits."""
    pid = os.fork()
    if pid == 0:
        try:
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            execvpe([container["podman"], *args], {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"})
        finally:
            os._exit(127)
    try:
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    except ChildProcessError:
        return None


def podman_error(rank_dir, code, cmd):
    """(exit code, podman's own reason) when it failed before or instead of the command: its last
    `Error:` line with exit 125 (podman: e.g. the image could not be pulled), 126/127 (cannot
    invoke), or the init's (catatonit) when the command could not be executed (then 127 or 126,
    as a shell gives). None: the command ran."""
    if code not in (1, 125, 126, 127):
        return None
    try:
        with open(os.path.join(rank_dir, "output.log"), "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 4096))
            tail = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return None
    last = tail[-1] if tail else ""
    if code != 1 and last.startswith("Error: "):
        return code, "container: " + last[7:][:500]
    if code == 1 and last.startswith("ERROR (catatonit") and "failed to exec pid1: " in last:
        why = last.split("failed to exec pid1: ", 1)[1][:200]
        arg0 = cmd[cmd.index("--") + 2] if "--" in cmd and len(cmd) > cmd.index("--") + 2 else "?"
        return 126 if "ermission" in why else 127, f"container: cannot run {arg0!r}: {why}"
    return None


def drop_privileges(run_as):
    """setgroups, setgid, setuid, in that order (all of real, effective and saved ids)."""
    uid, gid = run_as["uid"], run_as["gid"]
    os.setgroups(run_as["groups"] or [gid])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise OSError(1, f"could not become uid {uid} gid {gid}")
    if uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            pass
        else:
            raise OSError(1, "privileges could be regained after dropping them")


def execvpe(cmd, env):
    """os.execvpe without its lazy `import warnings`: after a drop of privileges the interpreter's
    own library may be out of reach (e.g. under /root), so nothing may be imported here."""
    if "/" in cmd[0]:
        os.execve(cmd[0], cmd, env)
    error = None
    for d in (env.get("PATH") or "/usr/bin:/bin").split(":"):
        try:
            os.execve(os.path.join(d or ".", cmd[0]), cmd, env)
        except (FileNotFoundError, NotADirectoryError) as e:
            error = error or e
        except OSError as e:  # e.g. EACCES: remembered, the search goes on like execvp's
            error = e
    raise error or FileNotFoundError(2, "No such file or directory")


def spawn(cmd, env, cwd, log_fd, run_as=None, container=None):
    """fork+exec `cmd` in a new process group, as `run_as` (see read_run_as) when given: the log
    is handed to that account, the child drops privileges before exec (the shim stays root to
    supervise). The default workdir (`cwd_first`, the executor's own directory) is entered before
    the drop, a workdir the user named only after it, with the user's own rights. A container
    (see read_container): the mount sources are checked as `run_as`, podman itself is not dropped.
    Returns (pid, None) or (None, (exit_code, error))."""
    if run_as is not None:
        os.fchown(log_fd, run_as["uid"], run_as["gid"])
        os.fchmod(log_fd, 0o600)
    first = run_as is not None and run_as["cwd_first"]
    r, w = os.pipe()  # close-on-exec: EOF means exec succeeded
    pid = os.fork()
    if pid == 0:  # child
        where = "workdir"
        try:
            os.close(r)
            os.setpgid(0, 0)
            for s in STOP_SIGNALS + RESET_SIGNALS:  # Python ignores SIGPIPE: undo for the child
                sig.signal(s, sig.SIG_DFL)
            if cwd and first:
                os.chdir(cwd)
            if run_as is not None and container is not None:
                where = "mount"
                check_paths_as(run_as, container)
                where = "workdir"
            elif run_as is not None:
                where = "identity"
                drop_privileges(run_as)
                where = "workdir"
            os.umask(0o022)  # the server's is 077; a job gets the usual one
            if cwd and not first:
                os.chdir(cwd)
            where = "exec"
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            execvpe(cmd, env)
        except BaseException as e:  # noqa: BLE001 - report anything to the parent
            os.write(w, f"{where}\0{getattr(e, 'errno', 0) or 0}\0{e}".encode(errors="replace"))
        finally:
            os._exit(127)
    os.close(w)
    try:
        os.setpgid(pid, pid)  # also in the parent: no race with an early killpg
    except OSError:
        pass
    chunks = []
    while True:
        b = os.read(r, 4096)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    if not chunks:
        return pid, None
    os.waitpid(pid, 0)
    where, errno_, msg = b"".join(chunks).decode(errors="replace").split("\0", 2)
    if where == "workdir":
        return None, (1, f"workdir {cwd!r} is not usable: {msg}")
    if where == "identity":
        return None, (1, f"cannot run as {run_as['name'] or run_as['uid']}: {msg}")
    if where == "mount":
        return None, (1, f"{msg} for {run_as['name'] or run_as['uid']}")
    code = 126 if errno_ in ("13", "8") else 127  # EACCES/ENOEXEC like a shell
    return None, (code, f"cannot run {cmd[0]!r}: {msg}")


class Supervisor:
    """Waits for the child, enforcing the time limit and stops."""

    def __init__(self, rank_dir, pid, limit_s, grace_s, wake_fd, signals, container=None):
        self.rank_dir, self.pid, self.grace_s, self.wake_fd = rank_dir, pid, grace_s, wake_fd
        self.container = container
        self.signals = signals  # appended to by the stop-signal handler
        self.started = time.monotonic()
        self.deadline = self.started + limit_s if limit_s > 0 else None
        self.kill_at = None
        self.stopped_by = None
        self.timed_out = False
        self.status = None  # wait status, where it had to be reaped early (no waitid)

    def killpg(self, signum):
        try:
            os.killpg(self.pid, signum)
        except OSError:
            pass

    def begin_stop(self, why, now):
        if self.stopped_by is None and not self.timed_out:
            if why == "timeout":
                self.timed_out = True
            else:
                self.stopped_by = why
            self.killpg(sig.SIGTERM)
            self.kill_at = now + self.grace_s

    def exited(self):
        if not hasattr(os, "waitid"):  # pragma: no cover - not Linux: reap now
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            self.status = status if pid else None
            return bool(pid)
        return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None

    def step(self):
        """One round: act on stops/deadlines, then sleep until something may have changed."""
        now = time.monotonic()
        if self.signals or (self.stopped_by is None and read_stop(self.rank_dir)):
            self.signals.clear()
            self.begin_stop(read_stop(self.rank_dir) or "cancel", now)
        if self.deadline is not None and now >= self.deadline:
            self.begin_stop("timeout", now)
        if self.kill_at is not None and now >= self.kill_at:
            if self.container is not None:  # the container is conmon's child, not podman's
                run_podman(self.container, "kill", "--signal", "KILL", self.container["name"])
            self.killpg(sig.SIGKILL)
            self.kill_at = None
        if self.exited():
            return False
        waits = [MAX_SLEEP_S]
        if self.deadline is not None and not self.timed_out and self.stopped_by is None:
            waits.append(self.deadline - now)
        if self.kill_at is not None:
            waits.append(self.kill_at - now)
        select.select([self.wake_fd], [], [], max(0.0, min(waits)))
        try:
            os.read(self.wake_fd, 4096)
        except BlockingIOError:
            pass
        return True

    def run(self):
        while self.step():
            pass
        self.killpg(sig.SIGKILL)  # leftovers of the group; the leader is a zombie: pgid not reused
        status = self.status if self.status is not None else os.waitpid(self.pid, 0)[1]
        code = os.waitstatus_to_exitcode(status)
        if self.container is not None and (code < 0 or self.stopped_by or self.timed_out):
            # `podman run --rm` removed it when it ended by itself; a podman that was stopped or
            # killed may have left it running under conmon
            run_podman(self.container, "rm", "--force", "--time", "0", "--ignore", self.container["name"])
        return 128 - code if code < 0 else code


def parse_args(argv):
    rank_dir, limit, grace, workdir, dashdash, *cmd = argv
    if dashdash != "--" or not cmd:
        raise SystemExit("usage: shim.py RANK_DIR TIME_LIMIT_S GRACE_S WORKDIR -- COMMAND ...")
    return rank_dir, float(limit), float(grace), workdir, cmd


def _wake_pipe():
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    sig.set_wakeup_fd(w)
    return r


def finish(rank_dir, started_at, **fields):
    fields.setdefault("exit_code", None)
    fields.setdefault("timed_out", False)
    fields.setdefault("stopped_by", None)
    fields["cancelled"] = fields["stopped_by"] == "cancel"
    fields.setdefault("error", None)
    fields.update(started_at=started_at, ended_at=time.time())
    write_json(os.path.join(rank_dir, "exit.json"), fields)


def session_main(argv):
    """One more process in the allocation of the rank in RANK_DIR (see the module's doc)."""
    rank_dir, workdir, dashdash, *cmd = argv
    if dashdash != "--":
        raise SystemExit("usage: shim.py --session RANK_DIR WORKDIR -- [COMMAND ...]")
    import fcntl
    import termios

    fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # the pty the server opened becomes our terminal
    env, run_as, container = read_env(rank_dir), read_run_as(rank_dir), read_container(rank_dir)
    if container is not None:
        shell = "command -v bash >/dev/null 2>&1 && exec bash || exec sh"
        cmd = [container["podman"], "exec", "-it", container["name"], *(cmd or ["sh", "-c", shell])]
        run_as, workdir = None, rank_dir  # podman (root on a root server) starts it as the container's user
    try:
        first = run_as is None or run_as["cwd_first"]
        if workdir and first:
            os.chdir(workdir)
        if run_as is not None:
            drop_privileges(run_as)
        os.umask(0o022)
        if workdir and not first:
            os.chdir(workdir)
        for s in STOP_SIGNALS + RESET_SIGNALS:
            sig.signal(s, sig.SIG_DFL)
        env["TERM"] = os.environ.get("TERM") or "xterm-256color"
        cmd = cmd or [env.get("SHELL") or "/bin/sh"]
        execvpe(cmd, env)
    except OSError as e:
        os.write(2, f"gpufleet: cannot run {(cmd or ['the shell'])[0]!r}: {e.strerror or e}\r\n".encode(errors="replace"))
        os._exit(126 if getattr(e, "errno", 0) in (13, 8) else 127)


def main(argv):
    if argv and argv[0] == "--session":
        return session_main(argv[1:])
    rank_dir, limit_s, grace_s, workdir, cmd = parse_args(argv)
    wake_fd = _wake_pipe()
    signals = []
    for s in STOP_SIGNALS:  # before the fork: a stop can never orphan the child
        sig.signal(s, lambda signum, frame: signals.append(signum))
    sig.signal(sig.SIGCHLD, lambda *_: None)  # only to wake select through the wake-up fd
    early = read_stop(rank_dir)
    if early:
        return finish(rank_dir, None, stopped_by=early, error="stopped before it started")
    log_fd = os.open(os.path.join(rank_dir, "output.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    container = read_container(rank_dir)
    pid, failure = spawn(cmd, read_env(rank_dir), workdir, log_fd, read_run_as(rank_dir), container)
    started_at = time.time()
    if failure:
        os.write(log_fd, f"gpufleet: {failure[1]}\n".encode(errors="replace"))
        return finish(rank_dir, started_at, exit_code=failure[0], error=failure[1])
    os.close(log_fd)
    me = os.getpid()
    write_json(os.path.join(rank_dir, "pid.json"), {
        "shim_pid": me, "shim_start": proc_start(me), "child_pid": pid, "child_pgid": pid,
        "child_start": proc_start(pid), "started_at": started_at})
    sup = Supervisor(rank_dir, pid, limit_s, grace_s, wake_fd, signals, container)
    code = sup.run()
    failed = podman_error(rank_dir, code, cmd) if container is not None and not sup.stopped_by else None
    code, error = failed or (code, None)
    return finish(rank_dir, started_at, exit_code=code, timed_out=sup.timed_out, stopped_by=sup.stopped_by,
                  error=error)


if __name__ == "__main__":
    main(sys.argv[1:])

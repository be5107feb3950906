"""How gpufleet talks to Slurm. Two job APIs behind one small interface:

- `CliApi`: sbatch / squeue --json / sinfo --json / sacct / scancel (the default; works with any
  Slurm that has the client commands and a munge key on this host);
- `RestApi`: slurmrestd, with the OpenAPI version a parameter (v0.0.38 on Slurm 22.05; newer
  releases serve v0.0.39+ and parse.py reads both shapes).

Administration that slurmrestd 22.05 cannot do (node state, reservations, accounts) always goes
through `Admin` (scontrol / sacctmgr).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping, Protocol, Sequence

from gpufleet.executors.accounts import DEFAULT_PATH
from gpufleet.executors.base import EngineUnavailable
from gpufleet.domain import GpufleetError
from gpufleet.executors.slurm.parse import (
    PENDING_STATES, RUNNING_STATES, SACCT_FIELDS, SlurmJob, job_from_json, jobs_from_sacct,
)
from gpufleet.executors.slurm.script import SubmitRequest

UNAVAILABLE_MARKERS = (
    "Unable to contact slurm controller", "Socket timed out", "Connection refused", "Zero Bytes were transmitted",
    "Slurm backup controller in standby mode", "Unable to establish connection", "Connection reset",
)

# What Slurm's client commands need of this process's environment when they run with a built one.
CLIENT_KEYS = ("SLURM_CONF",)


class SlurmError(GpufleetError):
    """A Slurm command or request failed."""


class SlurmUnavailable(SlurmError, EngineUnavailable):
    """slurmctld (or slurmrestd) cannot be reached right now: try again later."""


class JobApi(Protocol):
    def submit(self, req: SubmitRequest) -> int: ...

    def jobs(self) -> list[dict]:
        """Every job slurmctld still holds (pending, running and recently ended), as JSON objects."""

    def nodes(self) -> list[dict]: ...

    def cancel(self, job_id: int) -> None: ...

    def live_ids(self) -> set[int]:
        """Ids of the jobs slurmctld has not finished (pending, running, completing...): cheap."""


@dataclass
class Runner:
    """Runs Slurm's commands (an optional bin dir, extra environment such as SLURM_CONF)."""

    bin_dir: str = ""
    env: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 30.0

    def __call__(self, *args: str, stdin: str | None = None, check: bool = True,
                 base_env: Mapping[str, str] | None = None) -> str:
        """`base_env`: the command's environment instead of this process's (sbatch: the job's),
        plus the client's own SLURM_CONF and the runner's `env`."""
        cmd = [os.path.join(self.bin_dir, args[0]) if self.bin_dir else args[0], *args[1:]]
        if base_env is None:
            env = {**os.environ, **self.env}
        else:
            conf = {k: os.environ[k] for k in CLIENT_KEYS if k in os.environ}
            env = {**base_env, **conf, **self.env}
        env.pop("SLURM_JWT", None)  # with it set, the commands authenticate by token and fail as root
        env.pop("SLURM_TOPO_LEN", None)  # it would cut `scontrol show topology` lines short
        try:
            proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=self.timeout_s, env=env)
        except subprocess.TimeoutExpired as e:
            raise SlurmUnavailable(f"{args[0]} timed out after {self.timeout_s:.0f}s") from e
        except FileNotFoundError as e:
            raise SlurmUnavailable(f"{cmd[0]} not found (is Slurm installed?)") from e
        if check and proc.returncode != 0:
            msg = (proc.stderr or proc.stdout).strip()
            cls = SlurmUnavailable if any(m in msg for m in UNAVAILABLE_MARKERS) else SlurmError
            raise cls(f"{' '.join(args[:2])}: {msg or f'exit {proc.returncode}'}")
        return proc.stdout


def _json_list(text: str, key: str) -> list[dict]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SlurmError(f"cannot parse Slurm JSON ({key}): {e}") from e
    errors = [e for e in data.get("errors") or () if e]
    if errors and not data.get(key):  # e.g. slurm_load_jobs failed: slurmctld is not answering
        raise SlurmUnavailable(f"Slurm reported errors: {errors}")
    return list(data.get(key) or ())


class CliApi:
    """The job API through Slurm's client commands."""

    def __init__(self, run: Runner):
        self.run = run

    def submit(self, req: SubmitRequest) -> int:
        # the job's environment is sbatch's (--export=ALL): built, never this server's
        out = self.run("sbatch", *req.sbatch_args(), stdin=req.script, base_env=req.environment)
        return int(out.strip().split(";")[0])

    def jobs(self) -> list[dict]:
        return _json_list(self.run("squeue", "--json"), "jobs")

    def live_ids(self) -> set[int]:
        # squeue's default states are the live ones; plain text is ~10x cheaper than --json
        out = self.run("squeue", "-h", "-o", "%i")
        return {int(w) for w in out.split() if w.isdigit()}

    def nodes(self) -> list[dict]:
        return _json_list(self.run("sinfo", "--json"), "nodes")

    def cancel(self, job_id: int) -> None:
        self.run("scancel", str(job_id))


class RestApi:
    """The job API through slurmrestd. `url` is `unix:/path/to.sock` (rest_auth/local) or
    `http://host:6820` with a JWT (`token_file`, `user`). `version` picks the OpenAPI plugin."""

    # OpenAPI versions whose job description has no node list ("required_nodes" is a disabled key):
    # such jobs are submitted held, given their nodes with scontrol, then released.
    NO_NODELIST = frozenset({"v0.0.36", "v0.0.37", "v0.0.38"})

    def __init__(self, url: str, version: str = "v0.0.38", user: str | None = None,
                 token_file: str | None = None, timeout_s: float = 30.0, run: Runner | None = None):
        import httpx

        self.version = version
        self.run = run or Runner()
        headers = {}
        if user:
            headers["X-SLURM-USER-NAME"] = user
        if token_file:
            with open(token_file) as f:
                headers["X-SLURM-USER-TOKEN"] = f.read().strip()
        if url.startswith("unix:"):
            transport = httpx.HTTPTransport(uds=url[len("unix:"):])
            self.http = httpx.Client(transport=transport, base_url="http://slurmrestd", headers=headers,
                                     timeout=timeout_s)
        else:
            self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        import httpx

        try:
            resp = self.http.request(method, f"/slurm/{self.version}/{path}", json=body)
        except httpx.TransportError as e:
            raise SlurmUnavailable(f"slurmrestd: {e}") from e
        try:
            data = resp.json()
        except ValueError:
            data = {}
        errors = [e for e in data.get("errors") or () if e]
        if resp.status_code >= 400 or (errors and method != "GET" and data.get("job_id") is None):
            msg = "; ".join(str(e.get("error") or e.get("description") or e) for e in errors) or resp.text[:300]
            cls = SlurmUnavailable if resp.status_code >= 500 or (method == "GET" and errors) or any(
                m.lower() in msg.lower() for m in UNAVAILABLE_MARKERS) else SlurmError
            raise cls(f"slurmrestd {method} {path}: {resp.status_code} {msg}")
        return data

    def submit(self, req: SubmitRequest) -> int:
        job = rest_job(req)
        late_nodes = req.nodelist if self.version in self.NO_NODELIST else None
        if late_nodes:
            job.pop("required_nodes", None)
            job["hold"] = True
        job_id = int(self._call("POST", "job/submit", {"script": req.script, "job": job})["job_id"])
        if late_nodes:
            try:
                self.run("scontrol", "update", f"jobid={job_id}", f"reqnodelist={late_nodes}")
                self.run("scontrol", "release", str(job_id))
            except SlurmError:
                self.run("scancel", str(job_id), check=False)
                raise
        return job_id

    def jobs(self) -> list[dict]:
        return list(self._call("GET", "jobs").get("jobs") or ())

    def live_ids(self) -> set[int]:
        return live_of(self.jobs())

    def nodes(self) -> list[dict]:
        return list(self._call("GET", "nodes").get("nodes") or ())

    def cancel(self, job_id: int) -> None:
        self._call("DELETE", f"job/{job_id}")

    def close(self) -> None:
        self.http.close()


def live_of(jobs: list[dict]) -> set[int]:
    """Ids of the jobs (JSON of either shape) that have not ended."""
    out = set()
    for d in jobs:
        sj = job_from_json(d)
        if sj.state in PENDING_STATES or sj.state in RUNNING_STATES:
            out.add(sj.job_id)
    return out


def rest_job(req: SubmitRequest) -> dict:
    """The `job` object of a v0.0.38 submit (the keys slurmrestd 22.05 accepts)."""
    job: dict = {
        "name": req.name, "comment": req.comment, "account": req.account, "nodes": req.nodes,
        "tasks_per_node": 1, "standard_output": req.output, "standard_error": req.output,
        "current_working_directory": req.workdir or os.path.dirname(req.output) or "/tmp",
        "environment": dict(req.environment) or {"PATH": DEFAULT_PATH},
        "requeue": False,  # sbatch --no-requeue: gpufleet restarts runs itself, as new attempts
    }
    optional = {"gres": req.gres, "cpus_per_task": req.cpus_per_task, "time_limit": req.time_minutes,
                "required_nodes": req.nodelist.split(",") if req.nodelist else None, "partition": req.partition,
                "reservation": req.reservation, "constraints": req.constraint,
                "memory_per_node": req.mem_mb}
    job.update({k: v for k, v in optional.items() if v is not None})
    if req.exclusive:
        job["exclusive"] = "exclusive"  # sbatch --exclusive (v0.0.38 takes "exclusive" for it; "true" is refused)
    return job


class Admin:
    """Operations through scontrol / sacctmgr / sacct (also used with the REST job API)."""

    def __init__(self, run: Runner):
        self.run = run

    def update_node(self, node: str, state: str, reason: str | None = None) -> None:
        args = ["scontrol", "update", f"nodename={node}", f"state={state}"]
        if reason is not None:
            args.append(f"reason={reason or 'gpufleet'}")
        self.run(*args)

    def mark_job(self, job_id: int, admin_comment: str) -> None:
        self.run("scontrol", "update", f"jobid={job_id}", f"admincomment={admin_comment}")

    def sacct(self, job_ids: Sequence[int] = (), name: str | None = None, since: float | None = None) -> list[SlurmJob]:
        args = ["sacct", "-X", "-n", "-P", "-o", ",".join(SACCT_FIELDS)]
        if job_ids:
            args.append("-j=" + ",".join(map(str, job_ids)))
        if name:
            args.append(f"--name={name}")
        if since is not None:
            args.append("-S=" + datetime.fromtimestamp(since).strftime("%Y-%m-%dT%H:%M:%S"))
        return jobs_from_sacct(self.run(*args))

    def ensure_account(self, account: str, user: str, parent: str = "root", wait_s: float = 10.0) -> None:
        """Create the account and the user's association when missing, and wait until slurmctld
        knows it (sacctmgr writes to slurmdbd; slurmctld hears of it a moment later)."""
        have = self.run("sacctmgr", "-n", "-P", "show", "assoc", f"user={user}", f"account={account}",
                        "format=account")
        if have.strip():
            return
        if not self.run("sacctmgr", "-n", "-P", "show", "account", account, "format=account").strip():
            self.run("sacctmgr", "-i", "add", "account", account, f"parent={parent}",
                     f"Description=gpufleet tenant {account}", "Organization=gpufleet", check=False)
        self.run("sacctmgr", "-i", "add", "user", user, f"account={account}", check=False)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            out = self.run("scontrol", "show", "assoc_mgr", "flags=assoc", f"users={user}", f"accounts={account}",
                           check=False)
            if f"Account={account} " in out or f"Account={account}\n" in out:
                return
            time.sleep(0.05)

    def reservation_exists(self, name: str) -> bool:
        out = self.run("scontrol", "show", "reservation", name, check=False)
        return f"ReservationName={name} " in out

    def create_reservation(self, name: str, fields: dict[str, str]) -> None:
        verb = "update" if self.reservation_exists(name) else "create"
        args = [f"{k}={v}" for k, v in fields.items()]
        if verb == "update":  # flags cannot be re-set, and a started reservation keeps its start
            args = [a for a in args if not a.startswith("flags=") and a != "starttime=now"]
        self.run("scontrol", verb, "reservation", f"reservationname={name}", *args)

    def delete_reservation(self, name: str) -> None:
        if self.reservation_exists(name):
            self.run("scontrol", "delete", f"reservationname={name}")

    def topology(self) -> str:
        """`scontrol show topology`: one line per switch (topology/tree) or block (topology/block);
        nothing on stdout (and "No topology information available" on stderr) without a plugin."""
        return self.run("scontrol", "show", "topology")

    def min_job_age(self) -> int:
        out = self.run("scontrol", "show", "config", check=False)
        for line in out.splitlines():
            if line.replace(" ", "").startswith("MinJobAge="):
                digits = "".join(ch for ch in line.split("=", 1)[1] if ch.isdigit())
                return int(digits or 300)
        return 300

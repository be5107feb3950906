"""submit, jobs, show, logs, cancel."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer

from gpufleet.cli.jobfile import is_job_file, load_job_file
from gpufleet.cli.output import ago, err, out, print_json, table, when
from gpufleet.client import Client
from gpufleet.domain import ValidationError, format_duration
from gpufleet.domain.group import parse_array, parse_matrix
from gpufleet.domain.spec import build_spec

ACTIVE = ("PENDING", "RUNNING")  # logs -f follows a job through requeues until it is not one of these
FLAG_FIELDS = ("gpus", "nodes", "gpu_model", "cpus", "mem", "time_limit", "tenant", "priority",
               "name", "workdir", "booking", "image", "pull", "restart", "heartbeat")


def submit(
    command: Optional[list[str]] = typer.Argument(None, help="CMD ARGS... (after --), or a job.yaml"),
    gpus: Optional[int] = typer.Option(None, "--gpus", "-G", help="GPUs per node"),
    nodes: Optional[str] = typer.Option(None, "--nodes", "-N", help="nodes (a gang: all or none); "
                                        "MIN:MAX for an elastic gang, e.g. 6:8"),
    gpu_model: Optional[str] = typer.Option(None, "--gpu-model", help="e.g. a100, h100"),
    cpus: Optional[int] = typer.Option(None, "--cpus", help="CPUs per node"),
    mem: Optional[str] = typer.Option(None, "--mem", help="memory per node, e.g. 16G"),
    time_limit: Optional[str] = typer.Option(None, "--time-limit", "-t", help="90s, 30m, 4h, 1d, HH:MM:SS"),
    tenant: Optional[str] = typer.Option(None, "--tenant", "-T"),
    priority: Optional[int] = typer.Option(None, "--priority", "-p"),
    name: Optional[str] = typer.Option(None, "--name", "-n"),
    env: Optional[list[str]] = typer.Option(None, "--env", "-e", help="K=V (repeatable)"),
    workdir: Optional[str] = typer.Option(None, "--workdir", "-C"),
    constraint: Optional[list[str]] = typer.Option(None, "--constraint", help="K=V[,K=V] node attributes"),
    label: Optional[list[str]] = typer.Option(None, "--label", help="K=V job label, e.g. purpose=dev "
                                              "(repeatable; `gpufleet usage --by label:K`)"),
    booking: Optional[int] = typer.Option(None, "--booking", help="run inside this booking"),
    no_requeue: bool = typer.Option(False, "--no-requeue", help="fail instead of requeue when preempted"),
    restart: Optional[str] = typer.Option(None, "--restart", help="never, on-node-fault (default) or "
                                          "on-failure[:N]: run again as a new attempt after a fault/failure"),
    heartbeat: Optional[str] = typer.Option(None, "--heartbeat", help="e.g. 10m: no touch of "
                                            "$GPUFLEET_HEARTBEAT_FILE or output for that long = hung, restarted"),
    image: Optional[str] = typer.Option(None, "--image", help="container image, e.g. nvcr.io/nvidia/pytorch:24.05-py3"),
    mount: Optional[list[str]] = typer.Option(None, "--mount", help="SRC:DST[:ro] bind mount into the image (repeatable)"),
    pull: Optional[str] = typer.Option(None, "--pull", help="with --image: always, missing (default) or never"),
    perf: bool = typer.Option(False, "--perf", help="clean-room performance run: whole nodes, prolog/epilog checks"),
    perf_clocks: Optional[str] = typer.Option(None, "--perf-clocks", help="with --perf: as_is, base, max or MHz"),
    perf_max_temp: Optional[int] = typer.Option(None, "--perf-max-temp", help="with --perf: start below this C"),
    perf_sample: Optional[float] = typer.Option(None, "--perf-sample", help="with --perf: seconds between samples"),
    artifact: Optional[list[str]] = typer.Option(None, "--artifact", help="GLOB relative to the workdir, "
                                                 "kept when each attempt ends (repeatable)"),
    matrix: Optional[list[str]] = typer.Option(None, "--matrix", help="KEY=V1,V2: one job per cell of "
                                               "the product (repeatable); values become constraints"),
    array: Optional[str] = typer.Option(None, "--array", help="0-99[%10]: one job per index "
                                        "(GPUFLEET_ARRAY_INDEX), at most 10 running"),
    dependency: Optional[str] = typer.Option(None, "--dependency", "-d",
                                             help="afterok:ID[:ID],afterany:ID,afternotok:ID"),
    board_image: Optional[str] = typer.Option(None, "--board-image", help="embedded boards: the image "
                                              "to flash first (with --flash; docs/boards.md)"),
    flash: bool = typer.Option(False, "--flash", help="with --board-image: flash the board before the command"),
    power_cycle: Optional[bool] = typer.Option(None, "--power-cycle/--no-power-cycle",
                                               help="embedded boards: power-cycle before the command"),
    as_json: bool = typer.Option(False, "--json", help="print {\"id\": ...} as JSON"),
    idempotency_key: Optional[str] = typer.Option(
        None, "--idempotency-key", help="submitting again with the same key returns the same job "
        "(default: a fresh key, reused when the CLI retries after a connection error)"),
) -> None:
    """Submit a job: `gpufleet submit --gpus 2 -- python train.py` or `gpufleet submit job.yaml`."""
    given = {k: v for k, v in locals().items() if k in FLAG_FIELDS and v is not None}
    spec: dict[str, Any] = {}
    args = list(command or [])
    if is_job_file(args, dashdash="--" in sys.argv[1:]):
        spec = load_job_file(args[0])
    elif args:
        spec["command"] = args
    spec.update(given)
    if env:
        spec["env"] = {**_as_env(spec.get("env")), **dict(_kv(e, "env") for e in env)}
    if constraint:
        spec["constraint"] = ",".join(constraint)
    if label:
        spec["label"] = ",".join(label)
    if mount:
        given = spec.get("mounts")
        spec["mounts"] = [*([given] if isinstance(given, str) else given or []), *mount]
    if no_requeue:
        spec["requeue"] = False
    policy = {k: v for k, v in (("clocks", perf_clocks), ("max_temp_c", perf_max_temp),
                                ("sample_s", perf_sample)) if v is not None}
    if perf or policy:
        base = spec.get("perf") if isinstance(spec.get("perf"), dict) else {}
        spec["perf"] = {**base, **policy} if (base or policy) else True
    if artifact:
        spec["artifacts"] = [*_as_list(spec.get("artifacts")), *artifact]
    if dependency:
        spec["dependency"] = dependency
    board = {k: v for k, v in (("image", board_image), ("flash", flash or None), ("power_cycle", power_cycle))
             if v is not None}
    if board:
        spec["board"] = {**(spec.get("board") if isinstance(spec.get("board"), dict) else {}), **board}
    group = {k: spec.pop(k) for k in ("matrix", "array") if spec.get(k) not in (None, "", [], {})}
    if matrix:
        group["matrix"] = list(matrix)
    if array:
        group["array"] = array
    if "workdir" not in spec:
        spec["workdir"] = str(Path.cwd())
    if not spec.get("command"):
        raise ValidationError("command", "must not be empty (gpufleet submit [flags] -- CMD ARGS...)")
    build_spec(spec)  # the server checks again; this names a bad field without a round trip
    if group:
        if "matrix" in group:
            parse_matrix(group["matrix"])  # the server checks again; named here without a round trip
        if group.get("array") is not None:
            parse_array(group["array"])
        return _submit_group({**spec, **group}, idempotency_key, as_json)
    with Client.from_env() as c:
        job = c.submit(spec, idempotency_key=idempotency_key)
    if as_json:
        print_json({"id": job.id, "state": job.state})
    else:
        print(job.id)


def _submit_group(body: dict[str, Any], key: str | None, as_json: bool) -> None:
    """A matrix or an array: one group; prints its id, its jobs, and the cells that cannot run."""
    with Client.from_env() as c:
        g = c.submit_group(body, idempotency_key=key)
    if as_json:
        print_json(g)
        return
    jobs = [str(x["job_id"]) for x in g["cells"] if x["job_id"]]
    print(f"group {g['id']}: {len(jobs)} job(s) {' '.join(jobs)}")
    for x in g["cells"]:
        if not x["job_id"]:
            where = ",".join(f"{k}={v}" for k, v in x["cell"].items())
            print(f"cell {where}: cannot run here: {x['reason']}", file=sys.stderr)


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _kv(item: str, field: str) -> tuple[str, str]:
    k, sep, v = item.partition("=")
    if not sep or not k:
        raise ValidationError(field, f"expected K=V, got {item!r}")
    return k, v


def _as_env(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    if isinstance(value, list):
        return dict(_kv(str(i), "env") for i in value)
    return {}


def jobs(
    all: bool = typer.Option(False, "--all", "-a", help="include finished jobs"),
    state: Optional[list[str]] = typer.Option(None, "--state", "-s"),
    tenant: Optional[str] = typer.Option(None, "--tenant", "-T"),
    limit: int = typer.Option(200, "--limit"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List jobs like squeue (pending and running by default), with the REASON a job waits."""
    with Client.from_env() as c:
        rows = c.jobs(state=state, tenant=tenant, all=all, limit=limit)
    if as_json:
        print_json(rows)
        return
    now = time.time()
    table(("ID", "NAME", "TENANT", "USER", "STATE", "GPUS", "NODES", "TIME", "REASON/NODELIST"), [
        (j.id, j.name[:24], j.tenant, j.user, j.state, *_shape(j),
         ago(j.started_at, now) if j.state == "RUNNING" else ago(j.submitted_at, now) if j.state == "PENDING"
         else format_duration((j.ended_at or now) - (j.started_at or j.submitted_at)),
         _reason_col(j))
        for j in rows
    ])


def _shape(j) -> tuple:
    """GPUS and NODES: the nodes it got once placed, else what it asks (MIN:MAX for an elastic gang)."""
    req = j.request
    n = len(j.nodes) if j.nodes else req["nodes"]
    gpus = f"{n}x{req['gpus']}" if n > 1 else req["gpus"]
    lo = req.get("nodes_min")
    return gpus, (f"{lo}:{req['nodes']}" if not j.nodes and lo is not None and lo < req["nodes"] else n)


def _reason_col(j) -> str:
    if j.state == "PENDING":
        return f"({j.reason})"
    if j.state == "RUNNING":
        where = ",".join(j.nodes)
        return f"{where} (cancelling)" if j.pending_action == "cancel" else where
    return j.reason


def show(job_id: int, as_json: bool = typer.Option(False, "--json")) -> None:
    """Everything about one job, with its event history."""
    with Client.from_env() as c:
        j = c.job(job_id)
    if as_json:
        print_json(j)
        return
    r = j.request
    lines = [
        ("Job", f"{j.id} ({j.name})"), ("State", f"{j.state}  {j.reason}"),
        ("Exit code", j.exit_code), ("Tenant / user", f"{j.tenant} / {j.user}"),
        ("Request", f"{r['nodes']} node(s) x {r['gpus']} GPU(s)" + (f" {r['gpu_model']}" if r["gpu_model"] else "")),
        ("Time limit", format_duration(r["time_limit"]) if r["time_limit"] else "-"),
        ("Priority", j.priority), ("Command", " ".join(r["command"])), ("Workdir", r["workdir"] or "-"),
        ("GPUs", "  ".join(f"{n}:{','.join(map(str, g))}" for n, g in j.gpus.items()) or "-"),
        ("Submitted", when(j.submitted_at)), ("Started", when(j.started_at)), ("Ended", when(j.ended_at)),
        ("Restarts", j.restarts),
    ]
    for k, v in lines:
        out.print(f"[bold]{k:>14}[/bold]  {v}")
    out.print()
    if j.attempts:
        table(("ATTEMPT", "STATE", "NODES", "START", "END", "EXIT", "REASON"),
              [(a.n, "REQUEUED" if a.state == "PENDING" else a.state, ",".join(a.nodes) or "-",
                when(a.started_at), when(a.ended_at), "-" if a.exit_code is None else a.exit_code, a.reason)
               for a in j.attempts], title="attempts")
        out.print()
    table(("TIME", "ATTEMPT", "FROM", "TO", "REASON"),
          [(when(e.at), e.attempt or "", e.old or "-", e.new, e.reason) for e in j.events], title="events")


def logs(job_id: int, follow: bool = typer.Option(False, "--follow", "-f"),
         rank: int = typer.Option(0, "--rank", "-r", help="which rank of a multi-node job"),
         attempt: Optional[int] = typer.Option(None, "--attempt", "-a",
                                               help="which run (1, 2, ...; `gpufleet show` lists them); "
                                                    "default: the latest")) -> None:
    """Print a job's output (of its latest run, or --attempt N); -f follows it until the job ends,
    onto the next attempt when the job is requeued."""
    offset, served = 0, attempt
    with Client.from_env() as c:
        while True:
            page = c.logs(job_id, offset, rank, attempt)
            if served is not None and page.attempt not in (None, served):  # requeued: the next run
                print(f"--- attempt {page.attempt} ---", file=sys.stderr)
                offset, served = 0, page.attempt
                continue
            served = page.attempt if served is None else served
            if page.data:
                sys.stdout.buffer.write(page.data)
                sys.stdout.flush()
            offset = page.offset
            if page.note and not page.data and (not follow or page.complete):
                print(page.note, file=sys.stderr)
            if not follow or (page.complete and (attempt is not None or page.state not in ACTIVE)):
                return
            time.sleep(0.5 if not page.data else 0.05)


def cancel(job_ids: list[int] = typer.Argument(..., help="job ids")) -> None:
    """Cancel jobs (pending: at once; running: stopped and recorded by the control loop). Exits 1
    when a job had already finished."""
    finished = 0
    with Client.from_env() as c:
        for job_id in job_ids:
            r = c.cancel(job_id)
            if r.already_finished:
                err.print(f"job {r.id} already finished ({r.state})", markup=False)
                finished += 1
                continue
            what = "cancelling" if r.pending_action == "cancel" else r.state.lower()
            print(f"{r.id} {what}")
    if finished:
        raise typer.Exit(1)

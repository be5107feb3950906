"""Job groups: test matrices (one job per cell the inventory can satisfy; the others reported at
submit, never left pending) and arrays (one job per index, GPUFLEET_ARRAY_INDEX, at most N running
at once). `show` is the matrix as cell -> job state -> result (pass/fail from JUnit results or the
exit code, the headline metric from the job's results)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping, Sequence

from gpufleet.domain import Job, JobState, NotFound, User, ValidationError, normalise_model
from gpufleet.domain.group import matrix_cells, parse_array, parse_matrix
from gpufleet.domain.spec import build_spec, spec_to_dict
from gpufleet.scheduler.filters.constraints import term as constraint_term
from gpufleet.services import jobs as jobs_svc
from gpufleet.services.context import Ctx, can_see
from gpufleet.store import DuplicateKey
from gpufleet.store import groups as repo
from gpufleet.store.results import query_cases, query_results

GROUP_FIELDS = ("matrix", "array")


def submit(ctx: Ctx, user: User, data: Mapping[str, Any], key: str | None = None) -> dict[str, Any]:
    """`data`: the job fields plus `matrix` ({key: [values]} or ["key=a,b", ...]) or `array`
    ("0-99%10"). Every job is validated before any is stored; all are stored in one transaction."""
    data = dict(data)
    matrix, array = parse_matrix(data.pop("matrix", None)), data.pop("array", None)
    if matrix and array not in (None, ""):
        raise ValidationError("array", "a group is a matrix or an array, not both")
    if not matrix and array in (None, ""):
        raise ValidationError("matrix", "a group needs a matrix (KEY=V1,V2) or an array (0-99%10)")
    if key is not None:
        done = ctx.store.jobs_by_key(user.name, [f"{jobs_svc.check_key(key, 2)}#0"])
        if done and (gid := repo.group_of_job(ctx.store.engine, next(iter(done.values())).id)) is not None:
            return dict(show(ctx, user, gid), replayed=True)
    base = build_spec(data, default_tenant=user.tenant)  # names a bad job field before any cell
    if matrix:
        kind, axes, max_running, planned = "matrix", matrix, None, _matrix_cells(ctx, user, base, matrix)
    else:
        indices, max_running = parse_array(array)
        kind, axes = "array", {"array": str(array)}
        spec = jobs_svc._validate(ctx, user, spec_to_dict(base))
        planned = [({"GPUFLEET_ARRAY_INDEX": str(i)}, replace(spec, env={**spec.env, "GPUFLEET_ARRAY_INDEX": str(i)},
                                                              name=f"{spec.display_name}_{i}"), "")
                   for i in indices]
    now = ctx.clock()
    jobs, cells = [], []
    for index, (cell, spec, why) in enumerate(planned):
        cells.append({"index": index, "cell": cell, "job_id": None, "reason": why})
        if spec is not None:
            jobs.append(Job(id=0, spec=spec, user=user.name, submitted_at=now, reason="Submitted",
                            extra={"group_index": index}))
    if not jobs:
        raise ValidationError("matrix", "no cell can run on this cluster: " +
                              "; ".join(f"{_cell_text(c['cell'])}: {c['reason']}" for c in cells))
    group = {"kind": kind, "name": base.display_name, "tenant": base.tenant, "user": user.name,
             "created_at": now, "spec": spec_to_dict(base), "axes": axes, "cells": cells,
             "max_running": max_running, "dependency": [list(d) for d in base.dependency]}
    keys = [f"{jobs_svc.check_key(key, len(jobs))}#{i}" for i in range(len(jobs))] if key else None
    try:
        ctx.store.add_jobs(jobs, now, audit_user=user.name, keys=keys, group=group)
    except DuplicateKey:  # a concurrent submission with the same key won
        return submit(ctx, user, {**data, **({"matrix": matrix} if matrix else {"array": array})}, key)
    ctx.audit(user, "submit-group", f"group/{group['id']}", kind=kind, jobs=len(jobs),
              impossible=sum(1 for c in cells if c["reason"]))
    ctx.wake()
    return show(ctx, user, group["id"])


def _matrix_cells(ctx: Ctx, user: User, base, axes: Mapping[str, Sequence[str]]):
    """(cell, its validated spec or None, why not) per cell: the cell's values become constraints,
    checked against the inventory like any submission (an impossible cell is reported, not stored)."""
    out = []
    for cell in matrix_cells(axes):
        model = cell.get("gpu_model")  # a GPU model is the job's model, the rest constraints
        spec = replace(base, constraints={**base.constraints, **{k: v for k, v in cell.items() if k != "gpu_model"}},
                       gpu_model=normalise_model(model) if model else base.gpu_model,
                       name=_cell_name(base.display_name, cell))
        try:
            out.append((cell, jobs_svc._validate(ctx, user, spec_to_dict(spec)), ""))
        except ValidationError as e:
            if e.field not in ("constraint", "gpus", "nodes", "gpu_model", "cpus", "mem"):
                raise  # not about the cell: the whole group is bad
            out.append((cell, None, e.message))
    return out


def _cell_name(base: str, cell: Mapping[str, str]) -> str:
    tail = "-".join("".join(ch if ch.isalnum() or ch in "._" else "_" for ch in v) for v in cell.values())
    return f"{base}.{tail}"[:128]


def _cell_text(cell: Mapping[str, str]) -> str:
    return ",".join(constraint_term(k, v) if k != "GPUFLEET_ARRAY_INDEX" else f"index={v}" for k, v in cell.items())


def get(ctx: Ctx, user: User, group_id: int) -> dict[str, Any]:
    g = repo.get_group(ctx.store.engine, group_id)
    if not can_see(user, g["tenant"]):
        raise NotFound("group", group_id)  # another tenant's groups stay unknown
    return g


def list_groups(ctx: Ctx, user: User, limit: int = 100) -> list[dict[str, Any]]:
    rows = repo.list_groups(ctx.store.engine, None if user.admin else user.tenant, limit)
    return [{k: g[k] for k in ("id", "kind", "name", "tenant", "user", "created_at")} |
            {"jobs": sum(1 for c in g["cells"] if c.get("job_id"))} for g in rows]


def show(ctx: Ctx, user: User, group_id: int) -> dict[str, Any]:
    g = get(ctx, user, group_id)
    ids = [c["job_id"] for c in g["cells"] if c.get("job_id")]
    jobs = {j.id: j for j in ctx.store.list_jobs(ids=ids, limit=len(ids) + 1)} if ids else {}
    cells = [_cell_out(ctx, c, jobs.get(c.get("job_id"))) for c in g["cells"]]
    summary: dict[str, int] = {}
    for c in cells:
        summary[c["result"]] = summary.get(c["result"], 0) + 1
    return {"id": g["id"], "kind": g["kind"], "name": g["name"], "tenant": g["tenant"], "user": g["user"],
            "created_at": g["created_at"], "axes": g["axes"], "max_running": g["max_running"],
            "dependency": g["dependency"], "cells": cells, "summary": summary}


def _cell_out(ctx: Ctx, c: Mapping[str, Any], job: Job | None) -> dict[str, Any]:
    base = {"index": c["index"], "cell": c["cell"], "job_id": c.get("job_id")}
    if job is None:
        return base | {"state": "IMPOSSIBLE", "result": "impossible", "reason": c.get("reason", ""),
                       "exit_code": None, "metric": None, "tests": None}
    tests, metric = _outcomes(ctx, job)
    return base | {"state": job.state.value, "result": verdict(job, tests), "reason": job.reason,
                   "exit_code": job.exit_code, "metric": metric, "tests": tests}


def _outcomes(ctx: Ctx, job: Job) -> tuple[dict[str, int] | None, dict[str, Any] | None]:
    """JUnit outcomes of the job's latest attempt ({passed: 3, failed: 1}), and its headline
    metric (the first result it recorded)."""
    cases = query_cases(ctx.store.engine, job_id=job.id)
    last = max((c.attempt or 0 for c in cases), default=0)
    tests: dict[str, int] = {}
    for c in cases:
        if (c.attempt or 0) == last:
            tests[c.outcome] = tests.get(c.outcome, 0) + 1
    results = query_results(ctx.store.engine, job_id=job.id)
    metric = None
    if results:
        top = max(results, key=lambda r: r.attempt or 0)
        first = next(r for r in results if (r.attempt or 0) == (top.attempt or 0))
        metric = {"benchmark": first.benchmark, "metric": first.metric, "value": first.value, "unit": first.unit}
    return tests or None, metric


def verdict(job: Job, tests: Mapping[str, int] | None) -> str:
    """pass | fail | running | pending | cancelled: JUnit failures/errors fail a cell whatever the
    exit code; otherwise the job's end decides (SUCCEEDED: pass)."""
    if job.state is JobState.PENDING:
        return "pending"
    if job.state is JobState.RUNNING:
        return "running"
    if tests and (tests.get("failed") or tests.get("error")):
        return "fail"
    if job.state is JobState.SUCCEEDED:
        return "pass"
    if job.state is JobState.CANCELLED:
        return "cancelled"
    return "fail"


def cancel(ctx: Ctx, user: User, group_id: int) -> dict[str, Any]:
    g = get(ctx, user, group_id)
    done = []
    for c in g["cells"]:
        if c.get("job_id"):
            job = jobs_svc.cancel(ctx, user, c["job_id"], f"group {group_id} cancelled by {user.name}")
            if not job.extra.get("already_finished"):
                done.append(job.id)
    return {"id": group_id, "cancelled": done}

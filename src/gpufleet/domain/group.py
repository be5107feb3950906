"""Job groups (test matrices, arrays) and dependencies: parsing user input into plain values.

- matrix: `sku=A,B` (repeatable) -> {"sku": ["A", "B"]}; the cells are the cartesian product,
  each cell's values become constraints of its job.
- array: `0-99`, `1,3,5-7`, `0-20:5` (step), with `%N` for at most N running at once (Slurm's
  --array syntax); each task gets GPUFLEET_ARRAY_INDEX.
- dependency: `afterok:12[:13],afterany:14,afternotok:15` (Slurm's --dependency, "," = all of them).
"""

from __future__ import annotations

import itertools
import re
from typing import Any, Mapping, Sequence

from gpufleet.domain.errors import ValidationError
from gpufleet.domain.states import JobState

DEPENDENCY_KINDS = ("afterok", "afternotok", "afterany")
MAX_CELLS = 1000  # jobs in one group (matrix cells or array tasks)
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_RANGE = re.compile(r"(\d+)(?:-(\d+)(?::(\d+))?)?")


def parse_matrix(value: Any) -> dict[str, list[str]]:
    """`["sku=A,B", "driver=X"]` or {"sku": ["A", "B"], ...} -> {key: [values]} (order kept)."""
    if value is None or value == [] or value == {}:
        return {}
    if isinstance(value, str):
        value = [value]
    axes: dict[str, list[str]] = {}
    if isinstance(value, Mapping):
        items = [(str(k), v if isinstance(v, (list, tuple)) else str(v).split(",")) for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        items = []
        for item in value:
            k, sep, vs = str(item).partition("=")
            if not sep:
                raise ValidationError("matrix", f"expected KEY=V1,V2, got {item!r}")
            items.append((k, vs.split(",")))
    else:
        raise ValidationError("matrix", "must be KEY=V1,V2 (repeatable) or a mapping of lists")
    for k, vs in items:
        k = k.strip()
        if not _KEY.fullmatch(k):
            raise ValidationError("matrix", f"bad key {k!r}")
        if k in axes:
            raise ValidationError("matrix", f"{k} given twice")
        vals = [str(v).strip() for v in vs if str(v).strip()]
        if not vals or any("\n" in v or "\0" in v for v in vals):
            raise ValidationError("matrix", f"{k}: needs one or more values")
        if len(set(vals)) != len(vals):
            raise ValidationError("matrix", f"{k}: a value is repeated")
        axes[k] = vals
    if len(matrix_cells(axes)) > MAX_CELLS:
        raise ValidationError("matrix", f"more than {MAX_CELLS} cells")
    return axes


def matrix_cells(axes: Mapping[str, Sequence[str]]) -> list[dict[str, str]]:
    """The cartesian product, first axis slowest: [{sku: A, driver: X}, {sku: A, driver: Y}, ...]."""
    keys = list(axes)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(axes[k] for k in keys))]


def parse_array(value: Any) -> tuple[list[int], int | None]:
    """`0-99%10` -> ([0..99], 10). Indices sorted, unique, at most MAX_CELLS."""
    s = str(value).strip()
    spec, _, limit = s.partition("%")
    max_running = None
    if limit:
        if not limit.isdigit() or int(limit) < 1:
            raise ValidationError("array", f"%{limit}: the limit must be a positive integer")
        max_running = int(limit)
    out: set[int] = set()
    for part in spec.split(","):
        m = _RANGE.fullmatch(part.strip())
        if not m:
            raise ValidationError("array", f"expected N, N-M, N-M:STEP (comma-separated, optional %LIMIT), got {s!r}")
        lo, hi, step = int(m.group(1)), int(m.group(2) or m.group(1)), int(m.group(3) or 1)
        if hi < lo or step < 1:
            raise ValidationError("array", f"{part}: an empty range")
        if (hi - lo) // step + 1 + len(out) > MAX_CELLS:
            raise ValidationError("array", f"more than {MAX_CELLS} tasks")
        out.update(range(lo, hi + 1, step))
    return sorted(out), max_running


def parse_dependency(value: Any) -> tuple[tuple[str, int], ...]:
    """`afterok:12:13,afterany:14` (or a list of such) -> (("afterok", 12), ("afterok", 13), ...)."""
    if value is None or value == "" or value == []:
        return ()
    if isinstance(value, (list, tuple)) and all(isinstance(v, (list, tuple)) and len(v) == 2 for v in value):
        items = [f"{k}:{i}" for k, i in value]  # the stored form
    else:
        items = [value] if isinstance(value, str) else [str(v) for v in value]
    out: list[tuple[str, int]] = []
    for item in items:
        for term in str(item).split(","):
            kind, *ids = term.strip().split(":")
            if kind not in DEPENDENCY_KINDS:
                raise ValidationError("dependency", f"{term!r}: one of {', '.join(DEPENDENCY_KINDS)} then :ID[:ID]")
            if not ids or not all(i.isdigit() and int(i) > 0 for i in ids):
                raise ValidationError("dependency", f"{term!r}: job ids must be positive integers")
            out += [(kind, int(i)) for i in ids if (kind, int(i)) not in out]
    return tuple(out)


def dependency_text(deps: Sequence[tuple[str, int]]) -> str:
    return ",".join(f"{k}:{i}" for k, i in deps)


def dependency_verdict(kind: str, state: JobState | None) -> bool | None:
    """True: met, False: can never be met, None: not yet (the job it waits for is not over)."""
    if state is None:
        return False  # no such job
    if not state.terminal:
        return None
    if kind == "afterany":
        return True
    ok = state is JobState.SUCCEEDED
    return ok if kind == "afterok" else not ok

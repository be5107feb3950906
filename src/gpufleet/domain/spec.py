"""Building a JobSpec from user input (CLI flags, YAML, REST): one set of rules, named fields.

The YAML file mirrors the CLI flags one to one: `gpus`, `nodes`, `gpu_model`, `cpus`, `mem`,
`time_limit`, `tenant`, `priority`, `name`, `env`, `workdir`, `constraint`, `booking`,
`requeue`, `image`, `mounts` (SRC:DST[:ro], with an image), `pull` (always|missing|never, with an
image), `perf` (true or {clocks, max_temp_c, sample_s}), `artifacts` (globs relative to the
workdir), `dependency` (afterok:ID[:ID],afterany:ID,afternotok:ID), `board` ({image, flash,
power_cycle}: embedded boards, docs/boards.md), `restart` (never|on-node-fault|on-failure[:N]),
`heartbeat` (a duration), `nodes` as MIN:MAX for an elastic gang (docs/training.md), `command`.
"""

from __future__ import annotations

import os
import re
import shlex
from typing import Any, Mapping

from gpufleet.domain.board import board_from_dict, parse_board
from gpufleet.domain.errors import ValidationError
from gpufleet.domain.globs import check_globs
from gpufleet.domain.group import parse_dependency
from gpufleet.domain.image import DEFAULT_PULL, parse_image, parse_mounts, parse_pull
from gpufleet.domain.job import JobSpec
from gpufleet.domain.node import normalise_model
from gpufleet.domain.perf import parse_perf, perf_from_dict
from gpufleet.domain.training import parse_heartbeat, parse_nodes, parse_restart
from gpufleet.domain.units import MAX_INT, parse_duration, parse_mem_mb

SPEC_FIELDS = (
    "command", "gpus", "nodes", "gpu_model", "cpus", "mem", "time_limit", "tenant", "priority",
    "name", "env", "workdir", "constraint", "booking", "requeue", "image", "mounts", "pull", "perf",
    "artifacts", "dependency", "label", "board", "restart", "heartbeat", "nodes_min",
)
_ALIASES = {"gpu-model": "gpu_model", "time-limit": "time_limit", "constraints": "constraint", "labels": "label",
            "mem_mb": "mem", "time_limit_s": "time_limit", "no_requeue": None}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")  # always fullmatch: `$` lets "x\n" pass
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_PRIORITY = 1000
MAX_ENV = 4096  # entries
MAX_ARG_BYTES = 131072  # one argument (Linux MAX_ARG_STRLEN)


def _arg_max() -> int:
    """The OS limit on argv + environment for one exec (SC_ARG_MAX), 2 MiB if unknown."""
    try:
        return int(os.sysconf("SC_ARG_MAX"))
    except (ValueError, OSError, AttributeError):
        return 2 * 1024 * 1024


def build_spec(data: Mapping[str, Any], default_tenant: str = "default") -> JobSpec:
    """Validate user input into a JobSpec. Raises ValidationError naming the first bad field."""
    data = _canonical_keys(data)
    nodes, nodes_min = _nodes(data)
    spec = JobSpec(
        command=_command(data.get("command")),
        gpus=_count(data.get("gpus", 1), "gpus", minimum=1),
        nodes=nodes,
        nodes_min=nodes_min,
        gpu_model=normalise_model(_text(data["gpu_model"], "gpu_model")) if data.get("gpu_model") else None,
        cpus=_count(data["cpus"], "cpus", minimum=1) if data.get("cpus") is not None else None,
        mem_mb=parse_mem_mb(data.get("mem"), "mem"),
        time_limit_s=parse_duration(data.get("time_limit"), "time_limit"),
        tenant=_name(data.get("tenant") or default_tenant, "tenant"),
        priority=_priority(data.get("priority", 0)),
        name=_name(data["name"], "name") if data.get("name") else None,
        env=_env(data.get("env")),
        workdir=_text(data["workdir"], "workdir") if data.get("workdir") else None,
        constraints=_constraints(data.get("constraint")),
        booking=_count(data["booking"], "booking", minimum=1) if data.get("booking") else None,
        requeue=_bool(data.get("requeue", True), "requeue"),
        image=parse_image(_text(data["image"], "image")) if data.get("image") else None,
        mounts=parse_mounts(data.get("mounts")),
        pull=parse_pull(data.get("pull")),
        perf=parse_perf(data.get("perf")),
        labels=_labels(data.get("label")),
        artifacts=check_globs(data.get("artifacts"), "artifacts"),
        dependency=parse_dependency(data.get("dependency")),
        board=parse_board(data.get("board")),
        restart=parse_restart(data.get("restart")),
        heartbeat_s=parse_heartbeat(data.get("heartbeat")),
    )
    _check_container_fields(spec, data)
    _check_exec_size(spec)
    return spec


def spec_to_dict(spec: JobSpec) -> dict[str, Any]:
    """The stored / wire form: the same keys `build_spec` reads."""
    return {
        "command": list(spec.command), "gpus": spec.gpus, "nodes": spec.nodes,
        "gpu_model": spec.gpu_model, "cpus": spec.cpus, "mem": spec.mem_mb,
        "time_limit": spec.time_limit_s, "tenant": spec.tenant, "priority": spec.priority,
        "name": spec.name, "env": dict(spec.env), "workdir": spec.workdir,
        "constraint": dict(spec.constraints), "booking": spec.booking, "requeue": spec.requeue,
        "image": spec.image, "mounts": list(spec.mounts), "pull": spec.pull,
        "perf": spec.perf.to_dict() if spec.perf else None, "label": dict(spec.labels),
        "artifacts": list(spec.artifacts), "dependency": [list(d) for d in spec.dependency],
        "board": spec.board.to_dict() if spec.board else None,
        "restart": spec.restart, "heartbeat": spec.heartbeat_s, "nodes_min": spec.nodes_min,
    }


def spec_from_dict(d: Mapping[str, Any]) -> JobSpec:
    """Trusted stored form back to a JobSpec (no validation; it was validated on the way in)."""
    return JobSpec(
        command=tuple(d["command"]), gpus=d["gpus"], nodes=d["nodes"], gpu_model=d.get("gpu_model"),
        cpus=d.get("cpus"), mem_mb=d.get("mem"), time_limit_s=d.get("time_limit"),
        tenant=d["tenant"], priority=d.get("priority", 0), name=d.get("name"),
        env=d.get("env") or {}, workdir=d.get("workdir"), constraints=d.get("constraint") or {},
        booking=d.get("booking"), requeue=d.get("requeue", True), image=d.get("image"),
        mounts=tuple(d.get("mounts") or ()), pull=d.get("pull") or DEFAULT_PULL,
        perf=perf_from_dict(d.get("perf")), labels=d.get("label") or {},
        artifacts=tuple(d.get("artifacts") or ()),
        dependency=tuple((k, int(i)) for k, i in d.get("dependency") or ()),
        board=board_from_dict(d.get("board")),
        restart=d.get("restart"), heartbeat_s=d.get("heartbeat"), nodes_min=d.get("nodes_min"),
    )


def _nodes(data: Mapping[str, Any]) -> tuple[int, int | None]:
    """`nodes: 8`, `nodes: "6:8"`, or the stored form `nodes: 8, nodes_min: 6`."""
    nodes, low = parse_nodes(data.get("nodes", 1))
    if data.get("nodes_min") is not None:
        if low is not None:
            raise ValidationError("nodes_min", "give MIN once: nodes: MIN:MAX, or nodes_min with nodes: MAX")
        low = _count(data["nodes_min"], "nodes_min", minimum=1)
        if low > nodes:
            raise ValidationError("nodes_min", f"must be <= nodes ({nodes}), got {low}")
    return nodes, (low if low is not None and low < nodes else None)


def _canonical_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise ValidationError("spec", "must be a mapping of job fields")
    out: dict[str, Any] = {}
    for key, value in data.items():
        k = _ALIASES.get(key, key)
        if key == "no_requeue":
            out["requeue"] = not value
            continue
        if k not in SPEC_FIELDS:
            raise ValidationError(str(key), f"unknown field (known: {', '.join(SPEC_FIELDS)})")
        out[k] = value
    return out


def _command(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        try:
            value = shlex.split(value)
        except ValueError as e:
            raise ValidationError("command", f"cannot split: {e}") from None
    if not value or not isinstance(value, (list, tuple)) or not str(value[0]).strip():
        raise ValidationError("command", "must not be empty")
    args = tuple(str(v) for v in value)
    for i, a in enumerate(args):
        if "\0" in a:
            raise ValidationError("command", f"argument {i} contains a NUL byte")
        if len(a.encode()) > MAX_ARG_BYTES:
            raise ValidationError("command", f"argument {i} is longer than {MAX_ARG_BYTES} bytes (the OS limit)")
    return args


def _check_container_fields(spec: JobSpec, data: Mapping[str, Any]) -> None:
    """`mounts` and `pull` say how to run an image: without one they would silently mean nothing."""
    if spec.image:
        return
    if spec.mounts:
        raise ValidationError("mounts", "bind mounts need a container image (--image)")
    if data.get("pull") not in (None, "", DEFAULT_PULL):
        raise ValidationError("pull", "a pull policy needs a container image (--image)")


def _check_exec_size(spec: JobSpec) -> None:
    """argv + env of one exec must fit the OS limit, or the job could never start."""
    limit = _arg_max()
    argv = sum(len(a.encode()) + 1 for a in spec.command)
    if argv > limit:
        raise ValidationError("command", f"{argv} bytes of arguments, over the OS limit of {limit}")
    env = sum(len(k.encode()) + len(v.encode()) + 2 for k, v in spec.env.items())
    if argv + env > limit:
        raise ValidationError("env", f"{argv + env} bytes of arguments and environment, over the OS limit of {limit}")


def _text(value: Any, field: str) -> str:
    """A one-line string: no NUL, no line breaks (they would become new lines of a rendered script)."""
    s = str(value)
    if "\0" in s or "\n" in s or "\r" in s:
        raise ValidationError(field, "must not contain NUL bytes or line breaks")
    return s


def _count(value: Any, field: str, minimum: int) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, f"must be an integer, got {value!r}")
    if value < minimum:
        raise ValidationError(field, f"must be >= {minimum}, got {value}")
    if value > MAX_INT:
        raise ValidationError(field, f"must be <= {MAX_INT}, got {value}")
    return value


def _priority(value: Any) -> int:
    p = _count(value, "priority", minimum=-MAX_PRIORITY)
    if p > MAX_PRIORITY:
        raise ValidationError("priority", f"must be between -{MAX_PRIORITY} and {MAX_PRIORITY}")
    return p


def _name(value: Any, field: str) -> str:
    s = str(value)
    if not _NAME.fullmatch(s):
        raise ValidationError(field, f"invalid name {s!r} (letters, digits, _ . : -; max 128)")
    return s


def _env(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, (list, tuple)):
        value = dict(_split_pair(item, "env") for item in value)
    if not isinstance(value, Mapping):
        raise ValidationError("env", "must be a mapping or a list of K=V")
    if len(value) > MAX_ENV:
        raise ValidationError("env", f"{len(value)} variables, at most {MAX_ENV}")
    for k, v in value.items():
        if not _ENV_KEY.fullmatch(str(k)):
            raise ValidationError("env", f"invalid variable name {k!r}")
        _text(v, "env")
    return {str(k): str(v) for k, v in value.items()}


def _pairs(value: Any, field: str) -> dict[str, str]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        value = [p for p in value.split(",") if p.strip()]
    if isinstance(value, (list, tuple)):
        items: list[tuple[str, str]] = []
        for v in value:
            items.extend(_split_pair(p, field) for p in str(v).split(",") if p.strip())
        value = dict(items)
    if not isinstance(value, Mapping):
        raise ValidationError(field, "must be K=V[,K=V...]")
    return {_text(k, field).strip(): _text(v, field).strip() for k, v in value.items()}


_CONSTRAINT = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*(>=|<=|!=|==|=|>|<)\s*(.*?)\s*")
COMPARISONS = (">=", "<=", "!=", ">", "<")


def _constraints(value: Any) -> dict[str, str]:
    """`key=value`, `key=a|b`, or a comparison on a version-like attribute: `driver>=550`,
    `cuda_driver<12.4`, `vbios!=96.00.74.00.01`. Stored as {key: value} or {key: ">=550"}."""
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        return _pairs(value, "constraint")
    items = [value] if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else None
    if items is None:
        raise ValidationError("constraint", "must be K=V[,K=V...]")
    out: dict[str, str] = {}
    for item in items:
        for part in str(item).split(","):
            if not part.strip():
                continue
            m = _CONSTRAINT.fullmatch(_text(part, "constraint"))
            if not m or not m.group(3):
                raise ValidationError("constraint", f"expected K=V or K>=V (>, <, <=, !=), got {part.strip()!r}")
            key, op, want = m.groups()
            if op in (">=", "<=", ">", "<") and not re.fullmatch(r"\d+(\.\d+)*", want):
                raise ValidationError("constraint", f"{key}{op}{want}: comparisons need a version like 550 or 12.4")
            out[key] = want if op in ("=", "==") else op + want
    return out


_LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-/]{0,62}")
MAX_LABELS = 32


def _labels(value: Any) -> dict[str, str]:
    """`purpose=dev`, `project=x,purpose=ci` or {key: value}: what `gpufleet usage --by label:KEY`
    groups by. Keys: letters, digits, _.-/ (up to 63); values up to 128 characters."""
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        items = [f"{k}={v}" for k, v in value.items()]
    elif isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, (list, tuple)):
        items = [p for item in value for p in str(item).split(",")]
    else:
        raise ValidationError("label", "must be K=V[,K=V...]")
    out: dict[str, str] = {}
    for item in (i for i in items if str(i).strip()):
        key, v = _split_pair(item, "label")
        v = _text(v.strip(), "label")
        if not _LABEL_KEY.fullmatch(key):
            raise ValidationError("label", f"{key!r}: a label key is letters, digits and _.-/ (up to 63)")
        if len(v) > 128:
            raise ValidationError("label", f"{key}: a label value is at most 128 characters")
        out[key] = v
    if len(out) > MAX_LABELS:
        raise ValidationError("label", f"at most {MAX_LABELS} labels")
    return out


def _split_pair(item: Any, field: str) -> tuple[str, str]:
    k, sep, v = str(item).partition("=")
    if not sep or not k.strip():
        raise ValidationError(field, f"expected K=V, got {item!r}")
    return k.strip(), v


def _bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "yes", "1"):
        return True
    if str(value).lower() in ("false", "no", "0"):
        return False
    raise ValidationError(field, f"must be true or false, got {value!r}")

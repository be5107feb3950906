"""The inventory YAML: the lab's nodes (and, for the simulator, its tenants).

```yaml
nodes:
  - name: dgx            # with `count`: a group expanding to dgx-001 ... dgx-250
    count: 250
    kind: server         # server | desktop | embedded
    gpus: 8              # or a list: [{model: a100, memory: 80G, group: 0}, ...]
    gpu_model: a100
    gpu_memory: 80G
    nvlink_groups: 2     # GPUs split evenly into 2 NVLink groups; or [[0,1,2,3],[4,5,6,7]]
    cpus: 128
    mem: 1T
    arch: x86_64
    labels: {driver: "560.35"}
    nodes_per_rack: 32   # sets label rack=r01, r02, ... (and switch= the same) for group members
tenants:
  - {name: vision, quota: {a100: 16}, limit: {a100: 32}, weight: 2}
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gpufleet.domain import Gpu, Node, NodeKind, Tenant, ValidationError, parse_mem_mb
from gpufleet.domain.node import normalise_model

NODE_KEYS = {
    "name", "count", "kind", "gpus", "gpu_model", "gpu_memory", "nvlink_groups", "cpus", "mem",
    "arch", "labels", "nodes_per_rack", "rack", "switch", "address", "start",
}


@dataclass(slots=True)
class Inventory:
    nodes: list[Node] = field(default_factory=list)
    tenants: list[Tenant] = field(default_factory=list)


def load_inventory(path: str | Path) -> Inventory:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ValidationError("inventory", f"no such file: {path}") from None
    except yaml.YAMLError as e:
        raise ValidationError("inventory", f"not valid YAML: {e}") from None
    return parse_inventory(data or {})


def parse_inventory(data: dict[str, Any]) -> Inventory:
    if not isinstance(data, dict):
        raise ValidationError("inventory", "must be a mapping with a `nodes` list")
    unknown = set(data) - {"nodes", "tenants"}
    if unknown:
        raise ValidationError("inventory", f"unknown keys: {sorted(unknown)}")
    nodes: list[Node] = []
    for i, entry in enumerate(data.get("nodes") or []):
        nodes.extend(_expand(entry, f"nodes[{i}]"))
    names = [n.name for n in nodes]
    dupes = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) != len(names) else []
    if dupes:
        raise ValidationError("nodes", f"duplicate node names: {dupes[:5]}")
    tenants = [_tenant(t, f"tenants[{i}]") for i, t in enumerate(data.get("tenants") or [])]
    return Inventory(nodes, tenants)


def _expand(entry: dict[str, Any], where: str) -> list[Node]:
    if not isinstance(entry, dict) or not entry.get("name"):
        raise ValidationError(f"{where}.name", "every node entry needs a name")
    unknown = set(entry) - NODE_KEYS
    if unknown:
        raise ValidationError(where, f"unknown keys: {sorted(unknown)}")
    count = entry.get("count")
    if count is None:
        return [_node(entry, entry["name"], 0, where)]
    if not isinstance(count, int) or count < 1:
        raise ValidationError(f"{where}.count", "must be a positive integer")
    width = max(3, len(str(count)))
    start = int(entry.get("start", 1))
    return [_node(entry, f"{entry['name']}-{k:0{width}d}", k - start, where)
            for k in range(start, start + count)]


def _node(entry: dict[str, Any], name: str, ordinal: int, where: str) -> Node:
    try:
        kind = NodeKind(entry.get("kind", "server"))
    except ValueError:
        raise ValidationError(f"{where}.kind", "must be server, desktop or embedded") from None
    labels = {str(k): str(v) for k, v in (entry.get("labels") or {}).items()}
    per_rack = entry.get("nodes_per_rack")
    if per_rack:
        labels.setdefault("rack", f"r{ordinal // int(per_rack) + 1:02d}")
        labels.setdefault("switch", labels["rack"])
    for key in ("rack", "switch"):
        if entry.get(key):
            labels[key] = str(entry[key])
    return Node(
        name=name,
        kind=kind,
        arch=str(entry.get("arch", "aarch64" if kind is NodeKind.EMBEDDED else "x86_64")),
        cpus=_int(entry.get("cpus", 0), f"{where}.cpus"),
        mem_mb=parse_mem_mb(entry.get("mem"), f"{where}.mem") or 0,
        labels=labels,
        gpus=_gpus(entry, name, where),
        address=str(entry.get("address", "127.0.0.1")),
    )


def _gpus(entry: dict[str, Any], node: str, where: str) -> tuple[Gpu, ...]:
    spec = entry.get("gpus", 0)
    mem = parse_mem_mb(entry.get("gpu_memory"), f"{where}.gpu_memory") or 0
    default_model = normalise_model(str(entry.get("gpu_model", "gpu")))
    if isinstance(spec, list):
        return tuple(
            Gpu(index=i, model=normalise_model(str(g.get("model", default_model))),
                uuid=str(g.get("uuid", f"GPU-{node}-{i}")),
                memory_mb=parse_mem_mb(g.get("memory"), f"{where}.gpus[{i}].memory") or mem,
                group=int(g.get("group", 0)))
            for i, g in enumerate(spec)
        )
    n = _int(spec, f"{where}.gpus")
    groups = _groups(entry.get("nvlink_groups"), n, f"{where}.nvlink_groups")
    return tuple(Gpu(i, default_model, f"GPU-{node}-{i}", mem, groups[i]) for i in range(n))


def _groups(spec: Any, n: int, where: str) -> list[int]:
    if spec is None:
        return [0] * n
    if isinstance(spec, int):
        if spec < 1 or n % spec:
            raise ValidationError(where, f"{n} GPUs do not split evenly into {spec} groups")
        size = n // spec
        return [i // size for i in range(n)]
    out = [-1] * n
    for g, members in enumerate(spec):
        for i in members:
            if not 0 <= i < n:
                raise ValidationError(where, f"GPU index {i} out of range 0..{n - 1}")
            out[i] = g
    if -1 in out:
        raise ValidationError(where, f"GPU {out.index(-1)} is in no group")
    return out


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(where, f"must be a non-negative integer, got {value!r}")
    return value


def _tenant(entry: dict[str, Any], where: str) -> Tenant:
    if not isinstance(entry, dict) or not entry.get("name"):
        raise ValidationError(f"{where}.name", "every tenant needs a name")
    quota = {normalise_model(str(k)): _int(v, f"{where}.quota.{k}") for k, v in (entry.get("quota") or {}).items()}
    limit = entry.get("limit")
    if limit is not None:
        limit = {normalise_model(str(k)): _int(v, f"{where}.limit.{k}") for k, v in limit.items()}
    weight = float(entry.get("weight", 1.0))
    if weight <= 0:
        raise ValidationError(f"{where}.weight", "must be positive")
    return Tenant(str(entry["name"]), quota, limit, weight)

"""Inventory from the API server: Kubernetes Node objects -> gpufleet `Node`s; cordon/taint patches."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from kubernetes.utils import parse_quantity

from gpufleet.domain import Gpu, Node, NodeKind, NodeState, normalise_model
from gpufleet.executors.base import FOREIGN_GPUS_LABEL
from gpufleet.executors.kubernetes import names as n
from gpufleet.executors.kubernetes.config import KubernetesConfig

Obj = dict[str, Any]
_ARCH = {"amd64": "x86_64", "arm64": "aarch64", "ppc64le": "ppc64le"}
_UNREACHABLE = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
_CORDON = "node.kubernetes.io/unschedulable"  # added by the node controller when cordoned


def model_of(product: str) -> str:
    """GFD product label -> gpufleet model: 'NVIDIA-A100-SXM4-80GB' -> 'a100'."""
    return normalise_model(product.replace("-", " ").replace("_", " ")) if product else "gpu"


def _int(q: Any, scale: int = 1) -> int:
    try:
        return int(parse_quantity(q) / scale) if q is not None else 0
    except ValueError:
        return 0


def tolerated(taint: Mapping[str, str], tolerations: Iterable[Mapping[str, str]]) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator") == "Exists" and (not t.get("key") or t["key"] == taint.get("key")):
            return True
        if t.get("key") == taint.get("key") and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def node_state(cfg: KubernetesConfig, kn: Obj) -> tuple[NodeState, str]:
    """DOWN when not Ready; DRAIN when cordoned or tainted so that our pods cannot land; else UP."""
    ready = next((c for c in (kn.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is None or ready.get("status") != "True":
        msg = (ready or {}).get("message") or "no Ready condition"
        return NodeState.DOWN, f"NotReady: {msg}"
    spec = kn.get("spec") or {}
    ann = (kn["metadata"].get("annotations") or {})
    taints = [t for t in spec.get("taints") or [] if t.get("effect") in ("NoSchedule", "NoExecute")]
    for t in taints:
        if t.get("key") in _UNREACHABLE:
            return NodeState.DOWN, f"taint {t['key']}"
    ours = ann.get(n.DRAIN_REASON_ANN)
    if ours is not None and (spec.get("unschedulable") or any(t.get("key") == n.DRAIN_TAINT for t in taints)):
        return NodeState.DRAIN, ours
    if spec.get("unschedulable"):
        return NodeState.DRAIN, "cordoned in Kubernetes"
    blocking = [t for t in taints if t.get("key") != _CORDON and not tolerated(t, cfg.tolerations)]
    if blocking:
        t = blocking[0]
        value = f"={t['value']}" if t.get("value") else ""
        return NodeState.DRAIN, f"taint {t['key']}{value}:{t['effect']}"
    return NodeState.UP, ""


def to_node(cfg: KubernetesConfig, kn: Obj, foreign_gpus: int, now: float) -> Node:
    meta, status = kn["metadata"], kn.get("status") or {}
    labels = dict(meta.get("labels") or {})
    alloc = status.get("allocatable") or {}
    count = _int(alloc.get(cfg.gpu_resource))
    model = model_of(labels.get(cfg.product_label, ""))
    mem = _int(labels.get(cfg.memory_label, "0") or "0")
    gpus = tuple(Gpu(index=i, model=model, memory_mb=mem) for i in range(count))
    if foreign_gpus:
        labels[FOREIGN_GPUS_LABEL] = f"n:{foreign_gpus}"
    state, reason = node_state(cfg, kn)
    addr = next((a["address"] for a in status.get("addresses") or [] if a.get("type") == "InternalIP"), "")
    arch = labels.get("kubernetes.io/arch", "amd64")
    return Node(name=meta["name"], kind=NodeKind.SERVER, arch=_ARCH.get(arch, arch),
                cpus=_int(alloc.get("cpu")), mem_mb=_int(alloc.get("memory"), 1024 * 1024),
                labels=labels, gpus=gpus, state=state, reason=reason, address=addr or meta["name"],
                updated_at=now)


def pod_gpus(pod: Obj, resource: str) -> int:
    """GPUs a pod holds: max(sum of containers, any init container), as the scheduler counts."""
    spec = pod.get("spec") or {}

    def want(c: Obj) -> int:
        res = c.get("resources") or {}
        return _int((res.get("limits") or {}).get(resource) or (res.get("requests") or {}).get(resource))

    main = sum(want(c) for c in spec.get("containers") or [])
    init = max((want(c) for c in spec.get("initContainers") or []), default=0)
    return max(main, init)


def foreign_gpus(cfg: KubernetesConfig, pods: Iterable[Obj]) -> dict[str, int]:
    """node -> GPUs held by active pods that this gpufleet instance did not create."""
    out: dict[str, int] = {}
    for p in pods:
        node = (p.get("spec") or {}).get("nodeName")
        if not node or (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        if (p["metadata"].get("labels") or {}).get(n.INSTANCE) == cfg.instance:
            continue
        g = pod_gpus(p, cfg.gpu_resource)
        if g:
            out[node] = out.get(node, 0) + g
    return out


def drain_patch(kn: Obj, reason: str) -> Obj:
    """Cordon + a NoSchedule taint carrying the reason (+ the full reason as an annotation)."""
    taints = [t for t in (kn.get("spec") or {}).get("taints") or [] if t.get("key") != n.DRAIN_TAINT]
    taints.append({"key": n.DRAIN_TAINT, "value": n.label_value(reason) or "drained", "effect": "NoSchedule"})
    return {"metadata": {"annotations": {n.DRAIN_REASON_ANN: reason},
                         "resourceVersion": kn["metadata"]["resourceVersion"]},
            "spec": {"unschedulable": True, "taints": taints}}


def resume_patch(kn: Obj) -> Obj:
    taints = [t for t in (kn.get("spec") or {}).get("taints") or [] if t.get("key") != n.DRAIN_TAINT]
    return {"metadata": {"annotations": {n.DRAIN_REASON_ANN: None},
                         "resourceVersion": kn["metadata"]["resourceVersion"]},
            "spec": {"unschedulable": None, "taints": taints or None}}

"""Hardware identity and perf-run use-cases: refresh from NVML, show a node, a job's perf runs."""

from __future__ import annotations

from typing import Any, Iterable

from gpufleet.domain import NotFound
from gpufleet.inventory.identity import read_identity
from gpufleet.observability.logs import loop_logger
from gpufleet.services.context import Ctx, can_see
from gpufleet.store.hardware import HardwareRepo

log = loop_logger("hardware")


def refresh_identity(repo: HardwareRepo, provider: Any, nodes: Iterable[Any], now: float) -> dict[str, list[str]]:
    """Read every reachable node's identity through NVML and store it (versioned). Returns the
    changes per node (driver upgrade, VBIOS flash, ...); unreachable nodes are skipped."""
    out: dict[str, list[str]] = {}
    if provider is None:
        return out
    for node in nodes:
        nvml = provider.for_node(node.name)
        if nvml is None:
            continue
        try:
            nvml.nvmlInit()
        except Exception as e:
            log.warning("NVML unavailable for identity", node=node.name, error=str(e))
            continue
        try:
            changes = repo.record_identity(node.name, read_identity(nvml), now)
        except Exception as e:
            log.warning("could not read hardware identity", node=node.name, error=str(e))
            continue
        finally:
            try:
                nvml.nvmlShutdown()
            except Exception:
                pass
        for c in changes:
            log.warning("hardware changed", node=node.name, change=c)
        out[node.name] = changes
    return out


def node_hardware(ctx: Ctx, name: str) -> dict[str, Any]:
    """`show-node NAME`: the node, its identity now, each GPU, and every change with its time."""
    node = ctx.store.get_node(name)  # NotFound names the node
    repo = HardwareRepo(ctx.store)
    ident = repo.identity(name)
    changes = [{"at": e.at, "change": e.reason} for e in ctx.store.events("hardware", name)]
    return {"node": name, "state": node.state.value, "reason": node.reason, "labels": dict(node.labels),
            "identity": ident.to_dict() if ident else None, "changes": changes}


def job_perf(ctx: Ctx, user, job_id: int, samples: bool = False) -> list[dict[str, Any]]:
    """A job's perf runs (one per attempt and node), optionally with their samples."""
    job = ctx.store.get_job(job_id)
    if not can_see(user, job.tenant):
        raise NotFound("job", job_id)
    repo = HardwareRepo(ctx.store)
    out = []
    for run in repo.runs(job_id):
        d = run.to_dict()
        if samples:
            d["samples"] = [s.to_dict() for s in repo.samples(job_id, run.attempt, run.node)]
        out.append(d)
    return out

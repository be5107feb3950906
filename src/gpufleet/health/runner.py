"""HealthRunner: run the checks for a node, return one NodeHealth (records to store, verdict).

NVML sessions stay open between runs (the XID check's event sets live inside them): one
`nvmlInit` per node on first use, `nvmlShutdown` on `close()` or when a session breaks.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Callable, Iterable, Protocol, Sequence

from gpufleet.domain import Node
from gpufleet.health.types import Check, CheckContext, CheckRecord, CheckResult, NodeHealth, Status


class NvmlProvider(Protocol):
    def for_node(self, name: str) -> Any | None:
        """A pynvml-like module for node `name`, or None when NVML cannot reach that node."""


class LocalNvml:
    """Real NVML (pynvml) for the node(s) this server runs on; other nodes are unreachable."""

    def __init__(self, local_names: Iterable[str], module: Any = None):
        self.local_names = frozenset(local_names)
        self._module = module

    def for_node(self, name: str) -> Any | None:
        if name not in self.local_names:
            return None
        if self._module is None:
            import pynvml  # nvidia-ml-py

            self._module = pynvml
        return self._module


class HealthRunner:
    def __init__(self, checks: Sequence[Check], nvml: NvmlProvider | None = None,
                 clock: Callable[[], float] = time.time, host_nodes: Iterable[str] | None = None):
        """`host_nodes`: the nodes that execute on this server's host. Checks that measure the
        host (`host_check = True`: disk, memory) run only there; None means every node."""
        names = [c.name for c in checks]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"duplicate check names: {sorted(dupes)}")
        self.checks = list(checks)
        self.nvml = nvml
        self.clock = clock
        self.host_nodes = frozenset(host_nodes) if host_nodes is not None else None
        self._sessions: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def check_names(self) -> list[str]:
        return [c.name for c in self.checks]

    def run(self, node: Node, only: Iterable[str] | None = None) -> NodeHealth:
        """Run every check (or those named in `only`) on `node`. Never raises for a check's sake."""
        wanted = set(only) if only is not None else None
        if wanted is not None and (unknown := wanted - set(self.check_names)):
            raise ValueError(f"unknown checks: {sorted(unknown)}")
        run_id = uuid.uuid4().hex[:12]
        started = self.clock()
        module, error = self._session(node.name)
        records: list[CheckRecord] = []
        requeue = False
        for check in self.checks:
            if wanted is not None and check.name not in wanted:
                continue
            if getattr(check, "host_check", False) and self.host_nodes is not None \
                    and node.name not in self.host_nodes:
                continue  # this server's disk says nothing about a remote node
            ctx = CheckContext(node=node, now=self.clock(), nvml=module, nvml_error=error)
            t0 = time.perf_counter()
            result = self._run_one(check, ctx)
            records.append(CheckRecord(node.name, check.name, ctx.now, result.status, result.message,
                                       dict(result.facts), round(time.perf_counter() - t0, 6), run_id))
            requeue = requeue or (result.status is Status.FAIL and check.requeue_on_fail)
            if module is not None and _session_broken(module, result):
                self._drop(node.name)
        return NodeHealth(node.name, started, run_id, tuple(records), requeue)

    def _run_one(self, check: Check, ctx: CheckContext) -> CheckResult:
        try:
            return check.run(ctx)
        except Exception as e:  # a check must not take the loop down
            nvml = ctx.nvml
            if nvml is not None and isinstance(e, nvml.NVMLError):
                lost = getattr(e, "value", None) == nvml.NVML_ERROR_GPU_IS_LOST
                return CheckResult(Status.FAIL if lost else Status.WARN, f"NVML error: {e}",
                                   {"error": str(e), "nvml_code": getattr(e, "value", None)})
            return CheckResult.warn(f"check crashed: {e.__class__.__name__}: {e}", error=repr(e))

    def _session(self, node: str) -> tuple[Any, str]:
        if self.nvml is None:
            return None, ""
        with self._lock:
            if node in self._sessions:
                return self._sessions[node], ""
            module = self.nvml.for_node(node)
            if module is None:  # not an NVML node of this server (remote, virtual): checks skip
                return None, ""
            try:
                module.nvmlInit()
            except Exception as e:  # no driver / library: reported by the gpu_inventory check
                return None, f"{e.__class__.__name__}: {e}"
            self._sessions[node] = module
            return module, ""

    def _drop(self, node: str) -> None:
        with self._lock:
            module = self._sessions.pop(node, None)
        for check in self.checks:
            forget = getattr(check, "forget", None)
            if forget is not None:
                forget(node, module)
        if module is not None:
            try:
                module.nvmlShutdown()
            except Exception:
                pass

    def close(self) -> None:
        for node in list(self._sessions):
            self._drop(node)


def _session_broken(module: Any, result: CheckResult) -> bool:
    code = result.facts.get("nvml_code") if isinstance(result.facts, dict) else None
    return code in (getattr(module, "NVML_ERROR_UNINITIALIZED", -1),
                    getattr(module, "NVML_ERROR_DRIVER_NOT_LOADED", -1))

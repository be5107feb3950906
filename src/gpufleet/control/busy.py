"""Busy GPU-seconds of running attempts, sampled through NVML where this server reaches a node.

Every `interval_s` (checked once a control cycle): one utilisation read per allocated GPU
(nvmlDeviceGetUtilizationRates, the same reading a perf run's samples hold), taken as the GPU's
busy share since the attempt's previous sample (or its start), added to the attempt's open usage
rows per (node, GPU model) in one write, and to `gpufleet_gpu_busy_seconds_total`. Nodes NVML does
not reach (Slurm, Kubernetes, or no driver) are not sampled: their rows keep busy_gpu_s NULL.

The NVML session of a node is opened on first use and kept (pynvml counts nvmlInit calls);
`close()` ends them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from gpufleet.domain import Job, JobState, Node
from gpufleet.observability.logs import loop_logger

log = loop_logger("usage")
DEFAULT_INTERVAL_S = 10.0


@dataclass
class BusySampler:
    nvml: Any  # an NvmlProvider: for_node(name) -> pynvml-like module or None
    store: Any  # a Store (add_busy)
    on_busy: Callable[[str, str, str, float], None] | None = None  # (tenant, user, model, GPU-seconds)
    interval_s: float = DEFAULT_INTERVAL_S
    _last: dict[tuple[int, int], float] = field(default_factory=dict)  # (job, attempt) -> sampled up to
    _sessions: dict[str, Any] = field(default_factory=dict)
    _next: float = 0.0

    def sample(self, jobs: Iterable[Job], nodes: Iterable[Node], now: float) -> int:
        """One pass if the interval has passed; returns the GPUs read."""
        if self.nvml is None or now < self._next:
            return 0
        self._next = now + self.interval_s
        models = {n.name: {g.index: g.model for g in n.gpus} for n in nodes}
        items: list[dict] = []
        live = set()
        read = 0
        for job in jobs:
            if job.state is not JobState.RUNNING or job.started_at is None or not job.allocation:
                continue
            key = (job.id, job.attempt)
            live.add(key)
            dt = now - max(job.started_at, self._last.get(key, job.started_at))
            if dt <= 0:
                continue
            for a in job.allocation:
                per_model = self._read(a.node, a.gpus, models.get(a.node, {}))
                read += sum(len(v) for v in per_model.values())
                for model, utils in per_model.items():
                    busy = sum(utils) / 100.0 * dt
                    items.append({"job_id": job.id, "n": job.attempt, "node": a.node, "gpu_model": model,
                                  "busy_s": busy, "seconds": dt})
                    if self.on_busy is not None:
                        self.on_busy(job.tenant, job.user, model, busy)
            self._last[key] = now
        self._last = {k: v for k, v in self._last.items() if k in live}
        if items:
            self.store.add_busy(items)
        return read

    def _read(self, node: str, gpus: Iterable[int], models: dict[int, str]) -> dict[str, list[float]]:
        """GPU utilisation (percent) of `gpus` on `node` by model; {} when NVML does not reach it."""
        nvml = self._session(node)
        if nvml is None:
            return {}
        out: dict[str, list[float]] = {}
        for g in gpus:
            try:
                util = nvml.nvmlDeviceGetUtilizationRates(nvml.nvmlDeviceGetHandleByIndex(g)).gpu
            except Exception as e:  # a lost GPU reads as idle; the health loop reports it
                log.warning("utilisation read failed", node=node, gpu=g, error=str(e))
                util = 0
            out.setdefault(models.get(g, "unknown"), []).append(max(0.0, min(100.0, float(util))))
        return out

    def _session(self, node: str) -> Any:
        if node in self._sessions:
            return self._sessions[node]
        module = self.nvml.for_node(node)
        if module is not None:
            try:
                module.nvmlInit()
            except Exception as e:
                log.warning("NVML unavailable; GPU utilisation not sampled", node=node, error=str(e))
                module = None
        self._sessions[node] = module
        return module

    def close(self) -> None:
        for module in self._sessions.values():
            if module is not None:
                try:
                    module.nvmlShutdown()
                except Exception:
                    pass
        self._sessions.clear()

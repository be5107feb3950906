"""GpuModelFilter: the node has GPUs of the model the job asks for."""

from __future__ import annotations

from gpufleet.domain import Job, Node
from gpufleet.scheduler.filters.status import OK, Status


class GpuModelFilter:
    name = "GpuModel"

    def terms(self, job: Job) -> list[str]:
        return [f"gpu_model={job.spec.gpu_model}"] if job.spec.gpu_model else []

    def filter(self, job: Job, node: Node) -> Status:
        model = job.spec.gpu_model
        if model and node.gpu_model != model and model not in node.gpu_models:  # homogeneous nodes: fast
            return Status(False, f"gpu_model={model}", self.name)
        return OK

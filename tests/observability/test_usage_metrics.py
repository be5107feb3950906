"""gpufleet_gpu_seconds_total{tenant,user,gpu_model}: what running attempts held between cycles."""

from __future__ import annotations

from gpufleet.domain import Allocation, Gpu, Job, JobSpec, JobState, Node
from gpufleet.observability import Metrics


def value(m: Metrics, **labels) -> float:
    return m.registry.get_sample_value("gpufleet_gpu_seconds_total", labels) or 0.0


def test_gpu_seconds_count_each_cycle_up_to_the_end_once():
    m = Metrics()
    nodes = [Node("dgx1", gpus=tuple(Gpu(i, "a100") for i in range(4))),
             Node("desk", gpus=(Gpu(0, "rtx4090"),))]
    job = Job(1, JobSpec(("x",), gpus=2, tenant="vision"), user="alice", state=JobState.RUNNING,
              started_at=100.0, allocation=(Allocation("dgx1", (0, 1)),))
    gang = Job(2, JobSpec(("x",), tenant="speech"), user="bob", state=JobState.RUNNING, started_at=150.0,
               allocation=(Allocation("dgx1", (2,)), Allocation("desk", (0,))))
    m.update_fleet([job, gang], nodes, now=200.0)
    assert value(m, tenant="vision", user="alice", gpu_model="a100") == 200.0  # 2 x 100 s
    assert value(m, tenant="speech", user="bob", gpu_model="rtx4090") == 50.0
    job.state, job.ended_at = JobState.SUCCEEDED, 250.0
    m.update_fleet([job, gang], nodes, now=300.0)
    assert value(m, tenant="vision", user="alice", gpu_model="a100") == 300.0  # to its end, not to now
    assert value(m, tenant="speech", user="bob", gpu_model="a100") == 150.0
    m.update_fleet([job, gang], nodes, now=300.0)  # the same cycle seen again: nothing more
    m.update_fleet([gang], nodes, now=310.0)
    assert value(m, tenant="vision", user="alice", gpu_model="a100") == 300.0
    assert value(m, tenant="speech", user="bob", gpu_model="rtx4090") == 160.0

"""Perf runs in the control loop on the fake executor, fake NVML and a fake clock: prolog refuses
and requeues, sampling, epilog validity, whole nodes."""

from __future__ import annotations

import pytest

from gpufleet.control.loop import ControlLoop
from gpufleet.control.perf import PerfGuard
from gpufleet.domain import JobState, NodeState, User
from gpufleet.executors.base import Ability
from gpufleet.executors.fake import FakeClock, FakeExecutor
from gpufleet.inventory.discovery import fake_node
from gpufleet.services import Ctx
from gpufleet.services import jobs as svc
from gpufleet.services.health import build_health_service
from gpufleet.services.tenants import bootstrap
from gpufleet.store import Store, make_engine, migrate
from gpufleet.store.hardware import HardwareRepo

ADMIN = User("admin", "default", admin=True)


@pytest.fixture
def world(tmp_path):
    clock = FakeClock()
    store = Store(make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"))
    migrate(store.engine)
    store.sync_nodes([fake_node(2, "a100", "n1"), fake_node(2, "a100", "n2")])
    ex = FakeExecutor(clock)
    ctx = Ctx(store, ex, clock)
    bootstrap(ctx, [])
    health = build_health_service(ctx, {"nvml": "fake", "remediation": {"enabled": False}})
    loop = ControlLoop(store, ex, clock)
    loop.perf = PerfGuard(health.runner.nvml, HardwareRepo(store), health, clock)
    return ctx, loop, health.fleet, HardwareRepo(store)


def submit(ctx, **spec):
    spec.setdefault("command", ["bench"])
    return svc.submit(ctx, ADMIN, spec)


def test_perf_job_takes_the_whole_node_and_nothing_else_lands_there(world):
    ctx, loop, fleet, repo = world
    job = submit(ctx, gpus=1, perf=True)
    assert job.spec.gpus == 2 and job.spec.constraints["gpu_count"] == "2"
    other = submit(ctx, gpus=1)
    loop.cycle()
    j, o = ctx.store.get_job(job.id), ctx.store.get_job(other.id)
    assert j.state is JobState.RUNNING and len(j.allocation[0].gpus) == 2
    assert o.state is JobState.RUNNING and o.node_names != j.node_names


def test_stray_process_refuses_the_node_drains_it_and_the_job_runs_elsewhere(world):
    ctx, loop, fleet, repo = world
    fleet.stray_process("n1", gpu=0, pid=777)
    job = submit(ctx, perf=True)
    loop.cycle()
    j = ctx.store.get_job(job.id)
    assert j.state is JobState.PENDING and "stray_processes" in j.reason and "pid 777" in j.reason
    assert ctx.store.get_node("n1").state is NodeState.DRAIN
    loop.cycle()
    j = ctx.store.get_job(job.id)
    assert j.state is JobState.RUNNING and j.node_names == ("n2",) and j.attempt == 2
    first = repo.runs(job.id, attempt=1)[0]
    assert first.valid is False and first.reason.startswith("prolog stray_processes")


def test_no_requeue_fails_the_job_when_the_prolog_refuses(world):
    ctx, loop, fleet, repo = world
    fleet.stray_process("n1", 0)
    fleet.stray_process("n2", 1)
    job = submit(ctx, perf=True, requeue=False)
    loop.cycle()
    j = ctx.store.get_job(job.id)
    assert j.state is JobState.FAILED and "no requeue" in j.reason


@pytest.mark.parametrize("fault,check", [
    (lambda f: f.overheat("n1", 0, temp_c=80), "temperature"),
    (lambda f: f.throttle("n1", 1, "sw_power_cap"), "throttle"),
    (lambda f: f.persistence_off("n1", 0), "persistence"),
    (lambda f: f.clock_drop("n1", 0, 600), "clocks"),
    (lambda f: f.ecc_error("n1", 0), "xid_ecc"),
])
def test_each_injected_fault_is_refused_by_its_prolog_check(world, fault, check):
    ctx, loop, fleet, repo = world
    fleet.stray_process("n2", 0)  # keep n2 out: the job must meet n1's fault
    fault(fleet)
    job = submit(ctx, perf={"max_temp_c": 70})
    loop.cycle()
    run = {r.node: r for r in repo.runs(job.id)}["n1"]
    assert run.valid is False
    assert [c.name for c in run.prolog if not c.ok][0] == check or check in run.reason


def test_clean_run_is_valid_with_sampled_conditions_and_clocks_restored(world):
    ctx, loop, fleet, repo = world
    job = submit(ctx, perf={"clocks": "max", "sample_s": 5})
    loop.cycle()
    j = ctx.store.get_job(job.id)
    node = j.node_names[0]
    gpu = fleet._state(node).gpus[0]
    assert gpu.locked_sm_mhz == 1410
    for _ in range(3):
        loop.clock.advance(5)
        loop.cycle()
    ctx.executor.finish(job.id, 0)
    loop.cycle()
    run = repo.runs(job.id)[0]
    assert run.valid is True and run.reason == ""
    assert run.conditions["samples"] >= 3 and run.conditions["sm_mhz"]["min"] == 1410
    assert run.identity.gpus[0].sku == "A100-SXM4-80GB"
    assert gpu.locked_sm_mhz is None  # restored


def test_throttling_during_the_run_marks_it_invalid(world):
    ctx, loop, fleet, repo = world
    job = submit(ctx, perf=True)
    loop.cycle()
    node = ctx.store.get_job(job.id).node_names[0]
    loop.clock.advance(5)
    loop.cycle()
    fleet.throttle(node, 0, "hw_slowdown")
    fleet.clock_drop(node, 1, 700)
    loop.clock.advance(5)
    loop.cycle()
    ctx.executor.finish(job.id, 0)
    loop.cycle()
    run = repo.runs(job.id)[0]
    assert run.valid is False
    assert "throttle: GPU 0: hw_slowdown" in run.reason and "clock_drop: GPU 1" in run.reason
    assert "hw_slowdown" in run.conditions["throttle"]


# ---------------------------------------------------------------- steps run inside the allocation


class InJobExecutor(FakeExecutor):
    """An engine whose perf steps run in the job (Slurm): it hands back what they wrote."""

    abilities = FakeExecutor.abilities | {Ability.PERF_IN_JOB}

    def __init__(self, clock):
        super().__init__(clock)
        self.verdicts: dict[tuple[int, int], list[dict]] = {}

    def perf_verdicts(self, job, attempt):
        return self.verdicts.get((job.id, attempt), []), []


class NoNvml:
    def for_node(self, name):
        return None  # the server's NVML does not reach the engine's nodes


@pytest.fixture
def in_job(tmp_path):
    clock = FakeClock()
    store = Store(make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"))
    migrate(store.engine)
    store.sync_nodes([fake_node(2, "a100", "n1"), fake_node(2, "a100", "n2")])
    ex = InJobExecutor(clock)
    ctx = Ctx(store, ex, clock)
    bootstrap(ctx, [])
    health = build_health_service(ctx, {"nvml": "off", "remediation": {"enabled": False}})
    loop = ControlLoop(store, ex, clock)
    loop.perf = PerfGuard(NoNvml(), HardwareRepo(store), health, clock)
    return ctx, loop, ex, HardwareRepo(store)


def test_in_job_prolog_refusal_requeues_elsewhere_and_drains_the_node(in_job):
    ctx, loop, ex, repo = in_job
    job = submit(ctx, perf=True)
    loop.cycle()
    j = ctx.store.get_job(job.id)
    node = j.node_names[0]
    ex.verdicts[(job.id, 1)] = [{"rank": 0, "node": node, "stage": "prolog", "ok": False, "prolog": [
        {"name": "persistence", "ok": True, "reason": "on"},
        {"name": "stray_processes", "ok": False, "reason": "GPU 0: 1 other process(es) on the GPU (pid 4242)"}]}]
    ex.finish(job.id, 75)
    loop.cycle()
    j = ctx.store.get_job(job.id)
    assert j.state in (JobState.PENDING, JobState.RUNNING) and j.attempt == 2
    assert ctx.store.get_node(node).state is NodeState.DRAIN
    first = repo.runs(job.id, attempt=1)[0]
    assert first.valid is False and first.reason.startswith("prolog stray_processes: GPU 0")
    loop.cycle()
    j = ctx.store.get_job(job.id)
    assert j.state is JobState.RUNNING and j.node_names != (node,)
    reasons = [e.reason for e in ctx.store.events("job", str(job.id))]
    assert any(r.startswith(f"Requeued: perf prolog refused {node} (perf_stray_processes: GPU 0") for r in reasons)


def test_in_job_prolog_refusal_fails_a_no_requeue_job(in_job):
    ctx, loop, ex, repo = in_job
    job = submit(ctx, perf=True, requeue=False)
    loop.cycle()
    node = ctx.store.get_job(job.id).node_names[0]
    ex.verdicts[(job.id, 1)] = [{"rank": 0, "node": node, "stage": "prolog", "ok": False,
                                 "prolog": [{"name": "throttle", "ok": False, "reason": "GPU 1: sw_power_cap"}]}]
    ex.finish(job.id, 75)
    loop.cycle()
    j = ctx.store.get_job(job.id)
    assert j.state is JobState.FAILED and "perf prolog refused" in j.reason and "no requeue" in j.reason


def test_in_job_epilog_verdict_is_recorded_with_samples_and_hostile_values_are_dropped(in_job):
    ctx, loop, ex, repo = in_job
    job = submit(ctx, perf=True)
    loop.cycle()
    node = ctx.store.get_job(job.id).node_names[0]
    samples = [{"at": 1.0, "gpu": 0, "sm_mhz": 1410, "temp_c": 50, "throttle": []},
               {"at": "x", "gpu": 0}, {"at": 2.0, "gpu": "0; DROP TABLE"}, "junk",
               {"at": 2.0, "gpu": 1, "sm_mhz": "fast", "power_w": 300.5, "throttle": ["hw_slowdown"]}]
    ex.verdicts[(job.id, 1)] = [{"rank": 0, "node": node, "stage": "epilog", "ok": False, "perf_valid": False,
                                 "reason": "epilog throttle: GPU 1: hw_slowdown", "epilog": [
                                     {"name": "throttle", "ok": False, "reason": "GPU 1: hw_slowdown"}, 7],
                                 "conditions": {"samples": 2}, "samples": samples, "started_at": "soon"}]
    ex.finish(job.id, 0)
    loop.cycle()
    j = ctx.store.get_job(job.id)
    assert j.state is JobState.SUCCEEDED  # an invalid run is still a run that happened
    run = repo.runs(job.id)[0]
    assert run.valid is False and run.reason == "epilog throttle: GPU 1: hw_slowdown"
    assert [c.name for c in run.epilog] == ["throttle"] and run.conditions == {"samples": 2}
    got = repo.samples(job.id, 1, node)
    assert [(s.gpu, s.sm_mhz, s.power_w, s.throttle) for s in got] == [
        (0, 1410, None, ()), (1, None, 300.5, ("hw_slowdown",))]
    assert ctx.store.get_node(node).state is NodeState.UP


def test_in_job_clean_verdict_is_valid(in_job):
    ctx, loop, ex, repo = in_job
    job = submit(ctx, perf=True)
    loop.cycle()
    node = ctx.store.get_job(job.id).node_names[0]
    ex.verdicts[(job.id, 1)] = [{"rank": 0, "node": node, "stage": "epilog", "ok": True, "reason": "",
                                 "epilog": [], "conditions": {"samples": 3}}]
    ex.finish(job.id, 0)
    loop.cycle()
    run = repo.runs(job.id)[0]
    assert run.valid is True and run.reason == "" and run.conditions == {"samples": 3}

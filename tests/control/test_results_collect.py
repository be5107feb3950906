"""Results are collected when the control loop records an attempt's end, with the provenance the
run had (node, SKU, driver, VBIOS, GPU UUIDs, job, attempt, tenant, user)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from gpufleet.control.loop import ControlLoop
from gpufleet.domain import User
from gpufleet.executors.base import Ability, ResultFile
from gpufleet.executors.fake import FakeClock, FakeExecutor
from gpufleet.inventory import load_inventory
from gpufleet.services import Ctx
from gpufleet.services import jobs as jobs_svc
from gpufleet.services.results_collect import collect
from gpufleet.services.tenants import bootstrap
from gpufleet.store import Store, make_engine, migrate
from gpufleet.store.results import query_cases, query_results
from tests.conftest import EXAMPLE_LAB

ALICE = User("alice", "default")
LINE = {"benchmark": "resnet50-train", "metric": "images_per_s", "value": 2874.1, "unit": "img/s",
        "params": {"batch": 256}, "node": "forged", "sku": "forged"}
JUNIT = b'<testsuite name="nccl"><testcase name="ok"/><testcase name="bad"><failure message="slow"/></testcase></testsuite>'


class ResultsFake(FakeExecutor):
    abilities = FakeExecutor.abilities | {Ability.RESULTS}

    def __init__(self, clock):
        super().__init__(clock)
        self.files: dict[tuple[int, int], list[ResultFile]] = {}

    def results(self, job, attempt):
        return self.files.get((job.id, attempt), []), []


@pytest.fixture
def world(tmp_path):
    clock = FakeClock()
    store = Store(make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"))
    migrate(store.engine)
    inv = load_inventory(EXAMPLE_LAB)
    store.sync_nodes(inv.nodes)
    ex = ResultsFake(clock)
    ctx = Ctx(store, ex, clock)
    bootstrap(ctx, inv.tenants)
    loop = ControlLoop(store, ex, clock)
    loop.on_attempt_end = lambda job: collect(store, ex, job, clock())
    return ctx, loop, ex


def run_to_end(ctx, loop, ex, job_id, requeue=False):
    loop.cycle()
    job = ctx.store.get_job(job_id)
    node = ctx.store.get_node(job.allocation[0].node)
    ctx.store.save_node(replace(node, labels={**node.labels, "sku": "A100-SXM4-80GB", "driver": "550.54.15",
                                              "vbios": "92.00.45.00.05"}))
    ex.files[(job_id, job.attempt)] = [ResultFile(0, "m.jsonl", (json.dumps(LINE) + "\nnot json\n").encode()),
                                      ResultFile(0, "junit.xml", JUNIT)]
    ex.finish(job_id, 0)
    loop.cycle()
    return job


def test_an_ended_attempts_results_are_stored_with_the_runs_provenance(world):
    ctx, loop, ex = world
    job_id = jobs_svc.submit(ctx, ALICE, {"command": ["bench"], "gpus": 2, "gpu_model": "a100"}).id
    job = run_to_end(ctx, loop, ex, job_id)
    [r] = query_results(ctx.store.engine)
    node = ctx.store.get_node(job.allocation[0].node)
    uuids = ",".join(g.uuid for g in node.gpus if g.index in job.allocation[0].gpus and g.uuid)
    assert (r.job_id, r.attempt, r.tenant, r.user, r.node) == (job_id, 1, "default", "alice", node.name)
    assert (r.sku, r.driver, r.vbios, r.gpu_model, r.gpu_uuids) == (
        "A100-SXM4-80GB", "550.54.15", "92.00.45.00.05", "a100", uuids)
    assert r.labels is None and r.valid and r.source == "job"
    assert r.series == "resnet50-train/images_per_s/batch=256/A100-SXM4-80GB/550.54.15"
    cases = query_cases(ctx.store.engine, job_id=job_id)
    assert [(c.name, c.outcome, c.node, c.attempt) for c in cases] == [("ok", "passed", node.name, 1),
                                                                      ("bad", "failed", node.name, 1)]


def test_without_the_hook_nothing_is_collected(world):
    ctx, loop, ex = world
    loop.on_attempt_end = None
    job_id = jobs_svc.submit(ctx, ALICE, {"command": ["bench"], "gpus": 1}).id
    run_to_end(ctx, loop, ex, job_id)
    assert query_results(ctx.store.engine) == []


def test_a_failing_hook_does_not_stop_the_loop(world):
    ctx, loop, ex = world

    def boom(job):
        raise RuntimeError("disk on fire")

    loop.on_attempt_end = boom
    job_id = jobs_svc.submit(ctx, ALICE, {"command": ["bench"], "gpus": 1}).id
    run_to_end(ctx, loop, ex, job_id)
    assert ctx.store.get_job(job_id).state.value == "SUCCEEDED"


def test_an_engine_without_results_is_skipped(world):
    ctx, loop, _ = world
    plain = FakeExecutor(FakeClock())
    job_id = jobs_svc.submit(ctx, ALICE, {"command": ["bench"], "gpus": 1}).id
    assert collect(ctx.store, plain, ctx.store.get_job(job_id), 0.0) == 0


def test_a_perf_runs_verdict_travels_with_its_results(world):
    from gpufleet.domain.perf import PerfPolicy, PerfRun
    from gpufleet.services.results_collect import perf_lookup
    from gpufleet.store.hardware import HardwareRepo

    ctx, loop, ex = world
    hw = HardwareRepo(ctx.store)
    loop.on_attempt_end = lambda job: collect(ctx.store, ex, job, 0.0, perf_lookup(hw))
    job_id = jobs_svc.submit(ctx, ALICE, {"command": ["bench"], "gpus": 1}).id
    loop.cycle()
    job = ctx.store.get_job(job_id)
    hw.save_run(PerfRun(job_id=job_id, attempt=1, node=job.allocation[0].node, policy=PerfPolicy(clocks="base"),
                        started_at=1.0, valid=False, reason="thermal throttling during the run", ended_at=2.0,
                        conditions={"samples": 3}))
    ex.files[(job_id, 1)] = [ResultFile(0, "m.jsonl", json.dumps(LINE).encode())]
    ex.finish(job_id, 0)
    loop.cycle()
    [r] = query_results(ctx.store.engine)
    assert (r.valid, r.invalid_reason, r.clocks, r.conditions) == (
        False, "thermal throttling during the run", "base", {"samples": 3})

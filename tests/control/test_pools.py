"""An executor per node pool: the control loop and the services drive several engines at once
through the PoolRouter; each job's launch/poll/cancel/logs, each node's drain go to its pool's
engine. Fake engines and a fake clock."""

from __future__ import annotations

import pytest

from gpufleet.control.loop import ControlLoop
from gpufleet.control.pools import POOL_LABEL, PoolRouter
from gpufleet.domain import Gpu, JobState, Node, NodeKind, NodeState, User
from gpufleet.executors.base import Ability, EngineUnavailable
from gpufleet.executors.fake import FakeClock, FakeExecutor
from gpufleet.inventory import load_inventory
from gpufleet.services import Ctx
from gpufleet.services import jobs as svc
from gpufleet.services import nodes as node_svc
from gpufleet.services.tenants import bootstrap
from gpufleet.store import Store, make_engine, migrate
from tests.conftest import EXAMPLE_LAB

ADMIN = User("admin", "default", admin=True)


class FarmExecutor(FakeExecutor):
    """A fake engine that owns its inventory (like Slurm, Kubernetes, labgrid) and drains in it."""

    name = "farm"
    abilities = frozenset({Ability.LOGS, Ability.ADOPT, Ability.NODES, Ability.DRAIN})

    def __init__(self, clock, boards: list[str]):
        super().__init__(clock)
        self.boards = boards
        self.drained: dict[str, str] = {}
        self.unreachable = False

    def nodes(self) -> list[Node]:
        if self.unreachable:
            raise EngineUnavailable("coordinator down")
        return [Node(b, kind=NodeKind.EMBEDDED, arch="aarch64", gpus=(Gpu(0, "orin"),),
                     labels={"soc": "t234"}, state=NodeState.DRAIN if b in self.drained else NodeState.UP,
                     reason=self.drained.get(b, "")) for b in self.boards]

    def poll(self, jobs):
        if self.unreachable:
            raise EngineUnavailable("coordinator down")
        return super().poll(jobs)

    def drain(self, node: str, reason: str) -> None:
        self.drained[node] = reason

    def resume(self, node: str) -> None:
        self.drained.pop(node, None)


@pytest.fixture
def world(tmp_path):
    clock = FakeClock()
    store = Store(make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"))
    migrate(store.engine)
    inv = load_inventory(EXAMPLE_LAB)
    store.sync_nodes(inv.nodes, prune=False)
    local, farm = FakeExecutor(clock), FarmExecutor(clock, ["board1", "board2"])
    router = PoolRouter({"default": local, "boards": farm}, "default",
                        node_pool=lambda n: store.get_node(n).labels.get(POOL_LABEL), clock=clock)
    router.learn(inv.nodes)
    router.sync(store)
    ctx = Ctx(store, router, clock)
    bootstrap(ctx, inv.tenants)
    loop = ControlLoop(store, router, clock, node_sync=router.sync)
    return ctx, loop, local, farm


def submit(ctx, **spec):
    spec.setdefault("command", ["train"])
    return svc.submit(ctx, ADMIN, spec).id


def test_each_pool_syncs_its_own_nodes_labelled_with_the_pool(world):
    ctx, loop, local, farm = world
    nodes = {n.name: n for n in ctx.store.nodes()}
    assert {"dgx1", "desk-001", "board1", "board2"} <= set(nodes)
    assert nodes["board1"].labels[POOL_LABEL] == "boards" and nodes["board1"].kind is NodeKind.EMBEDDED
    assert POOL_LABEL not in nodes["dgx1"].labels  # the file's nodes: the default pool


def test_jobs_go_to_the_engine_of_their_nodes_pool_and_end_there(world):
    ctx, loop, local, farm = world
    on_board = submit(ctx, gpus=1, constraint={"pool": "boards"}, env={"GPUFLEET_FAKE_SECONDS": "5"})
    on_dgx = submit(ctx, gpus=8, gpu_model="a100", env={"GPUFLEET_FAKE_SECONDS": "5"})
    loop.cycle()
    assert ctx.store.get_job(on_board).allocation[0].node.startswith("board")
    assert farm.launches == [on_board] and local.launches == [on_dgx]
    ctx.clock.advance(6)
    loop.cycle()
    assert ctx.store.get_job(on_board).state is JobState.SUCCEEDED
    assert ctx.store.get_job(on_dgx).state is JobState.SUCCEEDED


def test_cancel_and_logs_reach_the_jobs_pool(world):
    ctx, loop, local, farm = world
    job = submit(ctx, gpus=1, gpu_model="orin", constraint={"pool": "boards"},
                 env={"GPUFLEET_FAKE_OUTPUT": "on the board"})
    loop.cycle()
    assert b"on the board" in svc.logs(ctx, ADMIN, job).data
    svc.cancel(ctx, ADMIN, job)
    loop.cycle()
    loop.cycle()
    assert farm.world.cancels == [job] and local.world.cancels == []
    assert ctx.store.get_job(job).state is JobState.CANCELLED


def test_drain_reaches_the_nodes_engine_and_survives_the_next_sync(world):
    ctx, loop, local, farm = world
    node_svc.set_state(ctx, ADMIN, "board1", NodeState.DRAIN, "bad flash")
    node_svc.set_state(ctx, ADMIN, "dgx1", NodeState.DRAIN, "fans")  # the fake local engine: no DRAIN
    loop.cycle()
    assert farm.drained == {"board1": "bad flash"}
    assert ctx.store.get_node("board1").state is NodeState.DRAIN
    assert ctx.store.get_node("dgx1").state is NodeState.DRAIN  # the file's node keeps its admin state
    node_svc.set_state(ctx, ADMIN, "board1", NodeState.UP)
    loop.cycle()
    assert farm.drained == {} and ctx.store.get_node("board1").state is NodeState.UP


def test_an_unreachable_pool_leaves_its_nodes_and_jobs_alone_and_the_others_run(world):
    ctx, loop, local, farm = world
    board_job = submit(ctx, gpus=1, gpu_model="orin", constraint={"pool": "boards"})
    loop.cycle()
    farm.unreachable = True
    dgx_job = submit(ctx, gpus=8, gpu_model="a100", env={"GPUFLEET_FAKE_SECONDS": "1"})
    loop.cycle()
    ctx.clock.advance(2)
    loop.cycle()
    assert ctx.store.get_node("board1").state is NodeState.UP  # not pruned, not downed
    assert ctx.store.get_job(board_job).state is JobState.RUNNING
    assert ctx.store.get_job(dgx_job).state is JobState.SUCCEEDED


def test_a_board_gone_from_its_engine_goes_down_and_its_job_is_requeued(world):
    ctx, loop, local, farm = world
    job = submit(ctx, gpus=1, gpu_model="orin", constraint={"pool": "boards"})
    loop.cycle()
    node = ctx.store.get_job(job).allocation[0].node
    farm.boards.remove(node)
    loop.cycle()
    loop.cycle()
    assert ctx.store.get_node(node).state is NodeState.DOWN
    assert "no longer reported by node pool boards" in ctx.store.get_node(node).reason
    j = ctx.store.get_job(job)
    assert j.state in (JobState.PENDING, JobState.RUNNING) and j.restarts == 1
    assert ctx.store.get_node("dgx1").state is NodeState.UP


def test_a_job_spanning_pools_fails_at_launch_with_why(world):
    ctx, loop, local, farm = world
    from gpufleet.domain import Allocation, transition
    job = ctx.store.get_job(submit(ctx, gpus=1))
    job.allocation = (Allocation("dgx1", (0,)), Allocation("board1", (0,)))
    ctx.store.save_job(job, JobState.PENDING, transition(job, JobState.RUNNING, "placed", ctx.clock()))
    loop.cycle()
    j = ctx.store.get_job(job.id)
    assert j.state is JobState.FAILED and "spans node pools boards, default" in j.reason


def test_router_declares_the_union_of_abilities_and_requires_only_what_all_require(clock):
    class NeedsImage(FakeExecutor):
        requires = frozenset({"image"})
        abilities = frozenset({Ability.IMAGES})
    r = PoolRouter({"default": FakeExecutor(clock), "k8s": NeedsImage(clock)})
    assert Ability.IMAGES in r.abilities and Ability.LOGS in r.abilities
    assert r.requires == frozenset()
    with pytest.raises(ValueError, match="default pool"):
        PoolRouter({"k8s": NeedsImage(clock)})


def test_an_image_job_landing_in_a_pool_without_images_fails_with_the_pool_named(clock):
    from gpufleet.domain import Allocation, Job, JobSpec
    class Images(FakeExecutor):
        abilities = frozenset({Ability.IMAGES})
    r = PoolRouter({"default": FakeExecutor(clock), "k8s": Images(clock)})
    job = Job(id=1, spec=JobSpec(command=("x",), image="alpine"), allocation=(Allocation("n1", (0,)),))
    with pytest.raises(ValueError, match="node pool default"):
        r.launch(job)


def test_the_router_launches_in_parallel_but_serially_into_an_engine_that_cannot():
    import threading

    from gpufleet.control.pools import PoolRouter
    from gpufleet.executors.base import Ability
    from gpufleet.executors.fake import FakeExecutor

    class Serial(FakeExecutor):
        abilities = FakeExecutor.abilities - {Ability.CONCURRENT_LAUNCH}

    router = PoolRouter({"default": FakeExecutor(), "boards": Serial()})
    assert Ability.CONCURRENT_LAUNCH in router.abilities
    assert set(router._serial) == {"boards"} and isinstance(router._serial["boards"], type(threading.Lock()))

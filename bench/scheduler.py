"""Scheduler benchmark: cycles over a synthetic mixed load on a big cluster. Prints one JSON object.

    .venv/bin/python bench/scheduler.py --nodes 1250 --gpus-per-node 8 --pending 10000 --json

Load: 1-64 GPU jobs (1, 2, 4, 8 GPUs on one node; 2x8, 4x8, 8x8 gangs), 10 tenants with quotas
(two with hard limits, one that may not borrow), a100 and h100 nodes in 2 NVLink groups, racks of
10 nodes and switches of 4 racks, 5% of jobs with a driver constraint, 10% in a higher priority
class, fair share and topology on. The cluster starts half full; each cycle the placed jobs start,
finished jobs leave, virtual time advances 5 minutes and new jobs keep the queue at --pending.

Reported (time = inside schedule() only):
  placements_per_s     the fill cycle: --pending mixed jobs onto the empty cluster, all features on
                       (about 1,500 placed and 8,500 reasons in the same cycle): scheduler throughput
  cycle_ms_p50/p99     steady cycles (half-full start, 5-minute steps, queue kept at --pending);
                       steady.placements_per_s is bounded by job completions, not by the scheduler
  fragmentation        after the last steady cycle (see docs/scheduler.md)
  cycle_ms_100k        one cycle over --big pending jobs on the half-full cluster
  packing_fragmentation  mean fragmentation under churn below saturation: topology on / off
  baseline             the first-fit placeholder (scheduler/firstfit.py) on the same loads, with
                       ratios; it scans every node for every job, so it runs fewer cycles
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gpufleet.domain import Gpu, Job, JobSpec, JobState, Node, Tenant  # noqa: E402
from gpufleet.scheduler import SchedulerConfig, Snapshot, schedule  # noqa: E402
from gpufleet.scheduler.firstfit import schedule_first_fit  # noqa: E402
from gpufleet.scheduler.metrics import fragmentation  # noqa: E402
from gpufleet.scheduler.state import ClusterState  # noqa: E402

SHAPES = [(1, 1, 30), (2, 1, 20), (4, 1, 20), (8, 1, 15), (8, 2, 8), (8, 4, 5), (8, 8, 2)]  # gpus, nodes, %
DRIVERS = ["535.104", "550.54", "560.35"]
STEP_S = 300.0


def make_cluster(n_nodes: int, per_node: int) -> list[Node]:
    rng = random.Random(1)
    nodes = []
    for i in range(n_nodes):
        model = "a100" if i < n_nodes * 0.6 else "h100"
        rack = i // 10
        gpus = tuple(Gpu(k, model, f"GPU-{i}-{k}", 81920, group=k * 2 // per_node) for k in range(per_node))
        labels = {"rack": f"r{rack:03d}", "switch": f"s{rack // 4:02d}", "driver": rng.choice(DRIVERS)}
        nodes.append(Node(f"node{i:05d}", labels=labels, gpus=gpus, cpus=128, mem_mb=1 << 20))
    return nodes


def make_tenants(nodes: list[Node]) -> dict[str, Tenant]:
    cap: dict[str, int] = {}
    for n in nodes:
        cap[n.gpu_model] = cap.get(n.gpu_model, 0) + len(n.gpus)
    out = {}
    for k in range(10):
        quota = {m: int(c * 0.08) for m, c in cap.items()}  # 80% of capacity is guaranteed
        limit = {m: int(c * 0.25) for m in cap for c in [cap[m]]} if k in (7, 8) else None
        out[f"t{k}"] = Tenant(f"t{k}", quota, limit, weight=1.0 + k % 3, can_borrow=k != 9)
    return out


class Load:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.next_id = 1
        self.weights = [w for _, _, w in SHAPES]

    def job(self, now: float) -> Job:
        rng = self.rng
        gpus, nodes, _ = rng.choices(SHAPES, self.weights)[0]
        limit = rng.choice([1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600, None])
        spec = JobSpec(
            command=("train",), gpus=gpus, nodes=nodes, tenant=f"t{rng.randrange(10)}",
            gpu_model=rng.choice(["a100", "a100", "h100", "h100", None]), time_limit_s=limit,
            priority=100 if rng.random() < 0.1 else rng.randrange(10),
            constraints={"driver": "560.35"} if rng.random() < 0.05 else {})
        job = Job(self.next_id, spec, submitted_at=now - rng.random() * 3600, extra={"run_s": 0.0})
        job.extra["run_s"] = (limit or 86400) * rng.uniform(0.1, 1.0)
        self.next_id += 1
        return job


class World:
    """Running and pending jobs evolving over virtual time under one scheduler function."""

    def __init__(self, nodes, tenants, load: Load, pending: int, config: SchedulerConfig):
        self.nodes, self.tenants, self.load, self.config = nodes, tenants, load, config
        self.target = pending
        self.now = 0.0
        self.running: dict[int, Job] = {}
        self.pending: dict[int, Job] = {}
        self.usage = {t: load.rng.uniform(0, 5e6) for t in tenants}
        self.times: list[float] = []
        self.placed = 0

    def snapshot(self) -> Snapshot:
        return Snapshot(tuple(self.nodes), tuple(self.running.values()), tuple(self.pending.values()),
                        self.tenants, usage=self.usage, config=self.config)

    def top_up(self) -> None:
        while len(self.pending) < self.target:
            j = self.load.job(self.now)
            self.pending[j.id] = j

    def cycle(self, fn) -> float:
        snap = self.snapshot()
        t0 = time.perf_counter()
        d = fn(snap, self.now)
        dt = time.perf_counter() - t0
        self.times.append(dt)
        self.placed += len(d.placements)
        self.apply(d)
        return dt

    def apply(self, d) -> None:
        for p in d.preemptions:
            job = self.running.pop(p.job_id, None)
            if job is not None:
                job.state, job.allocation, job.started_at = JobState.PENDING, (), None
                self.pending[job.id] = job
        for p in d.placements:
            job = self.pending.pop(p.job_id)
            job.state, job.allocation, job.started_at = JobState.RUNNING, p.allocation, self.now
            self.running[job.id] = job

    def advance(self) -> None:
        self.now += STEP_S
        for jid, job in list(self.running.items()):
            if job.started_at + job.extra["run_s"] <= self.now:
                del self.running[jid]
        self.top_up()

    def fragmentation(self) -> dict[str, float]:
        snap = self.snapshot()
        used: dict[str, set[int]] = {}
        for j in snap.running:
            for a in j.allocation:
                used.setdefault(a.node, set()).update(a.gpus)
        return fragmentation(ClusterState(snap.nodes, used, {}, {}))


def warm(world: World, fraction: float = 0.5) -> None:
    """Fill about `fraction` of the GPUs with running jobs of various ages (batches, first fit)."""
    total = sum(len(n.gpus) for n in world.nodes)
    config = replace(world.config, preemption=False, backfill=False, policy="fifo")
    filler = World(world.nodes, world.tenants, world.load, 0, config)
    held = 0
    while held < total * fraction:
        batch = [world.load.job(0.0) for _ in range(max(1, int((total * fraction - held) / 12)))]
        filler.pending = {j.id: j for j in batch}
        filler.apply(schedule(filler.snapshot(), 0.0))
        held = sum(j.gpus_held for j in filler.running.values())
    for job in filler.running.values():
        job.started_at = -world.load.rng.uniform(0, job.extra["run_s"])
    world.running = filler.running


def run_cycles(fn, world: World, cycles: int) -> World:
    world.top_up()
    for _ in range(cycles):
        world.cycle(fn)
        world.advance()
    return world


def summary(world: World) -> dict[str, float]:
    times = sorted(world.times)
    p99 = times[min(len(times) - 1, int(round(0.99 * (len(times) - 1))))]
    return {
        "cycles": len(times),
        "placements": world.placed,
        "placements_per_s": round(world.placed / sum(times), 1),
        "cycle_ms_p50": round(statistics.median(times) * 1000, 2),
        "cycle_ms_p99": round(p99 * 1000, 2),
        **{k: v for k, v in world.fragmentation().items() if k != "free_gpus"},
    }


def fill(fn, nodes, tenants, pending: int, config: SchedulerConfig, repeat: int = 1) -> dict[str, float]:
    """One cycle: `pending` mixed jobs onto the empty cluster (placements and reasons together);
    the median of `repeat` runs of that same cycle."""
    world = World(nodes, tenants, Load(7), pending, config)
    world.top_up()
    snap = world.snapshot()
    times, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        d = fn(snap, world.now)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    world.apply(d)
    dt, dc = statistics.median(times), statistics.median(cpu)
    return {"placements": len(d.placements), "placements_per_s": round(len(d.placements) / dt, 1),
            "placements_per_cpu_s": round(len(d.placements) / dc, 1) if dc else None,
            "cycle_ms": round(dt * 1000, 2), "cycle_cpu_ms": round(dc * 1000, 2)}


def packing(fn, nodes, tenants, config: SchedulerConfig, cycles: int) -> float:
    """Mean fragmentation after each cycle under churn below saturation: the cluster starts 60% busy,
    each step as many jobs arrive as left. Free capacity exists, so this measures placement quality."""
    world = World(nodes, tenants, Load(5), 0, config)
    warm(world, 0.6)
    frags = []
    for _ in range(cycles):
        world.cycle(fn)
        frags.append(world.fragmentation()["fragmentation"])
        before = len(world.running)
        world.advance()
        for _ in range(before - len(world.running)):
            j = world.load.job(world.now)
            world.pending[j.id] = j
    return round(statistics.mean(frags), 4)


def big_cycle(nodes, tenants, pending: int, config: SchedulerConfig, repeat: int) -> dict[str, float]:
    """One cycle over `pending` jobs on the half-full cluster (median of `repeat` runs)."""
    world = World(nodes, tenants, Load(11), pending, config)
    warm(world)
    world.top_up()
    snap = world.snapshot()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        d = schedule(snap, world.now)
        times.append(time.perf_counter() - t0)
    return {"cycle_ms": round(statistics.median(times) * 1000, 2), "placements": len(d.placements),
            "pending": pending}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1250)
    ap.add_argument("--gpus-per-node", type=int, default=8)
    ap.add_argument("--pending", type=int, default=10_000)
    ap.add_argument("--cycles", type=int, default=10, help="steady-state cycles")
    ap.add_argument("--baseline-cycles", type=int, default=2, help="steady cycles of the slow first-fit baseline")
    ap.add_argument("--packing-cycles", type=int, default=12)
    ap.add_argument("--big", type=int, default=100_000, help="pending jobs of the one big cycle (0: skip)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the fill and big cycles (median)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the first-fit placeholder (minutes)")
    ap.add_argument("--spares-per-block", type=int, default=0, help="hot spares per switch (SchedulerConfig)")
    ap.add_argument("--json", action="store_true", help="print one JSON object on one line")
    args = ap.parse_args()
    nodes = make_cluster(args.nodes, args.gpus_per_node)
    tenants = make_tenants(nodes)
    config = SchedulerConfig(policy="fairshare", topology=True, backfill=True, preemption=True,
                             **({"spares_per_block": args.spares_per_block} if args.spares_per_block else {}))
    out: dict = {"nodes": args.nodes, "gpus": args.nodes * args.gpus_per_node, "pending": args.pending}

    out["fill"] = fill(schedule, nodes, tenants, args.pending, config, args.repeat)
    world = World(nodes, tenants, Load(3), args.pending, config)
    warm(world)
    out["steady"] = summary(run_cycles(schedule, world, args.cycles))
    out["placements_per_s"] = out["fill"]["placements_per_s"]
    for k in ("cycle_ms_p50", "cycle_ms_p99", "fragmentation"):
        out[k] = out["steady"][k]
    if args.big:
        out["big"] = big_cycle(nodes, tenants, args.big, config, args.repeat)
        out["cycle_ms_100k"] = out["big"]["cycle_ms"]
    out["packing_fragmentation"] = {
        "topology": packing(schedule, nodes, tenants, config, args.packing_cycles),
        "topology_off": packing(schedule, nodes, tenants, replace(config, topology=False), args.packing_cycles),
    }
    if not args.no_baseline:
        out["baseline"] = baseline(nodes, tenants, args, config)
        out["fill_speedup_vs_first_fit"] = round(
            out["fill"]["placements_per_s"] / out["baseline"]["fill"]["placements_per_s"], 1)
        out["steady_speedup_vs_first_fit"] = round(
            out["steady"]["placements_per_s"] / out["baseline"]["steady"]["placements_per_s"], 1)
    print(json.dumps(out, indent=None if args.json else 2))


def baseline(nodes, tenants, args, config: SchedulerConfig) -> dict:
    """The first-fit placeholder on the same loads (it has no quota, backfill or preemption)."""
    world = World(nodes, tenants, Load(3), args.pending, config)
    warm(world)
    out = {"fill": fill(schedule_first_fit, nodes, tenants, args.pending, config),
           "steady": summary(run_cycles(schedule_first_fit, world, args.baseline_cycles))}
    out["packing_fragmentation"] = packing(schedule_first_fit, nodes, tenants, config, args.packing_cycles)
    return out


if __name__ == "__main__":
    main()

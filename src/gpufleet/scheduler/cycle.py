"""One scheduling cycle's working state, built from a frozen Snapshot: capacity index, quota book,
bookings, backfill timeline, candidate victims; and the per-job `Ask` with its cached eligibility."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

from gpufleet.domain import Allocation, Booking, Job
from gpufleet.scheduler.reasons import count as node_count
from gpufleet.scheduler.backfill import UNKNOWN, Backfill
from gpufleet.scheduler.base import Base
from gpufleet.scheduler.filters import Eligibility, static_eligibility
from gpufleet.scheduler.filters.bookings import BookingRules
from gpufleet.scheduler.filters.spares import SpareRules
from gpufleet.scheduler.placement import Gate
from gpufleet.scheduler.preemption import Victim, Victims
from gpufleet.scheduler.queue import las_preempts, lowest_preempt_class, preempt_class
from gpufleet.scheduler.quota import Held, QuotaBook
from gpufleet.scheduler.state import ClusterState
from gpufleet.scheduler.types import Decisions, Placement, Snapshot


@dataclass(slots=True)
class Ask:
    """What one pending job asks of the cluster this cycle."""

    job: Job
    gpus: int  # per node
    nodes: int  # the fewest nodes it runs on (an elastic gang's nodes_min; else spec.nodes)
    cpus: int
    mem: int
    end: float  # now + time limit
    cls: int  # priority class (under las with preemption: `queue.preempt_class`)
    elig: frozenset[int] | None  # UP nodes passing the static filters (None: all)
    elig_key: tuple
    models: tuple[str, ...]  # GPU models that could host it, by node size
    booking: Booking | None  # its own booking, open now
    reason: str = ""  # set when it cannot run whatever is free
    nodes_max: int = 0  # an elastic gang (nodes_min < nodes) grows up to this many when free; else nodes


class Cycle:
    """One cycle over a snapshot, on a `Base` that already reflects the snapshot's nodes and running
    jobs. The cycle's own takes are journaled on the Base's state; `close()` rolls them back."""

    def __init__(self, snapshot: Snapshot, now: float, base: Base):
        self.snapshot = snapshot
        self.cfg = snapshot.config
        self.now = now
        self.base = base
        self.d = Decisions()
        self.state = base.state
        self.state.journal = []
        self.bookings = BookingRules(snapshot.bookings, self.state.pos, now)
        self.spares = SpareRules(self.state, snapshot.running, snapshot.foreign, self.cfg.spares_per_block,
                                 self.cfg.priority_class_size)
        self._spares = bool(self.spares)  # read per job and search: kept off the path when off
        self.victims = Victims()
        self.las = las_preempts(self.cfg)
        # model -> lowest class running there (under las: the lowest it could be, the queue aside)
        self.victims.min_class = {m: lowest_preempt_class(c, self.cfg) for m, c in base.min_class().items()}
        for run in base.leaving.values():
            self.victims.add_leaving(run.job.id, run.on, run.model)  # type: ignore[arg-type]
        self._victims_built = False
        self.quota = QuotaBook(snapshot.tenants, self._held, base.used)
        self.backfill = Backfill(lambda: base.release_list(now), now)
        self._elig: dict[tuple, Eligibility] = {}  # booking-restricted requirements (the rest: base)
        self._shapes: dict[tuple, tuple] = {}
        self._static = base.static
        self._default_limit = self.cfg.default_time_limit_s
        self._class_size = self.cfg.priority_class_size
        # verdict_key -> reason, or None: deferred; one dict per pass
        self.verdicts: tuple[dict[tuple, str | None], dict[tuple, str | None]] = ({}, {})
        self.failed: dict[tuple, str | None] = {}  # placement search key -> reason once explained
        self.failed_preempt: set[tuple] = set()
        self.preemptors = 0
        self.preempt_attempts = 0
        self.backfilled = 0

    def close(self) -> None:
        """Give back what this cycle took, so the Base again reflects only the running jobs."""
        self.state.rollback()

    # building -------------------------------------------------------------------------------------
    def _held(self) -> list[Held]:
        """Quota holdings of every running job (for borrowed/reclaimable, built on first need)."""
        now = self.now
        return [Held(r.job.id, r.job.spec.tenant, r.model, r.gpus,
                     r.job.started_at if r.job.started_at is not None else now, r.booked, r.leaving)
                for r in self.base.runs.values()]

    def victims_ready(self) -> Victims:
        """The running jobs as candidate victims, built on first need."""
        if not self._victims_built:
            self._victims_built = True
            now, borrowed = self.now, self.quota.borrowed
            for r in self.base.runs.values():
                if r.model is None or not r.on or r.leaving:
                    continue
                job = r.job
                started = job.started_at if job.started_at is not None else now
                lost = r.gpus * max(0.0, now - started) / 3600.0
                cls = preempt_class(job, self.cfg, now) if self.las else r.cls
                self.victims.add(Victim(job, r.model, cls, job.id in borrowed, r.booked, lost, r.on))
        return self.victims

    # asks -----------------------------------------------------------------------------------------
    def ask(self, job: Job) -> Ask:
        spec = job.spec
        cfg = self.cfg
        end = self.now + (spec.time_limit_s or cfg.default_time_limit_s)
        booking, why = self.bookings.own(job) if spec.booking is not None else (None, "")
        cons = tuple(sorted(spec.constraints.items())) if spec.constraints else ()
        key = (spec.gpu_model, cons, booking.id if booking else None)
        cls = preempt_class(job, cfg, self.now) if self.las else spec.priority // cfg.priority_class_size
        most = max(1, spec.nodes)
        ask = Ask(job, max(0, spec.gpus), min(most, spec.nodes_min or most), spec.cpus or 0, spec.mem_mb or 0,
                  end, cls, None, key, (), booking, why, most)
        if why:
            return ask
        shapes, eligs = (self.base.shapes, self.base.elig) if booking is None else (self._shapes, self._elig)
        shape = shapes.get((key, ask.gpus, ask.nodes, ask.nodes_max))
        if shape is None:
            elig = eligs.get(key)
            if elig is None:
                elig = eligs[key] = static_eligibility(job, self.state, booking)
            ask.elig = elig.nodes
            ask.reason = elig.reason or self._sizes(ask, elig)
            shape = shapes[(key, ask.gpus, ask.nodes, ask.nodes_max)] = (ask.elig, ask.models, ask.reason)
        ask.elig, ask.models, ask.reason = shape
        return ask

    def verdict_key(self, job: Job) -> tuple:
        """Everything that decides a job's fate in this cycle (with the pass). Within a cycle
        capacity, quota headroom and victims only shrink: a job that failed fails again for the
        same key, and so does every job with that key."""
        spec = job.spec
        static = self._static.get(job.id)  # a job's spec never changes: kept across cycles
        if static is None:
            cons = tuple(sorted(spec.constraints.items())) if spec.constraints else ()
            static = self._static[job.id] = (
                spec.tenant, spec.priority // self._class_size, spec.gpu_model, spec.gpus, spec.nodes,
                spec.cpus, spec.mem_mb, spec.booking, cons, spec.nodes_min)
        if self.las:  # its LAS queue may change between cycles
            static = (static, preempt_class(job, self.cfg, self.now))
        if self._spares:  # a restart may use the hot spares, its first attempt not
            static = (static, self.spares.allows(job))
        if not self.bookings.on_node and not self.backfill.starts:
            return static
        end = self.now + (spec.time_limit_s or self._default_limit)
        booked = self.bookings.context(job, end) if self.bookings.on_node else ()
        return (static, booked, bisect_left(self.backfill.starts, end))

    def _sizes(self, ask: Ask, elig: Eligibility) -> str:
        """Which models have at least `nodes` eligible nodes big enough; else why not."""
        if ask.gpus == 0:
            n = len(elig.nodes) if elig.nodes is not None else sum(self.state.up)
            need = node_count(ask.nodes, ask.nodes_max)
            return "" if n >= ask.nodes else f"NodeConstraint(needs {need} nodes, {n} up{elig.label})"
        models = []
        for model, sizes in sorted(elig.sizes.items()):
            if len(sizes) >= ask.nodes and sizes[ask.nodes - 1] >= ask.gpus:
                models.append(model)
        ask.models = tuple(models)
        if models:
            return ""
        largest = max((s[0] for s in elig.sizes.values()), default=0)
        if largest < ask.gpus:
            return (f"NodeConstraint(gpus={ask.gpus} per node matches 0 up nodes{elig.label}, "
                    f"largest has {largest})")
        fit = max(sum(1 for s in sizes if s >= ask.gpus) for sizes in elig.sizes.values())
        return (f"NodeConstraint(needs {node_count(ask.nodes, ask.nodes_max)} nodes with {ask.gpus} GPUs, "
                f"{fit} up{elig.label})")

    # placing --------------------------------------------------------------------------------------
    def gate(self, ask: Ask, model: str | None, reservations: bool = True, bookings: bool = True,
             resources: bool = True, spares: bool = True) -> Gate:
        """The job's dynamic per-node filter: hot spares, CPU/memory, booking windows, backfill
        reservations."""
        state, job, end, gpus = self.state, ask.job, ask.end, ask.gpus
        cpus, mem = (ask.cpus, ask.mem) if resources else (0, 0)
        book = self.bookings.on_node if bookings else {}
        res = self.backfill.on_node if reservations else {}
        held = self.spares.held_from(job) if spares and self._spares else ()
        if not (cpus or mem) and not book and not res and not held:
            return None
        rules, backfill = self.bookings, self.backfill

        def ok(i: int) -> bool:
            if i in held:
                return False
            if (cpus or mem) and not state.cpu_mem_ok(i, cpus, mem):
                return False
            if i in book and rules.blocker(i, job, end) is not None:
                return False
            return not (i in res and backfill.blocker(i, model, gpus, end) is not None)

        return ok

    def search_key(self, ask: Ask, model: str | None) -> tuple:
        return (model, ask.gpus, ask.nodes, ask.cpus, ask.mem, ask.elig_key,
                self.bookings.context(ask.job, ask.end), self.backfill.context(ask.end),
                self.spares.context(ask.job) if self._spares else ())


    def commit(self, ask: Ask, model: str | None, nodes: list[int]) -> None:
        state, job = self.state, ask.job
        allocs = []
        for i in nodes:
            gpus = state.choose(i, model, ask.gpus) if model is not None else ()
            state.take(i, model, gpus, ask.cpus, ask.mem)
            self.backfill.placed(i, model, len(gpus), ask.end, ask.cpus, ask.mem)
            allocs.append(Allocation(state.nodes[i].name, gpus))
        if model is not None and ask.booking is None:
            self.quota.take(job.spec.tenant, model, ask.gpus * len(nodes))
            self.quota.started(job.id)
        if self.backfill.reservations:
            self.backfilled += 1
        self.d.placements.append(Placement(job.id, tuple(allocs)))

    def free_now(self, i: int, model: str) -> list[int]:
        """[GPUs of model, CPUs, memory] free on node i now (unknown CPUs/memory: unlimited)."""
        c, m = self.state.cpu_free[i], self.state.mem_free[i]
        return [self.state.free_count(i, model), UNKNOWN if c is None else c, UNKNOWN if m is None else m]

    def hold(self, i: int, model: str, gpus: int) -> None:
        """Keep `gpus` of node i (free ones first, then leaving ones) for a job starting next cycle."""
        state = self.state
        take = min(gpus, state.free_count(i, model))
        if take:
            state.take(i, model, state.choose(i, model, take), 0, 0)
        self.victims.claim(i, model, gpus - take)


def up_nodes_with(state: ClusterState, model: str, eligible: frozenset[int] | None) -> list[int]:
    nodes = eligible if eligible is not None else range(len(state.nodes))
    return [i for i in nodes if state.up[i] and model in state.size[i]]



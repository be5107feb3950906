"""Hardware identity (versioned attributes) and perf runs: rows and their repository.

Tables (migration 0005_hardware):
  hardware_attributes (id, node, gpu_uuid, key, value, since, until)  -- gpu_uuid "" = node-level;
                       the open row (until NULL) is the current value; a change closes it and opens
                       a new one, and writes an event kind="hardware", key=<node>
  perf_runs           (job_id, attempt, node, gpus, policy, started_at, ended_at, valid, reason,
                       prolog, epilog, conditions, identity)  -- one row per job x attempt x node
  perf_samples        (job_id, attempt, node, at, gpu, sm_mhz, mem_mhz, temp_c, power_w, util_pct, throttle)
"""

from __future__ import annotations

from typing import Any, Iterable

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, or_, select
from sqlalchemy.orm import Mapped, mapped_column

from gpufleet.domain import NotFound
from gpufleet.domain.perf import (
    GpuIdentity, NodeIdentity, PerfCheck, PerfRun, PerfSample, perf_from_dict,
)
from gpufleet.store.repo import Store
from gpufleet.store.rows import Base, EventRow, NodeRow

GPU_KEYS = tuple(k for k in GpuIdentity.__dataclass_fields__ if k not in ("uuid",))
NODE_KEYS = ("driver", "cuda_driver", "kernel")
EVENT_KEYS = ("driver", "cuda_driver", "vbios", "name", "board_part", "serial")  # changes worth an event


class HardwareAttributeRow(Base):
    __tablename__ = "hardware_attributes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node: Mapped[str] = mapped_column(String(128))
    gpu_uuid: Mapped[str] = mapped_column(String(128), default="")
    key: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(Text, default="")
    since: Mapped[float] = mapped_column(Float)
    until: Mapped[float | None] = mapped_column(Float, nullable=True)
    __table_args__ = (Index("ix_hardware_attributes_node", "node", "until"),)


class PerfRunRow(Base):
    __tablename__ = "perf_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    node: Mapped[str] = mapped_column(String(128))
    gpus: Mapped[list] = mapped_column(JSON, default=list)
    policy: Mapped[dict] = mapped_column(JSON, default=dict)
    started_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    valid: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    prolog: Mapped[list] = mapped_column(JSON, default=list)
    epilog: Mapped[list] = mapped_column(JSON, default=list)
    conditions: Mapped[dict] = mapped_column(JSON, default=dict)
    identity: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    __table_args__ = (Index("ix_perf_runs_job_attempt_node", "job_id", "attempt", "node", unique=True),)


class PerfSampleRow(Base):
    __tablename__ = "perf_samples"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    node: Mapped[str] = mapped_column(String(128))
    at: Mapped[float] = mapped_column(Float)
    gpu: Mapped[int] = mapped_column(Integer)
    sm_mhz: Mapped[int | None] = mapped_column(Integer, nullable=True)
    mem_mhz: Mapped[int | None] = mapped_column(Integer, nullable=True)
    temp_c: Mapped[int | None] = mapped_column(Integer, nullable=True)
    power_w: Mapped[float | None] = mapped_column(Float, nullable=True)
    util_pct: Mapped[int | None] = mapped_column(Integer, nullable=True)
    throttle: Mapped[list] = mapped_column(JSON, default=list)
    __table_args__ = (Index("ix_perf_samples_job_attempt", "job_id", "attempt"),)


def _flatten(identity: NodeIdentity) -> dict[tuple[str, str], str]:
    out = {("", k): str(getattr(identity, k)) for k in NODE_KEYS}
    for g in identity.gpus:
        for k in GPU_KEYS:
            v = getattr(g, k)
            out[(g.uuid, k)] = "" if v is None else str(v)
    return out


class HardwareRepo:
    def __init__(self, store: Store):
        self.store = store

    # ---- identity ---------------------------------------------------------------------------
    def record_identity(self, node: str, identity: NodeIdentity, now: float) -> list[str]:
        """Store what NVML says now; return the changes ("vbios 96.00.74 -> 96.00.89 on GPU-x").
        Also merges the flat attributes into the node's labels (constraints read them there)."""
        want = _flatten(identity)
        changes: list[str] = []
        with self.store.tx() as s:
            open_rows = {(r.gpu_uuid, r.key): r for r in s.scalars(select(HardwareAttributeRow).where(
                HardwareAttributeRow.node == node, HardwareAttributeRow.until.is_(None)))}
            first = not open_rows
            for key, value in want.items():
                row = open_rows.pop(key, None)
                if row is not None and row.value == value:
                    continue
                if row is not None:
                    row.until = now
                    if key[1] in EVENT_KEYS:
                        where = f" on {key[0]}" if key[0] else ""
                        changes.append(f"{key[1]} {row.value or '?'} -> {value or '?'}{where}")
                s.add(HardwareAttributeRow(node=node, gpu_uuid=key[0], key=key[1], value=value, since=now))
            for row in open_rows.values():  # a GPU that is gone
                row.until = now
            for c in changes:
                s.add(EventRow(kind="hardware", key=node, at=now, old="", new="", reason=c))
            if first:
                s.add(EventRow(kind="hardware", key=node, at=now, old="", new="", reason="identity discovered"))
            nrow = s.get(NodeRow, node)
            if nrow is not None:
                nrow.labels = {**(nrow.labels or {}), **identity.attributes()}
        self.store.nodes_changed()
        return changes

    def identity(self, node: str, at: float | None = None) -> NodeIdentity | None:
        """The identity valid at `at` (None: now), or None when never discovered."""
        q = select(HardwareAttributeRow).where(HardwareAttributeRow.node == node)
        if at is None:
            q = q.where(HardwareAttributeRow.until.is_(None))
        else:
            q = q.where(HardwareAttributeRow.since <= at,
                        or_(HardwareAttributeRow.until.is_(None), HardwareAttributeRow.until > at))
        with self.store.tx() as s:
            rows = list(s.scalars(q))
        if not rows:
            return None
        node_vals = {r.key: r.value for r in rows if not r.gpu_uuid}
        per_gpu: dict[str, dict[str, str]] = {}
        for r in rows:
            if r.gpu_uuid:
                per_gpu.setdefault(r.gpu_uuid, {})[r.key] = r.value
        gpus = sorted((_gpu_from(uuid, vals) for uuid, vals in per_gpu.items()), key=lambda g: g.index)
        return NodeIdentity(node_vals.get("driver", ""), node_vals.get("cuda_driver", ""),
                            node_vals.get("kernel", ""), tuple(gpus))

    def history(self, node: str) -> list[dict[str, Any]]:
        """Every value each attribute had, oldest first (`show-node` shows the changes)."""
        with self.store.tx() as s:
            rows = s.scalars(select(HardwareAttributeRow).where(HardwareAttributeRow.node == node)
                             .order_by(HardwareAttributeRow.since, HardwareAttributeRow.id))
            return [{"gpu_uuid": r.gpu_uuid, "key": r.key, "value": r.value, "since": r.since,
                     "until": r.until} for r in rows]

    # ---- perf runs --------------------------------------------------------------------------
    def save_run(self, run: PerfRun) -> None:
        with self.store.tx() as s:
            row = s.scalars(select(PerfRunRow).where(
                PerfRunRow.job_id == run.job_id, PerfRunRow.attempt == run.attempt,
                PerfRunRow.node == run.node)).first() or PerfRunRow(job_id=run.job_id, attempt=run.attempt,
                                                                     node=run.node)
            row.gpus, row.policy = list(run.gpus), run.policy.to_dict()
            row.started_at, row.ended_at, row.valid, row.reason = run.started_at, run.ended_at, run.valid, run.reason
            row.prolog = [c.to_dict() for c in run.prolog]
            row.epilog = [c.to_dict() for c in run.epilog]
            row.conditions = dict(run.conditions)
            row.identity = run.identity.to_dict() if run.identity else None
            s.add(row)

    def runs(self, job_id: int, attempt: int | None = None) -> list[PerfRun]:
        q = select(PerfRunRow).where(PerfRunRow.job_id == job_id)
        if attempt is not None:
            q = q.where(PerfRunRow.attempt == attempt)
        with self.store.tx() as s:
            return [_run_from(r) for r in s.scalars(q.order_by(PerfRunRow.attempt, PerfRunRow.node))]

    def open_runs(self) -> list[PerfRun]:
        """Runs whose epilog has not been written (the control loop finishes them)."""
        with self.store.tx() as s:
            rows = s.scalars(select(PerfRunRow).where(PerfRunRow.ended_at.is_(None), PerfRunRow.valid.is_(None)))
            return [_run_from(r) for r in rows]

    def add_samples(self, job_id: int, attempt: int, node: str, samples: Iterable[PerfSample]) -> None:
        with self.store.tx() as s:
            s.add_all(PerfSampleRow(job_id=job_id, attempt=attempt, node=node, at=p.at, gpu=p.gpu,
                                    sm_mhz=p.sm_mhz, mem_mhz=p.mem_mhz, temp_c=p.temp_c, power_w=p.power_w,
                                    util_pct=p.util_pct, throttle=list(p.throttle)) for p in samples)

    def samples(self, job_id: int, attempt: int, node: str | None = None) -> list[PerfSample]:
        q = select(PerfSampleRow).where(PerfSampleRow.job_id == job_id, PerfSampleRow.attempt == attempt)
        if node is not None:
            q = q.where(PerfSampleRow.node == node)
        with self.store.tx() as s:
            return [PerfSample(r.at, r.gpu, r.sm_mhz, r.mem_mhz, r.temp_c, r.power_w, r.util_pct,
                               tuple(r.throttle or ())) for r in s.scalars(q.order_by(PerfSampleRow.id))]


def _gpu_from(uuid: str, vals: dict[str, str]) -> GpuIdentity:
    ints = ("index", "memory_mb", "pcie_gen", "pcie_width", "max_sm_mhz", "max_mem_mhz", "app_sm_mhz", "app_mem_mhz")
    kw: dict[str, Any] = {"uuid": uuid}
    for k, v in vals.items():
        if k in ints:
            kw[k] = int(v) if v not in ("", "None") else (0 if k in ("index", "memory_mb") else None)
        elif k == "power_limit_w":
            kw[k] = float(v) if v not in ("", "None") else None
        elif k in GpuIdentity.__dataclass_fields__:
            kw[k] = v
    kw.setdefault("index", 0)
    return GpuIdentity(**kw)


def _run_from(r: PerfRunRow) -> PerfRun:
    if r is None:
        raise NotFound("perf run", "?")
    return PerfRun(
        job_id=r.job_id, attempt=r.attempt, node=r.node, policy=perf_from_dict(r.policy) or perf_from_dict({"clocks": "as_is"}),
        started_at=r.started_at, valid=r.valid, reason=r.reason or "", ended_at=r.ended_at,
        prolog=tuple(PerfCheck.from_dict(c) for c in r.prolog or ()),
        epilog=tuple(PerfCheck.from_dict(c) for c in r.epilog or ()),
        conditions=dict(r.conditions or {}),
        identity=NodeIdentity.from_dict(r.identity) if r.identity else None, gpus=tuple(r.gpus or ()),
    )

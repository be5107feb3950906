"""SQLAlchemy rows. One table per noun; JSON columns for nested, rarely-queried parts."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


USAGE_DAY_S = 86400  # usage rollups are per UTC day (usage_daily, usage_daily_node)
USAGE_BLOCK_DAYS = 32  # ... and per 32 days (usage_blocks)


class TenantRow(Base):
    __tablename__ = "tenants"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    quota: Mapped[dict] = mapped_column(JSON, default=dict)
    limit: Mapped[dict | None] = mapped_column("limit_", JSON, nullable=True)
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    can_borrow: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[float] = mapped_column(Float, default=0.0)


class UserRow(Base):
    __tablename__ = "users"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(ForeignKey("tenants.name"))
    admin: Mapped[bool] = mapped_column(Boolean, default=False)


class TokenRow(Base):
    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user: Mapped[str] = mapped_column(ForeignKey("users.name"))
    created_at: Mapped[float] = mapped_column(Float, default=0.0)
    note: Mapped[str] = mapped_column(String(256), default="")
    expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: never
    last_used_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class NodeRow(Base):
    __tablename__ = "nodes"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="server")
    arch: Mapped[str] = mapped_column(String(32), default="x86_64")
    cpus: Mapped[int] = mapped_column(Integer, default=0)
    mem_mb: Mapped[int] = mapped_column(Integer, default=0)
    labels: Mapped[dict] = mapped_column(JSON, default=dict)
    gpus: Mapped[list] = mapped_column(JSON, default=list)
    state: Mapped[str] = mapped_column(String(16), default="up")
    reason: Mapped[str] = mapped_column(Text, default="")
    address: Mapped[str] = mapped_column(String(128), default="127.0.0.1")
    updated_at: Mapped[float] = mapped_column(Float, default=0.0)


class JobRow(Base):
    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(256), default="")
    user: Mapped[str] = mapped_column(String(64))
    tenant: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    spec: Mapped[dict] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text, default="")
    submitted_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    allocation: Mapped[list] = mapped_column(JSON, default=list)
    handle: Mapped[str | None] = mapped_column(Text, nullable=True)
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # of those: faults/failures
    attained_gpu_s: Mapped[float] = mapped_column(Float, default=0.0)
    # a decision written before acting on it: "cancel" | "preempt" | "requeue" (see control.loop)
    pending_action: Mapped[str | None] = mapped_column(String(16), nullable=True)
    action_reason: Mapped[str] = mapped_column(Text, default="")
    # a client-chosen key: a retried submission with the same (user, key) returns the same job
    idempotency_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # a member of a job group (a matrix cell or an array task): its group and index there
    group_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    group_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    __table_args__ = (
        Index("ix_jobs_state_id", "state", "id"),  # keyset pages: ORDER BY id under each filter
        Index("ix_jobs_tenant_state_id", "tenant", "state", "id"),
        Index("ix_jobs_user_idempotency_key", "user", "idempotency_key", unique=True),
        Index("ix_jobs_group", "group_id"),
    )


class AttemptRow(Base):
    """One run of a job: written when it starts RUNNING, closed when it leaves RUNNING."""

    __tablename__ = "attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    n: Mapped[int] = mapped_column(Integer)  # 1, 2, ...; GPUFLEET_RESTART_COUNT is n - 1
    state: Mapped[str] = mapped_column(String(16))  # RUNNING, or how it ended (PENDING = requeued)
    reason: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    allocation: Mapped[list] = mapped_column(JSON, default=list)
    handle: Mapped[str | None] = mapped_column(Text, nullable=True)
    __table_args__ = (Index("ix_attempts_job_n", "job_id", "n", unique=True),)


class UsageRow(Base):
    """What one attempt holds on one node (one row per GPU model there), flat for SQL aggregation:
    written with the attempt (store/usage.py), ended_at stamped when it closes (None: running)."""

    __tablename__ = "attempt_usage"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    n: Mapped[int] = mapped_column(Integer)  # the attempt
    part: Mapped[int] = mapped_column(Integer)  # 0, 1, ... within the attempt (0: counts its wait)
    node: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))  # the node's kind
    gpu_model: Mapped[str] = mapped_column(String(64))
    gpus: Mapped[int] = mapped_column(Integer)
    tenant: Mapped[str] = mapped_column(String(64))
    user: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    wait_s: Mapped[float] = mapped_column(Float, default=0.0)  # queued before this attempt started
    busy_gpu_s: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: not sampled
    sampled_s: Mapped[float | None] = mapped_column(Float, nullable=True)  # seconds the readings cover
    sku: Mapped[str] = mapped_column(String(64), default="")  # the node's GPU SKU (NVML identity)
    labels: Mapped[str] = mapped_column(Text, default="{}")  # the job's labels, canonical JSON
    __table_args__ = (Index("ix_attempt_usage_job_n_part", "job_id", "n", "part", unique=True),
                      Index("ix_attempt_usage_started", "started_at"),
                      # the running rows, and the closed ones longer than a day (accounting/report.py)
                      Index("ix_attempt_usage_open", "started_at", sqlite_where=text("ended_at IS NULL"),
                            postgresql_where=text("ended_at IS NULL")),
                      Index("ix_attempt_usage_long", "started_at",
                            sqlite_where=text(f"ended_at - started_at > {USAGE_DAY_S}"),
                            postgresql_where=text(f"ended_at - started_at > {USAGE_DAY_S}")))


class _UsageMeasures:
    gpu_s: Mapped[float] = mapped_column(Float, default=0.0)
    busy_gpu_s: Mapped[float] = mapped_column(Float, default=0.0)
    sampled_gpu_s: Mapped[float] = mapped_column(Float, default=0.0)
    started: Mapped[int] = mapped_column(Integer, default=0)  # attempts that started in it
    wait_s: Mapped[float] = mapped_column(Float, default=0.0)  # their queue time


class _UsageGroup(_UsageMeasures):
    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    user: Mapped[str] = mapped_column(String(64), primary_key=True)
    gpu_model: Mapped[str] = mapped_column(String(64), primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    labels: Mapped[str] = mapped_column(Text, primary_key=True)


class UsageDayRow(_UsageGroup, Base):
    """GPU-seconds of closed attempts per UTC day and group, cut at the day's boundaries; written
    when an attempt closes (store/usage.py). Clustered on its key (SQLite: WITHOUT ROWID), so a
    range of days is one sequential read."""

    __tablename__ = "usage_daily"
    day: Mapped[int] = mapped_column(Integer, primary_key=True)  # floor(t / 86400)
    __table_args__ = {"sqlite_with_rowid": False}


class UsageBlockRow(_UsageGroup, Base):
    """The same per block of USAGE_BLOCK_DAYS days (block = day // 32): a year is ~12 x groups rows."""

    __tablename__ = "usage_blocks"
    block: Mapped[int] = mapped_column(Integer, primary_key=True)
    __table_args__ = {"sqlite_with_rowid": False}


class UsageNodeBlockRow(_UsageGroup, Base):
    """Per 32-day block, node and group: what `--by node` with tenant, user or a label reads."""

    __tablename__ = "usage_blocks_node"
    block: Mapped[int] = mapped_column(Integer, primary_key=True)
    node: Mapped[str] = mapped_column(String(128), primary_key=True)
    __table_args__ = {"sqlite_with_rowid": False}


class UsageNodeDayRow(_UsageMeasures, Base):
    """Per UTC day and node (GPU model, SKU, kind): what `--by node` reads."""

    __tablename__ = "usage_daily_node"
    day: Mapped[int] = mapped_column(Integer, primary_key=True)
    node: Mapped[str] = mapped_column(String(128), primary_key=True)
    gpu_model: Mapped[str] = mapped_column(String(64), primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    __table_args__ = {"sqlite_with_rowid": False}


class UsageJobRow(Base):
    """Per job: the sampled-but-idle GPU-seconds of its closed attempts (an upper bound of its
    idle time in any period: where the top-idle-holders search starts, accounting/report.py)."""

    __tablename__ = "usage_jobs"
    job_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    tenant: Mapped[str] = mapped_column(String(64))
    user: Mapped[str] = mapped_column(String(64))
    first_at: Mapped[float] = mapped_column(Float)  # earliest start of a closed attempt
    last_at: Mapped[float] = mapped_column(Float)  # latest end
    idle_gpu_s: Mapped[float] = mapped_column(Float, default=0.0)
    __table_args__ = (Index("ix_usage_jobs_idle", "idle_gpu_s"),)


class EventRow(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # job | node
    key: Mapped[str] = mapped_column(String(128))
    at: Mapped[float] = mapped_column(Float)
    old: Mapped[str] = mapped_column(String(16), default="")
    new: Mapped[str] = mapped_column(String(16), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    attempt: Mapped[int | None] = mapped_column(Integer, nullable=True)  # job events: which run
    __table_args__ = (Index("ix_events_kind_key", "kind", "key"),)


class BookingRow(Base):
    __tablename__ = "bookings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    tenant: Mapped[str] = mapped_column(String(64))
    user: Mapped[str] = mapped_column(String(64), default="")
    nodes: Mapped[list] = mapped_column(JSON, default=list)
    start: Mapped[float] = mapped_column(Float)
    end: Mapped[float] = mapped_column(Float)
    exclusive: Mapped[bool] = mapped_column(Boolean, default=True)
    gpus: Mapped[int | None] = mapped_column(Integer, nullable=True)
    gpu_model: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cancelled: Mapped[bool] = mapped_column(Boolean, default=False)
    # "approved" (in force) | "requested" (beyond the non-admin bounds: waits for an admin)
    # | "rejected"
    approval: Mapped[str] = mapped_column(String(16), default="approved")


class AuditRow(Base):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float)
    user: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(256), default="")
    detail: Mapped[dict] = mapped_column(JSON, default=dict)


class MetaRow(Base):
    """Small durable key/values: fair-share usage, schema facts, loop bookkeeping."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[dict] = mapped_column(JSON, default=dict)


class ResultRow(Base):
    """One measurement (results/), with the provenance of the run: written when an attempt ends
    (collected from $GPUFLEET_RESULTS_DIR) or by `gpufleet results import`."""

    __tablename__ = "results"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    series: Mapped[str] = mapped_column(String(512))  # the series key (results.model.series_key)
    benchmark: Mapped[str] = mapped_column(String(256))
    metric: Mapped[str] = mapped_column(String(256))
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(64), default="")
    higher_is_better: Mapped[bool] = mapped_column(Boolean, default=True)
    at: Mapped[float] = mapped_column(Float)  # when measured
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # no FK: imported history
    attempt: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tenant: Mapped[str] = mapped_column(String(64))
    user: Mapped[str] = mapped_column(String(64))
    node: Mapped[str] = mapped_column(String(128), default="")
    gpu_model: Mapped[str] = mapped_column(String(128), default="")
    sku: Mapped[str] = mapped_column(String(128), default="")
    driver: Mapped[str] = mapped_column(String(64), default="")
    vbios: Mapped[str] = mapped_column(String(64), default="")
    gpu_uuids: Mapped[str] = mapped_column(Text, default="")
    commit: Mapped[str] = mapped_column(String(256), default="")
    labels: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # None: not available
    clocks: Mapped[str] = mapped_column(String(64), default="")
    valid: Mapped[bool] = mapped_column(Boolean, default=True)  # perf_valid
    invalid_reason: Mapped[str] = mapped_column(Text, default="")
    conditions: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    source: Mapped[str] = mapped_column(String(16), default="job")  # job | import
    __table_args__ = (Index("ix_results_series_at", "series", "at"),
                      Index("ix_results_tenant_at", "tenant", "at"),
                      Index("ix_results_job", "job_id", "attempt"))


class TestCaseRow(Base):
    """One JUnit test case of an attempt (pass/fail/skip)."""

    __tablename__ = "test_cases"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    attempt: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tenant: Mapped[str] = mapped_column(String(64))
    user: Mapped[str] = mapped_column(String(64))
    node: Mapped[str] = mapped_column(String(128), default="")
    suite: Mapped[str] = mapped_column(String(256), default="")
    classname: Mapped[str] = mapped_column(String(256), default="")
    name: Mapped[str] = mapped_column(String(512))
    outcome: Mapped[str] = mapped_column(String(16))
    time_s: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[float] = mapped_column(Float)
    __table_args__ = (Index("ix_test_cases_job", "job_id", "attempt"),)


class JobGroupRow(Base):
    """A job group: a test matrix (one job per satisfiable cell) or an array (one job per index)."""

    __tablename__ = "job_groups"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # matrix | array
    name: Mapped[str] = mapped_column(String(256), default="")
    tenant: Mapped[str] = mapped_column(String(64))
    user: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    spec: Mapped[dict] = mapped_column(JSON)  # the template spec (before the cell's constraints)
    axes: Mapped[dict] = mapped_column(JSON, default=dict)  # matrix {key: [values]}; array {indices}
    cells: Mapped[list] = mapped_column(JSON, default=list)  # [{index, cell, job_id, reason}]
    max_running: Mapped[int | None] = mapped_column(Integer, nullable=True)  # array %N
    dependency: Mapped[list] = mapped_column(JSON, default=list)  # [[kind, job_id], ...]
    __table_args__ = (Index("ix_job_groups_tenant", "tenant"),)


class JobDependencyRow(Base):
    """`job_id` may start only once `target_id` ended the way `kind` asks
    (afterok | afternotok | afterany)."""

    __tablename__ = "job_dependencies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    kind: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[int] = mapped_column(Integer)
    __table_args__ = (Index("ix_job_dependencies_job", "job_id"),
                      Index("ix_job_dependencies_target", "target_id"))


class ArtifactRow(Base):
    """One file an attempt's rank left behind, kept in an artifact store (artifacts/)."""

    __tablename__ = "artifacts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    rank: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(1024))  # relative to the rank's workdir
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    sha1: Mapped[str] = mapped_column(String(40), default="")
    store: Mapped[str] = mapped_column(String(16))  # local | http
    location: Mapped[str] = mapped_column(Text)  # the store's key (a path or a URL)
    tenant: Mapped[str] = mapped_column(String(64))
    user: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: kept
    deleted_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # gc'd (row kept)
    __table_args__ = (Index("ix_artifacts_job", "job_id", "attempt", "rank", "path", unique=True),
                      Index("ix_artifacts_tenant", "tenant", "created_at"))


class ArtifactPolicyRow(Base):
    """A tenant's artifact retention: a byte quota and an expiry (None: the server default)."""

    __tablename__ = "artifact_policies"
    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    max_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    retention_s: Mapped[float | None] = mapped_column(Float, nullable=True)

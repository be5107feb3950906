"""Request and response bodies of the REST API (the client SDK imports these)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from gpufleet.domain.units import MAX_INT


class JobCreate(BaseModel):
    """Same fields as `gpufleet submit` flags and the job YAML. Types are checked by the spec rules
    (gpufleet.domain.spec.build_spec), which name the field in every error."""

    model_config = ConfigDict(extra="forbid")
    command: list[str] | str
    gpus: int | str | None = 1
    nodes: int | str | None = 1
    gpu_model: str | None = None
    cpus: int | str | None = None
    mem: int | str | None = None
    time_limit: int | str | None = None
    tenant: str | None = None
    priority: int | str | None = 0
    name: str | None = None
    env: dict[str, str] | list[str] | None = None
    workdir: str | None = None
    constraint: dict[str, str] | list[str] | str | None = None
    booking: int | None = None
    requeue: bool = True
    image: str | None = None
    mounts: list[str] | str | None = None  # SRC:DST[:ro] bind mounts into the image
    pull: str | None = None  # image pull policy: always | missing | never (default missing)
    perf: bool | dict[str, Any] | None = None  # a clean-room run: true or {clocks, max_temp_c, sample_s}
    label: dict[str, str] | list[str] | str | None = None  # K=V job labels (usage --by label:KEY)
    artifacts: list[str] | str | None = None  # globs relative to the workdir, kept after every attempt
    dependency: str | list[str] | list[list[Any]] | None = None  # afterok:ID[:ID],afterany:ID,afternotok:ID
    board: dict[str, Any] | None = None  # embedded boards: {image, flash, power_cycle} (docs/boards.md)
    restart: str | None = None  # never | on-node-fault (default) | on-failure[:N] (docs/training.md)
    heartbeat: int | str | None = None  # a duration: no sign of life for that long = hung, restarted
    nodes_min: int | str | None = None  # an elastic gang's fewest nodes (or nodes: "MIN:MAX")


class JobOut(BaseModel):
    id: int
    name: str
    user: str
    tenant: str
    state: str
    reason: str
    exit_code: int | None
    priority: int
    nodes: list[str] = Field(description="nodes the job runs (ran) on, rank 0 first")
    gpus: dict[str, list[int]] = Field(description="physical GPU indices per node")
    request: dict[str, Any] = Field(description="the job spec as submitted")
    submitted_at: float
    started_at: float | None
    ended_at: float | None
    restarts: int
    handle: str | None = None
    pending_action: str | None = None


class EventOut(BaseModel):
    at: float
    old: str
    new: str
    reason: str
    attempt: int | None = None  # changes into or out of RUNNING: which run


class AttemptOut(BaseModel):
    """One run of a job: each requeue (preemption, node down...) starts another."""

    n: int = Field(description="1, 2, ...: GPUFLEET_ATTEMPT; GPUFLEET_RESTART_COUNT is n - 1")
    state: str = Field(description="RUNNING, or how the run ended (PENDING: requeued)")
    reason: str
    nodes: list[str]
    gpus: dict[str, list[int]]
    started_at: float
    ended_at: float | None
    exit_code: int | None
    handle: str | None = None


class JobDetail(JobOut):
    events: list[EventOut] = []
    attempts: list[AttemptOut] = []


class CancelOut(BaseModel):
    id: int
    state: str
    pending_action: str | None = None
    already_finished: bool = False  # it had ended before this cancel: nothing was done


class GpuOut(BaseModel):
    index: int
    model: str
    uuid: str
    memory_mb: int
    group: int
    job: int | None = None  # the RUNNING job holding it; 0: another tenant's (for a non-admin)


class NodeOut(BaseModel):
    name: str
    kind: str
    arch: str
    cpus: int
    mem_mb: int
    labels: dict[str, str]
    state: str
    reason: str
    gpus_total: int
    gpus_allocated: int
    gpu_models: list[str]
    gpus: list[GpuOut]


class NodeStateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = ""


class TenantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quota: dict[str, int] | str | None = None
    limit: dict[str, int] | str | None = None
    weight: float | None = None
    can_borrow: bool | None = None


class TenantOut(BaseModel):
    name: str
    quota: dict[str, int]
    limit: dict[str, int] | None
    weight: float
    can_borrow: bool
    running_gpus: dict[str, int] = {}
    pending_jobs: int = 0
    usage_gpu_hours: float = 0.0


class TokenIn(BaseModel):
    """A new token for `user`. A new user needs `tenant`; for an existing one `tenant`/`admin`
    must match when given (PATCH /users/{name} changes them)."""

    model_config = ConfigDict(extra="forbid")
    user: str
    tenant: str | None = None
    admin: bool | None = None
    expires: str | int | None = Field(None, description="a duration (30d, 12h); none: never")
    note: str = ""


class TokenOut(BaseModel):
    user: str
    tenant: str
    token: str = Field(description="the secret: shown once, only its hash is stored")
    id: int = 0
    expires_at: float | None = None


class TokenInfoOut(BaseModel):
    id: int
    user: str
    tenant: str
    admin: bool
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked_at: float | None
    note: str


class UserOut(BaseModel):
    name: str
    tenant: str
    admin: bool


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant: str | None = None
    admin: bool | None = None


class BookingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: float | str
    duration: int | str
    nodes: list[str] = []
    gpus: Annotated[int, Field(ge=1, le=MAX_INT)] | None = None
    gpu_model: str | None = None
    tenant: str | None = None
    exclusive: bool = True
    name: str = ""


class BookingOut(BaseModel):
    id: int
    name: str
    tenant: str
    user: str
    nodes: list[str]
    start: float
    end: float
    exclusive: bool
    gpus: int | None
    gpu_model: str | None
    approval: str = Field("approved", description="approved (in force) | requested (waits for an admin) | rejected")
    note: str = Field("", description="e.g. which limit a requested booking exceeds")


class WhoAmI(BaseModel):
    user: str
    tenant: str
    admin: bool
    executor: str
